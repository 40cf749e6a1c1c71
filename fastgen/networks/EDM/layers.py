"""Building blocks of the EDM UNets (DDPM++ / NCSN++ `SongUNet` and ADM `DhariwalUNet`), Karras et al. 2022.

Parameter names and tensor layouts follow the published EDM networks so their checkpoints load unchanged
(see convert.py); the code is written from the papers. Two deliberate differences:
  * attention is plain tensor ops (no custom autograd.Function), so forward-mode AD (`torch.func.jvp`, used by
    sCM and MeanFlow) runs through the whole network;
  * the resampling filters are non-persistent buffers (constants recomputed from `resample_filter`), so state
    dicts only hold learned weights and random embedding frequencies.
Layers cast their weights to the activation dtype, so a network runs in the dtype of its input (as EDM does);
the embedding path runs in float32 (float64 for a float64 input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


@torch.no_grad()
def init_weight_(tensor: torch.Tensor, mode: str, fan_in: int, fan_out: int, scale: float = 1.0) -> None:
    """In-place EDM weight init: uniform/normal with the Xavier (fan_in + fan_out) or Kaiming (fan_in) variance."""
    if mode == "xavier_uniform":
        tensor.uniform_(-1.0, 1.0).mul_(math.sqrt(6.0 / (fan_in + fan_out)) * scale)
    elif mode == "xavier_normal":
        tensor.normal_().mul_(math.sqrt(2.0 / (fan_in + fan_out)) * scale)
    elif mode == "kaiming_uniform":
        tensor.uniform_(-1.0, 1.0).mul_(math.sqrt(3.0 / fan_in) * scale)
    elif mode == "kaiming_normal":
        tensor.normal_().mul_(math.sqrt(1.0 / fan_in) * scale)
    else:
        raise ValueError(f"init_mode must be one of {INIT_MODES}; got {mode!r}")


def resample_kernel(resample_filter: Sequence[float], device=None) -> torch.Tensor:
    """2-D separable FIR filter [1, 1, k, k] = outer(f, f) / sum(f)^2 (unit DC gain)."""
    f = torch.as_tensor(list(resample_filter), dtype=torch.float32, device=device)
    return (torch.outer(f, f) / f.sum().square())[None, None]


class Linear(nn.Module):
    """Fully connected layer `x @ W^T + b` with EDM's init modes."""

    def __init__(
        self, in_features, out_features, bias=True, init_mode="kaiming_normal", init_weight=1.0, init_bias=0.0
    ):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.init_mode, self.init_weight, self.init_bias = init_mode, float(init_weight), float(init_bias)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fans = dict(mode=self.init_mode, fan_in=self.in_features, fan_out=self.out_features)
        init_weight_(self.weight, scale=self.init_weight, **fans)
        if self.bias is not None:
            init_weight_(self.bias, scale=self.init_bias, **fans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x @ self.weight.to(x.dtype).t()
        return x if self.bias is None else x + self.bias.to(x.dtype)


class Conv2d(nn.Module):
    """Square convolution with optional 2x FIR up/down-sampling; kernel=0 means resample only (no weights).

    `fused_resample` convolves first and then downsamples (NCSN++'s residual encoder path), which changes the
    padding and hence the result, so it is kept for checkpoint fidelity.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel,
        bias=True,
        up=False,
        down=False,
        resample_filter=(1, 1),
        fused_resample=False,
        init_mode="kaiming_normal",
        init_weight=1.0,
        init_bias=0.0,
    ):
        super().__init__()
        if up and down:
            raise ValueError("Conv2d cannot both upsample and downsample; set only one of up/down")
        self.in_channels, self.out_channels, self.kernel = int(in_channels), int(out_channels), int(kernel)
        self.up, self.down, self.fused_resample = bool(up), bool(down), bool(fused_resample)
        self.init_mode, self.init_weight, self.init_bias = init_mode, float(init_weight), float(init_bias)
        self.resample_filter_taps = [float(v) for v in resample_filter]
        k = self.kernel
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, k, k)) if k else None
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if k and bias else None
        filt = resample_kernel(self.resample_filter_taps) if (up or down) else None
        self.register_buffer("resample_filter", filt, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = self.kernel
        fans = dict(mode=self.init_mode, fan_in=self.in_channels * k * k, fan_out=self.out_channels * k * k)
        if self.weight is not None:
            init_weight_(self.weight, scale=self.init_weight, **fans)
        if self.bias is not None:
            init_weight_(self.bias, scale=self.init_bias, **fans)
        if self.resample_filter is not None:
            self.resample_filter = resample_kernel(self.resample_filter_taps, device=self.resample_filter.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) if self.weight is not None else None
        f = self.resample_filter.to(x.dtype) if self.resample_filter is not None else None
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        if self.fused_resample and self.up and w is not None:
            up_filter = f.mul(4).tile([self.in_channels, 1, 1, 1])
            x = F.conv_transpose2d(x, up_filter, groups=self.in_channels, stride=2, padding=w_pad + f_pad)
            x = F.conv2d(x, w)
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels, stride=2)
        else:
            if self.up:  # transposed conv with 4*f: a 2x upsample that keeps the mean
                up_filter = f.mul(4).tile([self.in_channels, 1, 1, 1])
                x = F.conv_transpose2d(x, up_filter, groups=self.in_channels, stride=2, padding=f_pad)
            if self.down:
                x = F.conv2d(x, f.tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """GroupNorm with min(num_groups, C // min_channels_per_group) groups (so narrow layers keep >= 4 channels)."""

    def __init__(self, num_channels, num_groups=32, min_channels_per_group=4, eps=1e-5):
        super().__init__()
        self.num_groups = max(1, min(num_groups, num_channels // min_channels_per_group))
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q^T k / sqrt(C)) applied to v, for q, k, v of shape [N, C, L]; the softmax runs in float32 (or float64).

    Plain einsum + softmax (no custom autograd.Function) so torch.func.jvp and double backward work.
    """
    scale = 1.0 / math.sqrt(q.shape[1])
    dtype = torch.promote_types(q.dtype, torch.float32)
    logits = torch.einsum("ncq,nck->nqk", q.to(dtype), k.to(dtype) * scale)
    weights = logits.softmax(dim=2).to(v.dtype)
    return torch.einsum("nqk,nck->ncq", weights, v)


class UNetBlock(nn.Module):
    """Residual block: GN-SiLU-conv, embedding injection (additive or adaptive scale/shift), GN-SiLU-dropout-conv,
    skip (1x1 / resample when shapes change), then optional multi-head self-attention; outputs scaled by skip_scale.

    The qkv 1x1 conv's output channels are laid out [head, channel, (q, k, v)], as in the EDM checkpoints.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        emb_channels,
        up=False,
        down=False,
        attention=False,
        num_heads=None,
        channels_per_head=64,
        dropout=0.0,
        skip_scale=1.0,
        eps=1e-5,
        resample_filter=(1, 1),
        resample_proj=False,
        adaptive_scale=True,
        init=None,
        init_zero=None,
        init_attn=None,
    ):
        super().__init__()
        init = dict(init or {})
        init_zero = dict(init_zero if init_zero is not None else {"init_weight": 0.0})
        self.in_channels, self.out_channels, self.emb_channels = in_channels, out_channels, emb_channels
        if not attention:
            self.num_heads = 0
        else:
            self.num_heads = num_heads if num_heads is not None else out_channels // channels_per_head
        self.dropout, self.skip_scale, self.adaptive_scale = float(dropout), float(skip_scale), bool(adaptive_scale)

        resample = dict(up=up, down=down, resample_filter=resample_filter)
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, **resample, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel=kernel, **resample, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(
                out_channels, out_channels * 3, kernel=1, **(init_attn if init_attn is not None else init)
            )
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.num_heads:
            b, c, h, w = x.shape
            qkv = self.qkv(self.norm2(x)).reshape(b * self.num_heads, c // self.num_heads, 3, h * w)
            q, k, v = qkv.unbind(2)
            a = attention(q, k, v).reshape(b, c, h, w)
            x = (self.proj(a) + x) * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding [cos(x f_i), sin(x f_i)], f_i = max_positions^(-i / (N/2 - endpoint))."""

    def __init__(self, num_channels, max_positions=10000, endpoint=False):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = int(num_channels), max_positions, bool(endpoint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        dtype = torch.promote_types(x.dtype, torch.float32)
        freqs = torch.arange(half, dtype=dtype, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1.0 / self.max_positions) ** freqs
        x = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features [cos(2 pi f x), sin(2 pi f x)], f ~ N(0, scale^2) (NCSN++); f is a saved buffer."""

    def __init__(self, num_channels, scale=16.0):
        super().__init__()
        self.num_channels, self.scale = int(num_channels), float(scale)
        self.register_buffer("freqs", torch.empty(self.num_channels // 2))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.freqs.normal_().mul_(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


def level_feature_names(img_resolution: int, num_levels: int, num_blocks: int) -> list[str]:
    """Encoder block whose output is feature i: the last block at resolution img_resolution >> i."""
    return [f"{img_resolution >> i}x{img_resolution >> i}_block{num_blocks - 1}" for i in range(num_levels)]
