"""Knowledge-distillation data: (noise, real[, path]) pairs recorded from a teacher's ODE.

A shard is one file holding tensors with a shared first dimension N:
  "noise" [N, ...]  the student's input (the teacher's starting state at t_list[0]);
  "real"  [N, ...]  the teacher's end state at t_list[-1] (usually t = 0: the sample);
  "path"  [N, S, ...] optional: the teacher's state at every t in t_list (S = len(t_list); path[:, 0] is the
                      starting state, path[:, -1] equals real), for multi-step KD;
  "condition" [N, label_dim] optional (absent: unconditional);
  "t_list" [S] float64 optional: the times the path was recorded at.
Shards are `.safetensors` or `.pt` (loaded with weights_only=True: loading a file never runs code).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from fastgen.datasets.loader import InfiniteLoader, synthetic_image_batch
from fastgen.utils.checkpointer import safe_torch_load

SHARD_EXTENSIONS = (".safetensors", ".pt", ".pth")
PER_SAMPLE_KEYS = ("noise", "real", "path", "condition")


def load_shard(path: str) -> dict[str, torch.Tensor]:
    """Tensors of one shard file, with a clear error for unreadable files."""
    try:
        if path.endswith(".safetensors"):
            return load_file(path)
        data = safe_torch_load(path)
    except Exception as error:  # safe_torch_load's message names the file and what is wrong with it
        raise ValueError(f"cannot read KD shard: {error}") from error
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"KD shard {path} must hold a dict of tensors (keys {PER_SAMPLE_KEYS}, t_list)")
    return data


def save_shard(tensors: dict[str, torch.Tensor], out_path: str) -> None:
    """Write a shard atomically (temporary file, fsync, rename): a crash never leaves a half-written shard."""
    if not out_path.endswith(SHARD_EXTENSIONS):
        raise ValueError(f"KD shard path must end with one of {SHARD_EXTENSIONS}, got {out_path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tmp_path = f"{out_path}.tmp{os.getpid()}"
    if out_path.endswith(".safetensors"):
        save_file(tensors, tmp_path)
    else:
        torch.save(tensors, tmp_path)
    with open(tmp_path, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(tmp_path, out_path)


def list_shards(path: str | Sequence[str]) -> list[str]:
    """A shard file, a directory of shards (sorted), or a list of files."""
    if isinstance(path, (list, tuple)):
        return [os.fspath(p) for p in path]
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(f for ext in SHARD_EXTENSIONS for f in glob.glob(os.path.join(path, f"*{ext}")))
        if not files:
            raise FileNotFoundError(f"no KD shards ({', '.join(SHARD_EXTENSIONS)}) in directory {path}")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"KD data not found at {path}; set dataloader_train.path to a shard or a directory")
    return [path]


class TeacherPairDataset(torch.utils.data.Dataset):
    """All shards concatenated in memory; items carry noise, real, optional path, condition, neg_condition, idx."""

    def __init__(self, path: str | Sequence[str], use_path: bool = True):
        self.files = list_shards(path)
        shards = [load_shard(f) for f in self.files]
        for file, shard in zip(self.files, shards):
            for key in ("noise", "real"):
                if key not in shard:
                    raise ValueError(f"KD shard {file} has no {key!r} tensor; found keys {sorted(shard)}")
        keys = [k for k in PER_SAMPLE_KEYS if k in shards[0] and (use_path or k != "path")]
        for file, shard in zip(self.files, shards):
            if sorted(k for k in keys if k in shard) != sorted(keys):
                raise ValueError(f"KD shard {file} has keys {sorted(shard)}; expected the same keys as {self.files[0]}")
            sizes = {k: shard[k].shape[0] for k in keys}
            if len(set(sizes.values())) != 1:
                raise ValueError(f"KD shard {file} has tensors of different lengths {sizes}")
        self.t_list = shards[0].get("t_list")
        self.tensors = {k: torch.cat([s[k] for s in shards]) for k in keys}
        if "condition" not in self.tensors:
            self.tensors["condition"] = torch.zeros(self.tensors["real"].shape[0], 0)
        self.tensors["condition"] = self.tensors["condition"].to(torch.float32)
        self.label_dim = self.tensors["condition"].shape[1]

    def __len__(self) -> int:
        return self.tensors["real"].shape[0]

    def __getitems__(self, indices: list[int]) -> dict:
        index = torch.as_tensor(indices, dtype=torch.int64)
        batch = {k: v[index] for k, v in self.tensors.items()}
        batch["neg_condition"] = torch.zeros_like(batch["condition"])
        batch["idx"] = index
        return batch

    def __getitem__(self, idx: int) -> dict:
        return {key: value[0] for key, value in self.__getitems__([idx]).items()}


class TeacherPairLoader(InfiniteLoader):
    """Batches `{"real", "noise", "path" [B, S, ...] (if stored), "condition", "neg_condition", "idx"}` forever."""

    def __init__(self, path: str | Sequence[str], batch_size: int, shuffle: bool = True, seed: int = 0,
                 sampler_start_idx: int | None = None, use_path: bool = True, num_workers: int = 0,
                 rank: int | None = None, world_size: int | None = None):
        dataset = TeacherPairDataset(path, use_path=use_path)
        super().__init__(dataset, batch_size=batch_size, seed=seed, shuffle=shuffle,
                         sampler_start_idx=sampler_start_idx, rank=rank, world_size=world_size,
                         num_workers=num_workers)
        self.label_dim = dataset.label_dim
        self.t_list = dataset.t_list

    @classmethod
    def smoke_batch(cls, kwargs: dict, batch_size: int) -> dict:
        """`train.py --smoke`: noise, real, and (when use_path) a path of len(t_list) states (default 2) going
        from the scaled noise to real; no condition unless the config gives a label_dim."""
        shape = [int(d) for d in kwargs.get("input_shape") or [3, 8, 8]]
        batch = synthetic_image_batch(batch_size, shape, int(kwargs.get("label_dim") or 0))
        batch["noise"] = torch.randn(batch_size, *shape)
        if kwargs.get("use_path", True):
            steps = max(2, len(kwargs.get("t_list") or ())) - 1
            start = batch["noise"] * float((kwargs.get("t_list") or [80.0])[0])
            batch["path"] = torch.stack([start + (batch["real"] - start) * k / steps for k in range(steps + 1)], 1)
        return batch


@torch.no_grad()
def generate_teacher_pairs(
    sample_fn: Callable,
    noise: torch.Tensor,
    condition: torch.Tensor | None,
    t_list: Sequence[float] | torch.Tensor,
    out_path: str,
    x_init: torch.Tensor | None = None,
    batch_size: int | None = None,
    save_path: bool = True,
) -> dict[str, torch.Tensor]:
    """Run the teacher ODE through `t_list` and write a KD shard; returns the tensors written.

    `sample_fn(x, t_cur, t_next, condition) -> x at t_next` integrates one segment of the teacher's ODE (it may take
    many teacher steps inside). The state at t_list[0] is `x_init` (default: `noise` itself; pass e.g.
    `schedule.latents(noise)` when the start state is scaled noise). Processed in chunks of `batch_size`.
    """
    t_list = torch.as_tensor(t_list, dtype=torch.float64)
    if t_list.ndim != 1 or t_list.numel() < 2:
        raise ValueError(f"t_list must be 1-D with at least 2 times (start, end), got shape {tuple(t_list.shape)}")
    x_start = noise if x_init is None else x_init
    if x_start.shape != noise.shape:
        raise ValueError(f"x_init shape {tuple(x_start.shape)} must equal noise shape {tuple(noise.shape)}")
    n = noise.shape[0]
    chunk = n if batch_size is None else int(batch_size)
    reals, paths = [], []
    for lo in range(0, n, chunk):
        x = x_start[lo:lo + chunk]
        cond = None if condition is None else condition[lo:lo + chunk]
        states = [x.detach().cpu()]
        for t_cur, t_next in zip(t_list[:-1], t_list[1:]):
            x = sample_fn(x, t_cur, t_next, cond)
            states.append(x.detach().cpu())
        reals.append(states[-1])
        paths.append(torch.stack(states, dim=1))
    tensors = {"noise": noise.detach().cpu(), "real": torch.cat(reals), "t_list": t_list}
    if save_path:
        tensors["path"] = torch.cat(paths)
    if condition is not None:
        tensors["condition"] = condition.detach().cpu().to(torch.float32)
    save_shard(tensors, out_path)
    return tensors
