"""Magnitude-preserving layers of EDM2 (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models"): every layer keeps unit expected activation magnitude, and weights are normalised per output
channel in the forward pass. Equation numbers refer to that paper. Parameter names match the EDM2 checkpoints.

Difference from EDM2's code: forced weight normalisation (eq. 66, rewriting the stored weights to unit norm) is not
a side effect of the training forward pass but the explicit `EDM2Precond.forced_weight_normalization()` (called by
ForcedWeightNormCallback before each step), so the forward is a pure function of the weights: safe under FSDP,
torch.func.jvp and repeated evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.networks.EDM.layers import attention

RESAMPLE_MODES = ("keep", "up", "down")


def normalize(x: torch.Tensor, dim=None, eps: float = 1e-4) -> torch.Tensor:
    """x / (eps + ||x|| / sqrt(N)) over `dim` (default: all but the first): unit RMS per slice (eq. 66)."""
    if dim is None:
        dim = list(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.promote_types(x.dtype, torch.float32))
    norm = eps + norm * math.sqrt(norm.numel() / x.numel())
    return x / norm.to(x.dtype)


def resample(x: torch.Tensor, resample_filter: Sequence[float] = (1, 1), mode: str = "keep") -> torch.Tensor:
    """2x FIR down/up-sampling per channel (the filter normalised to unit DC gain), or identity for 'keep'."""
    if mode == "keep":
        return x
    if mode not in RESAMPLE_MODES:
        raise ValueError(f"resample mode must be one of {RESAMPLE_MODES}; got {mode!r}")
    taps = torch.as_tensor(list(resample_filter), dtype=torch.float32, device=x.device)
    pad = (len(taps) - 1) // 2
    taps = taps / taps.sum()
    kernel = torch.outer(taps, taps)[None, None].to(x.dtype)
    c = x.shape[1]
    if mode == "down":
        return F.conv2d(x, kernel.tile([c, 1, 1, 1]), groups=c, stride=2, padding=pad)
    return F.conv_transpose2d(x, (kernel * 4).tile([c, 1, 1, 1]), groups=c, stride=2, padding=pad)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """Magnitude-preserving SiLU (eq. 81): silu(x) / 0.596, the RMS of silu on N(0, 1)."""
    return F.silu(x) / 0.596


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """Magnitude-preserving weighted sum (eq. 88): lerp(a, b, t) / sqrt((1 - t)^2 + t^2)."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: torch.Tensor, b: torch.Tensor, dim: int = 1, t: float = 0.5) -> torch.Tensor:
    """Magnitude-preserving concatenation (eq. 103): each part weighted by its share t and its channel count."""
    na, nb = a.shape[dim], b.shape[dim]
    scale = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    wa = scale / math.sqrt(na) * (1 - t)
    wb = scale / math.sqrt(nb) * t
    return torch.cat([wa * a, wb * b], dim=dim)


class MPFourier(nn.Module):
    """Magnitude-preserving Fourier features (eq. 75): sqrt(2) cos(2 pi (f x + phi)), f ~ N(0, bandwidth^2),
    phi ~ U(0, 1); `freqs` (2 pi f) and `phases` (2 pi phi) are saved buffers."""

    def __init__(self, num_channels: int, bandwidth: float = 1.0):
        super().__init__()
        self.num_channels, self.bandwidth = int(num_channels), float(bandwidth)
        self.register_buffer("freqs", torch.empty(self.num_channels))
        self.register_buffer("phases", torch.empty(self.num_channels))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.freqs.normal_().mul_(2 * math.pi * self.bandwidth)
        self.phases.uniform_().mul_(2 * math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        y = torch.outer(x.to(dtype), self.freqs.to(dtype)) + self.phases.to(dtype)
        return (y.cos() * math.sqrt(2)).to(x.dtype)


class MPPositional(nn.Module):
    """Magnitude-preserving sinusoidal embedding sqrt(2) [cos(x f_i), sin(x f_i)], f_i = max_positions^(-2i/N)
    (a deterministic alternative to MPFourier; no buffers)."""

    def __init__(self, num_channels: int, max_positions: int = 10000):
        super().__init__()
        self.num_channels, self.max_positions = int(num_channels), max_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        dtype = torch.promote_types(x.dtype, torch.float32)
        freqs = (1.0 / self.max_positions) ** (torch.arange(half, dtype=dtype, device=x.device) / half)
        y = torch.outer(x.to(dtype), freqs)
        return (torch.cat([y.cos(), y.sin()], dim=1) * math.sqrt(2)).to(x.dtype)


class MPConv(nn.Module):
    """Magnitude-preserving convolution / linear layer (eq. 47): w = normalize(W) * gain / sqrt(fan_in).

    kernel=() makes it a linear layer (weight [out, in]); kernel=(k, k) a 'same'-padded convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int]):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, *kernel))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.weight.normal_()

    @torch.no_grad()
    def normalize_weight_(self) -> None:
        """Forced weight normalisation (eq. 66): rescale the stored weight to unit RMS per output channel."""
        self.weight.copy_(normalize(self.weight.to(torch.float32)).to(self.weight.dtype))

    def forward(self, x: torch.Tensor, gain=1.0) -> torch.Tensor:
        w = normalize(self.weight.to(torch.promote_types(self.weight.dtype, torch.float32)))
        w = (w * (gain / math.sqrt(w[0].numel()))).to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return F.conv2d(x, w, padding=w.shape[-1] // 2)


class Block(nn.Module):
    """EDM2 UNet block (Figure 21): [resample, (enc: 1x1 skip conv + pixel norm)], residual branch
    conv-(1 + gain * emb)-dropout-conv merged by mp_sum, optional cosine attention, activation clipping."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        flavor: str = "enc",
        resample_mode: str = "keep",
        resample_filter: Sequence[float] = (1, 1),
        attention: bool = False,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        res_balance: float = 0.3,
        attn_balance: float = 0.3,
        clip_act: float | None = 256,
    ):
        super().__init__()
        if flavor not in ("enc", "dec"):
            raise ValueError(f"flavor must be 'enc' or 'dec'; got {flavor!r}")
        if resample_mode not in RESAMPLE_MODES:
            raise ValueError(f"resample_mode must be one of {RESAMPLE_MODES}; got {resample_mode!r}")
        self.out_channels, self.flavor = out_channels, flavor
        self.resample_filter, self.resample_mode = list(resample_filter), resample_mode
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout, self.res_balance, self.attn_balance, self.clip_act = dropout, res_balance, attn_balance, clip_act
        self.emb_gain = nn.Parameter(torch.zeros([1]))  # shape [1], not [] (FSDP2 cannot shard 0-d params)
        self.conv_res0 = MPConv(out_channels if flavor == "enc" else in_channels, out_channels, kernel=[3, 3])
        self.emb_linear = MPConv(emb_channels, out_channels, kernel=[])
        self.conv_res1 = MPConv(out_channels, out_channels, kernel=[3, 3])
        self.conv_skip = MPConv(in_channels, out_channels, kernel=[1, 1]) if in_channels != out_channels else None
        self.attn_qkv = MPConv(out_channels, out_channels * 3, kernel=[1, 1]) if self.num_heads else None
        self.attn_proj = MPConv(out_channels, out_channels, kernel=[1, 1]) if self.num_heads else None

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.emb_gain.zero_()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = resample(x, self.resample_filter, self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, dim=1)  # pixel norm
        y = self.conv_res0(mp_silu(x))
        c = self.emb_linear(emb, gain=self.emb_gain) + 1
        y = mp_silu(y * c[:, :, None, None].to(y.dtype))
        if self.training and self.dropout:
            y = F.dropout(y, p=self.dropout)
        y = self.conv_res1(y)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)
        if self.num_heads:
            b, ch, h, w = x.shape
            qkv = self.attn_qkv(x).reshape(b, self.num_heads, ch // self.num_heads, 3, h * w)
            q, k, v = normalize(qkv, dim=2).unbind(3)  # pixel norm per head, then split
            flat = (b * self.num_heads, ch // self.num_heads, h * w)
            y = attention(q.reshape(flat), k.reshape(flat), v.reshape(flat)).reshape(b, ch, h, w)
            x = mp_sum(x, self.attn_proj(y), t=self.attn_balance)
        if self.clip_act is not None:
            x = x.clamp(-self.clip_act, self.clip_act)
        return x
