"""Hypothesis profiles ('ci': derandomized, no deadline; 'dev': more examples) and shared fixtures."""
import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cifar_path():
    """The shared CIFAR-10 copy named by TINYGRAD_MINI_DATA; in CI its absence is a failure."""
    p = os.environ.get("TINYGRAD_MINI_DATA")
    if p and pathlib.Path(p).exists():
        return pathlib.Path(p)
    msg = (f"TINYGRAD_MINI_DATA={p!r} does not name the CIFAR-10 archive; "
           "set it to ../shared/data/cifar-10-python.tar.gz")
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)
