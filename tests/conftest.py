"""Shared test setup.

- The suite is the CPU suite (CI has no GPU): on a machine with GPUs they are hidden before anything touches CUDA,
  so `device="auto"` models stay on the CPU beside the CPU tensors the tests build. GPU checks are separate
  device scripts; set FASTGEN_TESTS_USE_GPU=1 to let the tests see the GPUs anyway.
- Tiny networks run fastest single-threaded: thread start-up dominates their kernels.
- Under pytest-xdist (`make test` runs `-n 2`) each worker already fills one core, so the processes a test starts
  (spawned gloo ranks, `train.py` subprocesses) also default to one OpenMP/MKL thread instead of one per core;
  a test that sets its own thread count still gets it.
"""

import os

if os.environ.get("FASTGEN_TESTS_USE_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def one_thread():
    """One torch thread for this test even if the session default changes: tiny networks trained on a shared CPU
    are much faster without competing OpenMP threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist the tests marked slow (the long ones: multi-process, oracle training, subprocess runs) go
    first, so the workers do not end with one of them still running a minute-long test while the other idles.
    Every worker sorts the same collection the same way (xdist requires that); a serial run keeps the file order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order within each part
