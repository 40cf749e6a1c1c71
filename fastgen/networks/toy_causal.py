"""Toy video networks for the causal methods: "videos" [B, D, T, 1, 1] of small per-frame vectors.

`ToyCausalVideoNet` is a small transformer over frame tokens with block-causal attention, rotary frame positions and
a real KV cache: it follows the `CausalFastGenNetwork` contract exactly (is_ar, store_kv, cache_tag,
cur_start_frame, frame_offset, max_cache_frames), so the causal methods and `causal_sampling` run end to end on CPU
in seconds, and the exact causal oracle (benchmarks/oracle_causal.py) can score them. `ToyVideoNet` is the same
transformer with full (bidirectional) attention: a trainable teacher or fake score of a non-causal architecture.
Both use EDM-style preconditioning per frame (as ToyMLP), so the x0 net starts as the c_skip-only denoiser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.networks.network import CausalFastGenNetwork, FastGenNetwork
from fastgen.networks.toy import FourierTimeEmbedding


def rotate(x: torch.Tensor, pos: torch.Tensor, base: float = 100.0) -> torch.Tensor:
    """Rotary embedding (Su et al. 2021) of x [B, h, N, d] at float positions pos [N]: q.k then depends on position
    differences only, which is what lets a rolling cache window run past the training length."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64, device=x.device) / half)
    ang = (pos.to(torch.float64)[:, None] * freqs[None]).to(x.dtype)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def block_causal_mask(q_frames: torch.Tensor, k_frames: torch.Tensor, chunk_size: int | None,
                      window: int | None) -> torch.Tensor:
    """[Nq, Nk] bool (True = attend). Block-causal: frame q sees every frame of its own and earlier chunks; with a
    window W it sees only frames >= (start of its chunk) - W, exactly what a cache keeping the last W frames holds.
    chunk_size None: full attention."""
    if chunk_size is None:
        return torch.ones(len(q_frames), len(k_frames), dtype=torch.bool, device=q_frames.device)
    start = torch.div(q_frames, chunk_size, rounding_mode="floor") * chunk_size
    mask = k_frames[None] < (start + chunk_size)[:, None]
    if window is not None:
        mask &= k_frames[None] >= (start - window)[:, None]
    return mask


def frame_times(t, x: torch.Tensor) -> torch.Tensor:
    """t as float64 [B, T] (from [], [B] or [B, T]) for a video x [B, C, T, ...]."""
    b, frames = x.shape[0], x.shape[2]
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
    if t.ndim <= 1:
        return t.reshape(-1, 1).expand(b, frames) if t.ndim == 1 else t.expand(b, frames)
    if t.shape != (b, frames):
        raise ValueError(f"t must be [B] or [B, T] = [{b}, {frames}]; got {tuple(t.shape)}")
    return t


def check_video(x: torch.Tensor, dim: int, name: str) -> None:
    if x.ndim != 5 or x.shape[1] != dim or x.shape[3:] != (1, 1):
        raise ValueError(f"{name} takes videos [B, {dim}, T, 1, 1]; got {tuple(x.shape)}")


class FrameBlock(nn.Module):
    """Pre-norm transformer block over frame tokens; attention returns this call's rotated keys and values."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"hidden_dim={dim} must split into {heads} heads of even width")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))

    def forward(self, h, pos, mask, past=None):
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, pos), rotate(k, pos)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        att = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        h = h + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return h + self.mlp(self.norm2(h)), (k, v)


class _ToyVideoBase:
    """Shared body of the toy video nets: frame tokens, per-frame times, blocks, preconditioned output."""

    def _build(self, dim, hidden_dim, num_layers, num_heads, label_dim, sigma_data, time_emb_dim):
        self.dim, self.hidden_dim, self.num_layers = int(dim), int(hidden_dim), int(num_layers)
        self.label_dim, self.sigma_data = int(label_dim), float(sigma_data)
        self.time_embed = FourierTimeEmbedding(time_emb_dim, 16.0)
        self.time_mlp = nn.Sequential(nn.Linear(time_emb_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.label_embed = nn.Linear(label_dim, hidden_dim, bias=False) if label_dim > 0 else None
        self.in_proj = nn.Linear(dim, hidden_dim)
        self.blocks = nn.ModuleList(FrameBlock(hidden_dim, num_heads) for _ in range(num_layers))
        self.out_norm, self.out_proj = nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, dim)
        self.logvar_linear = nn.Linear(time_emb_dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        for layer in (self.out_proj, self.logvar_linear):  # start as the c_skip-only denoiser
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        FastGenNetwork.reset_parameters(self)

    def _check_x(self, x):
        check_video(x, self.dim, type(self).__name__)

    def skip_x0(self, x_t, t, tokens, c_skip):
        """The x0 prediction's skip term [B, T, D] (EDM: c_skip x_t); the raw output adds c_out * F(x_t, t)."""
        return c_skip.to(x_t.dtype) * tokens

    def _run(self, x_t, t, condition, frames, feature_indices, return_features_early, return_logvar, fwd_pred_type,
             attend):
        """The whole forward; attend(i, block, h, pos) runs block i (mask and cache handled by the subclass)."""
        feature_indices = sorted(set(feature_indices or ()))
        if any(not 0 <= i < self.num_layers for i in feature_indices):
            raise ValueError(f"feature_indices must lie in [0, {self.num_layers}); got {feature_indices}")
        if return_features_early and not feature_indices:
            return []
        t = frame_times(t, x_t)  # [B, T]
        schedule = self.noise_scheduler
        alpha, sigma = schedule.alpha(t)[..., None], schedule.sigma(t)[..., None]  # [B, T, 1]
        sd = self.sigma_data
        denom = torch.sqrt(alpha**2 * sd**2 + sigma**2)
        tokens = x_t[..., 0, 0].transpose(1, 2)  # [B, T, D]
        label = torch.log(t.clamp_min(1e-20)) / 4 if self.schedule_type == "edm" else t
        t_emb = self.time_embed(label.reshape(-1).to(x_t.dtype)).reshape(*t.shape, -1)
        h = self.in_proj((1 / denom).to(x_t.dtype) * tokens) + self.time_mlp(t_emb)
        if self.label_embed is not None and condition is not None:
            h = h + self.label_embed(condition.to(x_t.dtype))[:, None]
        pos = frames.to(torch.float64)
        features = []
        for i, block in enumerate(self.blocks):
            h = attend(i, block, h, pos)
            if i in feature_indices:
                features.append(h.transpose(1, 2)[..., None, None])
                if return_features_early and len(features) == len(feature_indices):
                    return features
        raw = self.out_proj(self.out_norm(h))
        if self.net_pred_type == "x0":
            out = self.skip_x0(x_t, t, tokens, alpha * sd**2 / denom**2) + (sigma * sd / denom).to(x_t.dtype) * raw
        else:
            out = raw
        out = out.transpose(1, 2)[..., None, None]
        out = self.convert_output(x_t, out, t, fwd_pred_type)
        logvar = self.logvar_linear(t_emb.mean(1)) if return_logvar else None
        return self.pack_outputs(out, features, logvar, feature_indices, return_logvar)


class ToyVideoNet(_ToyVideoBase, FastGenNetwork):
    """Bidirectional frame transformer (every frame attends to every frame): teacher / fake-score architecture."""

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        return {"hidden_dim": min(16, int(kwargs.get("hidden_dim", 64))), "num_heads": 2, "time_emb_dim": 8}

    def __init__(self, dim: int = 4, hidden_dim: int = 64, num_layers: int = 2, num_heads: int = 4,
                 label_dim: int = 0, net_pred_type: str = "x0", schedule_type: str = "rf", sigma_data: float = 1.0,
                 time_emb_dim: int = 32, **schedule_kwargs):
        FastGenNetwork.__init__(self, net_pred_type=net_pred_type, schedule_type=schedule_type, **schedule_kwargs)
        self._build(dim, hidden_dim, num_layers, num_heads, label_dim, sigma_data, time_emb_dim)

    def forward(self, x_t, t, condition=None, r=None, feature_indices=None, return_features_early=False,
                return_logvar=False, fwd_pred_type=None, **kwargs):
        self._check_x(x_t)
        frames = torch.arange(x_t.shape[2], device=x_t.device)
        mask = block_causal_mask(frames, frames, None, None)
        return self._run(x_t, t, condition, frames, feature_indices, return_features_early, return_logvar,
                         fwd_pred_type, lambda i, block, h, pos: block(h, pos, mask)[0])


class AR1ResidualVideoNet(ToyVideoNet):
    """ToyVideoNet whose skip term is the exact AR(1) denoiser: x0 = E[x0 | x_t] + c_out(t) F(x_t, t), F starting
    at zero. A DMD fake score for the weightless exact teacher that starts *as the teacher*, as DMD initialises it
    from the teacher's weights (the VSD gradient is then zero until the fake score has learned the generator)."""

    def __init__(self, a: float = 0.9, mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        self.exact = AR1VideoDenoiser(dim=self.dim, a=a, mean=mean, std=std, schedule_type=self.schedule_type,
                                      **self.schedule_kwargs)

    def skip_x0(self, x_t, t, tokens, c_skip):
        return self.exact(x_t, t, fwd_pred_type="x0")[..., 0, 0].transpose(1, 2)


class ToyCausalVideoNet(_ToyVideoBase, CausalFastGenNetwork):
    """Block-causal frame transformer with a KV cache per `cache_tag` (see CausalFastGenNetwork).

    Cache entries are (absolute frame index, rotated key, value) per block; `max_cache_frames` keeps the last N
    frames' entries, and the is_ar=False pass masks with the same window, so chunk-by-chunk generation equals the
    full block-causal forward also with a rolling window.
    """

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        return ToyVideoNet.smoke_overrides(kwargs)

    def __init__(self, dim: int = 4, hidden_dim: int = 64, num_layers: int = 2, num_heads: int = 4,
                 label_dim: int = 0, chunk_size: int = 2, total_num_frames: int = 8,
                 max_cache_frames: int | None = None, net_pred_type: str = "x0", schedule_type: str = "rf",
                 sigma_data: float = 1.0, time_emb_dim: int = 32, **schedule_kwargs):
        CausalFastGenNetwork.__init__(self, chunk_size=chunk_size, total_num_frames=total_num_frames,
                                      net_pred_type=net_pred_type, schedule_type=schedule_type, **schedule_kwargs)
        if max_cache_frames is not None and int(max_cache_frames) < 1:
            raise ValueError(f"max_cache_frames must be None or >= 1; got {max_cache_frames}")
        self.max_cache_frames = None if max_cache_frames is None else int(max_cache_frames)
        self._caches: dict[str, dict] = {}
        self._build(dim, hidden_dim, num_layers, num_heads, label_dim, sigma_data, time_emb_dim)

    def clear_caches(self) -> None:
        self._caches = {}

    def cached_frames(self, cache_tag: str = "pos") -> list[int]:
        """Frame indices held in a cache (for tests and streaming diagnostics)."""
        cache = self._caches.get(cache_tag)
        return [] if cache is None else sorted(cache["frames"].tolist())

    def forward(self, x_t, t, condition=None, r=None, feature_indices=None, return_features_early=False,
                return_logvar=False, fwd_pred_type=None, cache_tag="pos", cur_start_frame=0, store_kv=False,
                is_ar=False, frame_offset=0, **kwargs):
        self._check_x(x_t)
        n = x_t.shape[2]
        self.check_chunked(n)
        chunk, window = self.chunk_size, self.max_cache_frames
        if not is_ar:
            frames = torch.arange(n, device=x_t.device)
            mask = block_causal_mask(frames, frames, chunk, window)
            return self._run(x_t, t, condition, frames + frame_offset, feature_indices, return_features_early,
                             return_logvar, fwd_pred_type, lambda i, block, h, pos: block(h, pos, mask)[0])
        start = int(cur_start_frame)
        if start < 0 or start % chunk:
            raise ValueError(f"cur_start_frame={start} must be a non-negative multiple of chunk_size={chunk}")
        frames = start + torch.arange(n, device=x_t.device)
        cache = self._caches.get(cache_tag)
        if cache is not None and cache["k"][0].shape[0] != x_t.shape[0]:
            raise ValueError(f"cache {cache_tag!r} holds batch {cache['k'][0].shape[0]}, this call has "
                             f"{x_t.shape[0]}: clear_caches() before a new video")
        if cache is not None:
            keep = cache["frames"] < start
            if window is not None:
                keep &= cache["frames"] >= start - window
            past_frames = cache["frames"][keep]
        else:
            keep, past_frames = None, frames[:0]
        mask = block_causal_mask(frames, torch.cat([past_frames, frames]), chunk, window)
        new_kv = []

        def attend(i, block, h, pos):
            past = None if cache is None else (cache["k"][i][:, :, keep], cache["v"][i][:, :, keep])
            h, kv = block(h, pos, mask, past)
            new_kv.append(kv)
            return h

        out = self._run(x_t, t, condition, frames + frame_offset, feature_indices, return_features_early,
                        return_logvar, fwd_pred_type, attend)
        if store_kv:
            if len(new_kv) != self.num_layers:
                raise ValueError("store_kv=True needs every block to run (return_features_early stops early)")
            self._store(cache_tag, frames, new_kv)
        return out

    def _store(self, tag, frames, new_kv) -> None:
        """Write this call's entries for `frames` (replacing old ones for the same frames); keep the window."""
        old = self._caches.get(tag)
        if old is None:
            all_frames, ks, vs = frames, [k for k, _ in new_kv], [v for _, v in new_kv]
        else:
            keep = (old["frames"] < frames[0]) | (old["frames"] > frames[-1])
            all_frames = torch.cat([old["frames"][keep], frames])
            ks = [torch.cat([ok[:, :, keep], k], 2) for ok, (k, _) in zip(old["k"], new_kv)]
            vs = [torch.cat([ov[:, :, keep], v], 2) for ov, (_, v) in zip(old["v"], new_kv)]
        if self.max_cache_frames is not None:
            keep = all_frames > all_frames.max() - self.max_cache_frames
            all_frames, ks, vs = all_frames[keep], [k[:, :, keep] for k in ks], [v[:, :, keep] for v in vs]
        self._caches[tag] = {"frames": all_frames, "k": ks, "v": vs}

    def cache_bytes(self) -> int:
        """Memory held by all caches (bytes)."""
        return sum(t.numel() * t.element_size() for c in self._caches.values() for t in (*c["k"], *c["v"]))


class AR1VideoDenoiser(FastGenNetwork):
    """The exact bidirectional teacher for AR(1) videos (fastgen.utils.ar1_video): E[x0 | x_t] in closed form under
    any schedule, per-frame times allowed. Feature 0 is cat([x_t, x0], dim=1) [B, 2D, T, 1, 1]. No weights."""

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        return {}

    def __init__(self, dim: int = 4, a: float = 0.9, mean=None, std=None, net_pred_type: str = "x0",
                 schedule_type: str = "rf", **schedule_kwargs):
        from fastgen.utils.ar1_video import AR1Video, default_mean_std

        super().__init__(net_pred_type=net_pred_type, schedule_type=schedule_type, **schedule_kwargs)
        d_mean, d_std = default_mean_std(dim)
        self.dim = int(dim)
        self.process = AR1Video(a, d_mean if mean is None else list(mean), d_std if std is None else list(std))
        if self.process.dim != self.dim:
            raise ValueError(f"mean/std have {self.process.dim} entries; dim={dim}")

    def forward(self, x_t, t, condition=None, r=None, feature_indices=None, return_features_early=False,
                return_logvar=False, fwd_pred_type=None, **kwargs):
        check_video(x_t, self.dim, type(self).__name__)
        feature_indices = sorted(set(feature_indices or ()))
        if any(i != 0 for i in feature_indices):
            raise ValueError(f"AR1VideoDenoiser has one feature (index 0); got {feature_indices}")
        t = frame_times(t, x_t)
        schedule = self.noise_scheduler
        x0 = self.process.posterior_mean(x_t, schedule.alpha(t), schedule.sigma(t))
        features = [torch.cat([x_t, x0], dim=1)] if feature_indices else []
        if return_features_early:
            return features
        target = fwd_pred_type or self.net_pred_type
        out = x0 if target == "x0" else schedule.convert_model_output(x_t, x0, t, "x0", target)
        logvar = torch.zeros(x_t.shape[0], 1, dtype=x_t.dtype, device=x_t.device) if return_logvar else None
        return self.pack_outputs(out, features, logvar, feature_indices, return_logvar)
