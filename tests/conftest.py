"""Shared test setup.

- The suite is the CPU suite (CI has no GPU): on a machine with GPUs they are hidden before anything touches CUDA,
  so `device="auto"` models stay on the CPU beside the CPU tensors the tests build. GPU checks are separate
  device scripts; set FASTGEN_TESTS_USE_GPU=1 to let the tests see the GPUs anyway.
- Tiny networks run fastest single-threaded: thread start-up dominates their kernels.
"""

import os

if os.environ.get("FASTGEN_TESTS_USE_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

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
