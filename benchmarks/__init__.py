"""Benchmarks of tinygrad_mini against hand-written numpy and PyTorch (not collected by pytest)."""
