"""tinygrad_mini.data: CIFAR-10 (official python layout, cache + verified download), its standard
preprocessing and split, and batching (DataLoader, sampling with replacement)."""
from .cifar10 import (CIFAR10, CLASSES, DATA_ENV, MD5, URL, CIFAR10Split, cifar10_path,
                      get_cifar10_data, load_cifar10, mean_image, normalize_torch, read_batches,
                      split_cifar10)
from .download import CACHE_ENV, DownloadError, default_cache_dir, download_url, md5sum
from .loader import DataLoader, TensorDataset, sample_batches

__all__ = ["CIFAR10", "CLASSES", "DATA_ENV", "CACHE_ENV", "MD5", "URL", "CIFAR10Split",
           "cifar10_path", "get_cifar10_data", "load_cifar10", "mean_image", "normalize_torch",
           "read_batches", "split_cifar10", "DownloadError", "default_cache_dir", "download_url",
           "md5sum", "DataLoader", "TensorDataset", "sample_batches"]
