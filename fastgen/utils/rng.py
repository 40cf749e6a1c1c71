"""Seeding and RNG-state capture, the parts of the reliability contract that make resume bit-identical.

Seeds derive from (seed, rank, iteration) through numpy's SeedSequence hashing, so no two (rank, iteration) pairs
share a stream (the reference's `seed + iteration + rank` collides: (it 1, rank 0) == (it 0, rank 1)).
RNG states are captured as tensors / ints / lists only, so a checkpoint holding them loads with
`torch.load(weights_only=True)`; restoring them makes a resumed run draw exactly the numbers the uninterrupted run drew.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

_SEED_MASK = (1 << 63) - 1


def derive_seed(seed: int, rank: int = 0, iteration: int = 0) -> int:
    """A 63-bit seed that is a collision-free hash of (seed, rank, iteration) (numpy SeedSequence)."""
    for name, value in (("seed", seed), ("rank", rank), ("iteration", iteration)):
        if int(value) < 0:
            raise ValueError(f"derive_seed needs non-negative integers; got {name}={value}")
    state = np.random.SeedSequence([int(seed), int(rank), int(iteration)]).generate_state(2, dtype=np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & _SEED_MASK


def seed_everything(seed: int, rank: int = 0, iteration: int = 0) -> int:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from derive_seed(seed, rank, iteration)."""
    derived = derive_seed(seed, rank, iteration)
    random.seed(derived)
    np.random.seed(derived % (1 << 32))  # the legacy global generator takes 32-bit seeds
    torch.manual_seed(derived)  # also seeds every CUDA device
    return derived


def get_rng_state() -> dict[str, Any]:
    """This process's RNG states as weights_only-loadable values (tensors, ints, floats, lists)."""
    version, mt_state, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(mt_state, dtype=torch.int64),
            "gauss_next": [] if gauss_next is None else [float(gauss_next)],
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what get_rng_state captured (a CUDA state for a device count that differs is an error)."""
    py = state["python"]
    gauss = py["gauss_next"][0] if len(py["gauss_next"]) else None
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), int(npst["pos"]), int(npst["has_gauss"]),
         float(npst["cached_gaussian"]))
    )
    torch.set_rng_state(state["torch"].to(torch.uint8))
    cuda_states = state.get("cuda") or []
    if cuda_states:
        if not torch.cuda.is_available():
            raise ValueError("the saved RNG state includes CUDA generators but CUDA is not available here")
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(
                f"the saved RNG state has {len(cuda_states)} CUDA generators but {torch.cuda.device_count()} "
                "devices are visible; restore on the same device layout"
            )
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda_states])


class preserved_rng_state:
    """Context manager: whatever runs inside (validation, sample logging) leaves every global RNG as it was."""

    def __enter__(self):
        self._state = get_rng_state()
        return self

    def __exit__(self, *exc) -> None:
        set_rng_state(self._state)
