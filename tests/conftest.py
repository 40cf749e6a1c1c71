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

import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402


class _CurrentStderr:
    """A stream that writes to whatever sys.stderr is at the time of the write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(autouse=True, scope="session")
def _library_logs_follow_stderr():
    """diffusers and transformers give their library logger one StreamHandler bound to sys.stderr as it is when
    they first log. Inside a test that is pytest's per-test capture stream, closed when that test ends, so a later
    library warning in another test printed "--- Logging error --- ... I/O operation on closed file" (with a
    traceback) into that test's captured stderr. Their handlers follow the current sys.stderr instead."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.get_logger()  # configures the library root logger and its own handler once
        handler = library._default_handler  # only that one: pytest's capture handlers may sit beside it
        if handler is not None:
            handler.__dict__.pop("flush", None)  # diffusers pins flush to the stderr of that moment
            handler.setStream(_CurrentStderr())
    yield


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


def load_repo_script(*parts: str):
    """Import a script of the repository (scripts/...) as a module, by path (scripts are not a package)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *parts)
    spec = importlib.util.spec_from_file_location(os.path.splitext(parts[-1])[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def video_inference_script():
    """scripts/inference/video_model_inference.py as a module (a fresh one per test file, as each had before)."""
    return load_repo_script("scripts", "inference", "video_model_inference.py")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist the tests marked slow (the long ones: multi-process, oracle training, subprocess runs) go
    first, so the workers do not end with one of them still running a minute-long test while the other idles.
    Every worker sorts the same collection the same way (xdist requires that); a serial run keeps the file order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order within each part
