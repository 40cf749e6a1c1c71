"""Block-causal attention and the KV cache of the causal video networks (see CausalFastGenNetwork).

Tokens are frame-major (all tokens of frame 0, then frame 1, ...); a frame belongs to chunk `frame // chunk_size`.
Every token carries its absolute frame index (cached keys too). A query of chunk q sees every key of chunk <= q
(block-causal); with a rolling window W (max_cache_frames) only keys of frames >= q * chunk_size - W, which is
exactly what a cache keeping the last W frames holds when chunk q is generated: the full (is_ar=False) pass and the
chunk-by-chunk pass with the cache then see the same context, window or not.

Two interchangeable attention paths compute the same softmax attention:
  * "sdpa": torch's scaled_dot_product_attention with a boolean [Nq, Nk] mask (CPU default; any device);
  * "flex": torch.nn.attention.flex_attention with a BlockMask (CUDA default: fully masked key blocks are skipped
    instead of materialising the mask). Compiled on CUDA unless TORCH_COMPILE_DISABLE=1 or FASTGEN_FLEX_COMPILE=0
    (mode from TORCH_COMPILE_MODE); eager flex runs forward-only on the CPU, so a CPU call that needs gradients
    falls back to SDPA with one warning.
FASTGEN_DISABLE_FLEX_ATTENTION=1 forces SDPA everywhere. A call whose keys are all visible (one chunk of queries
after its cache) needs no mask and always takes plain SDPA (flash kernels on CUDA).

The KV cache keeps, per tag ("pos", "neg", ...) and per block, the post-rotary keys and values of a contiguous range
of frames. Updates are functional (each write builds new tensors and never edits old ones), so tensors a call read
stay valid for its backward and for activation-checkpoint recomputation; stored entries are detached (gradients
never flow through the cache, as in Self-Forcing's no-grad cache updates).
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F

from fastgen.utils.errors import BadInputError

DISABLE_FLEX_ENV = "FASTGEN_DISABLE_FLEX_ATTENTION"
ATTENTION_BACKENDS = ("auto", "flex", "sdpa")
_GIB = 1024**3


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def frame_ids(start_frame: int, num_frames: int, tokens_per_frame: int, device=None) -> torch.Tensor:
    """[num_frames * tokens_per_frame] absolute frame index of each frame-major token."""
    frames = torch.arange(start_frame, start_frame + num_frames, device=device)
    return frames.repeat_interleave(tokens_per_frame)


def visible(q_frames: torch.Tensor, k_frames: torch.Tensor, chunk_size: int, window: int | None) -> torch.Tensor:
    """Boolean [Nq, Nk] (or broadcast) visibility: key chunk <= query chunk and, with a window W, key frame >= the
    first frame of the query's chunk - W. Pure tensor ops, so flex attention's mask function can call it."""
    q_chunk = q_frames // chunk_size
    mask = k_frames // chunk_size <= q_chunk
    if window is not None:
        mask = mask & (k_frames >= q_chunk * chunk_size - window)
    return mask


def block_causal_mask(q_frames: torch.Tensor, k_frames: torch.Tensor, chunk_size: int,
                      window: int | None = None) -> torch.Tensor | None:
    """visible() as a [Nq, Nk] mask; None when every key is visible to every query (plain attention)."""
    q_chunk_min, q_chunk_max = int(q_frames.min()) // chunk_size, int(q_frames.max()) // chunk_size
    if int(k_frames.max()) // chunk_size <= q_chunk_min and \
            (window is None or int(k_frames.min()) >= q_chunk_max * chunk_size - window):
        return None
    return visible(q_frames[:, None], k_frames[None, :], chunk_size, window)


def _flex_available() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(requested: str, device: torch.device) -> str:
    """"flex" or "sdpa" for a network on `device` ("auto": flex on CUDA, SDPA elsewhere; the env switch wins)."""
    if requested not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}; got {requested!r}")
    if requested == "sdpa" or _env_flag(DISABLE_FLEX_ENV) or not _flex_available():
        return "sdpa"
    if requested == "auto":
        return "flex" if torch.device(device).type == "cuda" else "sdpa"
    return "flex"


class BlockCausalAttention:
    """Softmax attention under the block-causal mask through SDPA or flex attention; q, k, v are [B, H, N, D].

    One instance per network: it remembers the compiled flex function and whether the CPU fallback has warned."""

    def __init__(self, backend: str = "auto"):
        resolve_backend(backend, torch.device("cpu"))  # validates the name now, not at the first forward
        self.backend = backend
        self._flex_fn = None
        self._warned = False

    def __getstate__(self):  # deepcopy / pickle: a compiled function does not copy; it is rebuilt on first use
        return {**self.__dict__, "_flex_fn": None}

    def __call__(self, q, k, v, q_frames, k_frames, chunk_size: int, window: int | None = None,
                 mask_memo: dict | None = None) -> torch.Tensor:
        """q_frames / k_frames: the absolute frame of each query / key token; window: max_cache_frames (None: no
        window). mask_memo: a dict kept for one network call, so its transformer blocks build the masks once."""
        mask_memo = {} if mask_memo is None else mask_memo
        key = ("sdpa", q.shape[2], k.shape[2])
        if key not in mask_memo:
            mask_memo[key] = block_causal_mask(q_frames, k_frames, chunk_size, window)
        mask = mask_memo[key]
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v)
        if self._use_flex(q, k, v):
            return self._flex(q, k, v, q_frames, k_frames, chunk_size, window, mask_memo)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def _use_flex(self, q, k, v) -> bool:
        if resolve_backend(self.backend, q.device) != "flex":
            return False
        needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
        if q.device.type == "cpu" and needs_grad:
            if not self._warned:
                warnings.warn("flex attention has no CPU backward: block-causal attention falls back to SDPA with a "
                              f"boolean mask (set {DISABLE_FLEX_ENV}=1 or attention_backend='sdpa' to silence this)",
                              stacklevel=3)
                self._warned = True
            return False
        return True

    def _flex(self, q, k, v, q_frames, k_frames, chunk_size, window, mask_memo):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        key = ("flex", q.shape[2], k.shape[2])
        block_mask = mask_memo.get(key)
        if block_mask is None:  # one BlockMask per call, shared by every transformer block
            qf, kf = q_frames.to(q.device), k_frames.to(q.device)

            def mask_mod(b, h, q_idx, kv_idx):
                return visible(qf[q_idx], kf[kv_idx], chunk_size, window)

            block_mask = mask_memo[key] = create_block_mask(mask_mod, None, None, q.shape[2], k.shape[2],
                                                            device=q.device)
        if self._flex_fn is None:
            self._flex_fn = flex_attention
            if q.device.type == "cuda" and not _env_flag("TORCH_COMPILE_DISABLE") and \
                    _env_flag("FASTGEN_FLEX_COMPILE", default=True):
                self._flex_fn = torch.compile(flex_attention, dynamic=False,
                                              mode=os.environ.get("TORCH_COMPILE_MODE") or None)
        with warnings.catch_warnings():  # eager flex on the CPU says it is unfused: known, and forward-only here
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            return self._flex_fn(q, k, v, block_mask=block_mask)


class CacheEntry(NamedTuple):
    """Keys / values [B, H, num_frames * tokens_per_frame, D] of the frames [first_frame, first_frame + num_frames)."""

    k: torch.Tensor
    v: torch.Tensor
    first_frame: int
    num_frames: int

    @property
    def end_frame(self) -> int:
        return self.first_frame + self.num_frames

    def frames(self, start: int, end: int) -> CacheEntry | None:
        """The sub-entry of frames [start, end) ∩ what is held (None when empty)."""
        start, end = max(start, self.first_frame), min(end, self.end_frame)
        if end <= start:
            return None
        tpf = self.k.shape[2] // self.num_frames
        lo, hi = (start - self.first_frame) * tpf, (end - self.first_frame) * tpf
        return CacheEntry(self.k[:, :, lo:hi], self.v[:, :, lo:hi], start, end - start)

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()


class CacheMemoryError(BadInputError):
    """A KV cache that would not fit in the free memory of its device (bad input: too long a cache window; CLI: exit
    2)."""


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on `device`: CUDA's free memory, the CPU's MemAvailable (None: unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_cache_fits(tag: str, bytes_per_frame: int, frames: int, held: int, device, shape_text: str) -> None:
    """One-line CacheMemoryError when a cache of `frames` frames (bytes_per_frame each, all blocks, K and V) would
    not fit in the free memory plus what the tag already holds (`held` bytes, replaced by the new cache)."""
    need = bytes_per_frame * frames - held
    free = available_memory(device)
    if free is None or need <= free:
        return
    fit = max((free + held) // bytes_per_frame, 0)
    raise CacheMemoryError(
        f"KV cache '{tag}' needs {bytes_per_frame * frames / _GIB:.2f} GiB ({shape_text} x {frames} frames) but only "
        f"{(free + held) / _GIB:.2f} GiB is available on {torch.device(device)}: set max_cache_frames={fit} or less "
        "(a rolling window) or lower the batch size")


def check_window(window: int | None) -> int | None:
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
        raise ValueError(f"max_cache_frames must be a positive integer or None; got {window!r}")
    return window


class KVCache:
    """One video's cached keys / values: tag -> one CacheEntry (or None) per transformer block.

    window (max_cache_frames): keep only the last `window` frames of each tag (None: all). horizon: the frames a video
    of training length holds (total_num_frames): the memory check before a tag's first write sizes the cache for it.
    """

    def __init__(self, num_blocks: int, window: int | None = None, horizon: int = 0):
        self.num_blocks, self.window, self.horizon = int(num_blocks), check_window(window), int(horizon)
        self.entries: dict[str, list[CacheEntry | None]] = {}

    def clear(self) -> None:
        self.entries = {}

    def snapshot(self, tag: str) -> tuple[CacheEntry | None, ...]:
        """The tag's entries now (immutable tensors: later writes build new ones)."""
        return tuple(self.entries.get(tag, (None,) * self.num_blocks))

    def visible(self, entry: CacheEntry | None, before_frame: int) -> CacheEntry | None:
        """What a call starting at `before_frame` attends to: cached frames < before_frame within the window."""
        if entry is None:
            return None
        start = entry.first_frame if self.window is None else before_frame - self.window
        return entry.frames(start, before_frame)

    def nbytes(self, tag: str | None = None) -> int:
        tags = self.entries if tag is None else ([tag] if tag in self.entries else [])
        return sum(e.nbytes for t in tags for e in self.entries[t] if e is not None)

    def write(self, tag: str, block: int, k: torch.Tensor, v: torch.Tensor, start_frame: int, num_frames: int):
        """Store this call's keys / values of frames [start_frame, start_frame + num_frames) for `block`, replacing
        cached frames >= start_frame; then keep the last `window` frames."""
        entries = self.entries.setdefault(tag, [None] * self.num_blocks)
        old = entries[block]
        if old is not None and start_frame > old.end_frame:
            raise ValueError(f"store_kv for frames [{start_frame}, {start_frame + num_frames}) would leave a gap after "
                             f"the cached frames [{old.first_frame}, {old.end_frame}) of '{tag}': store chunks in "
                             "order (or clear_caches() first)")
        if block == 0:
            self._check_memory(tag, k, start_frame + num_frames, num_frames)
        kept = None if old is None else old.frames(old.first_frame, start_frame)
        k, v = k.detach(), v.detach()
        if kept is not None:
            new = CacheEntry(torch.cat([kept.k, k], dim=2), torch.cat([kept.v, v], dim=2), kept.first_frame,
                             kept.num_frames + num_frames)
        else:
            new = CacheEntry(k, v, start_frame, num_frames)
        if self.window is not None and new.num_frames > self.window:
            new = new.frames(new.end_frame - self.window, new.end_frame)
        entries[block] = new

    def _check_memory(self, tag: str, k: torch.Tensor, end_frame: int, num_frames: int) -> None:
        """Before writing: will this tag's cache, at the size a video of training length (or this call, if longer)
        makes it, fit in memory? Sized as blocks x 2 (K, V) x B x heads x frames x tokens/frame x head_dim x bytes."""
        b, h, n, d = k.shape
        tpf = n // num_frames
        frames = max(self.horizon, end_frame)
        if self.window is not None:
            frames = min(frames, self.window)
        bytes_per_frame = self.num_blocks * 2 * b * h * tpf * d * k.element_size()
        shape = f"{self.num_blocks} blocks x 2 x B={b} x {h} heads x {tpf} tokens x {d} x {k.element_size()} bytes"
        check_cache_fits(tag, bytes_per_frame, frames, self.nbytes(tag), k.device, shape)
