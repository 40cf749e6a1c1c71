"""DiT / SiT: a class-conditional latent transformer with adaLN-Zero blocks.

Written from "Scalable Diffusion Models with Transformers" (Peebles & Xie, 2023) and "SiT: Exploring Flow and
Diffusion-based Generative Models with Scalable Interpolant Transformers" (Ma et al., 2024).

The network works on latents (e.g. SD-VAE latents [4, 32, 32] for ImageNet-256). It has no VAE and no DDIM
pipeline of its own: encode/decode latents outside it; `sample()` is the FastGenNetwork multi-step sampler.
Official DiT/SiT checkpoints load through `fastgen.networks.DiT.convert`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.networks.network import SMOKE_SPATIAL_SIZE, FastGenNetwork

TIME_COND_TYPES = ("abs", "diff")
ATTENTION_TYPES = ("sdpa", "math")
FREQUENCY_EMBEDDING_SIZE = 256


def sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[N] positions -> [N, embed_dim]: sin of the first half of the frequencies, then cos (ViT/MAE layout)."""
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(embed_dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positional embedding [grid_size**2, embed_dim] for row-major tokens.

    The first half of the channels encodes the column index, the second half the row index (the layout of the
    official DiT checkpoints' `pos_embed`, so converted weights see the positions they were trained with).
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"hidden_size must be divisible by 4 for the 2-D sin-cos embedding; got {embed_dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    emb_col = sincos_1d(embed_dim // 2, cols.reshape(-1))
    emb_row = sincos_1d(embed_dim // 2, rows.reshape(-1))
    return torch.cat([emb_col, emb_row], dim=1).float()


def timestep_frequencies(t: torch.Tensor, dim: int = FREQUENCY_EMBEDDING_SIZE, max_period: float = 10000.0):
    """Sinusoidal features of a (possibly fractional) timestep [B] -> [B, dim]: cos then sin (DiT layout).
    Computed in float64: arguments reach ~1000 rad, where float32 rounding would blur small time differences
    (and break finite-difference / JVP agreement)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = t.to(torch.float64)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # adaLN: x * (1 + scale) + shift, per sample, broadcast over tokens
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _has_forward_tangent(x: torch.Tensor) -> bool:
    """True under torch.func transforms (jvp/vmap) or forward-mode AD, where the fused CPU SDPA kernels fail."""
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return True
    return torch.autograd.forward_ad.unpack_dual(x).tangent is not None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_type: str = "sdpa") -> torch.Tensor:
    """Multi-head attention on [B, heads, N, head_dim]. "math" (also used automatically under JVP) is
    softmax(q k^T / sqrt(d)) v written out, so forward-mode AD and double backward go through it."""
    if attention_type == "sdpa" and not _has_forward_tangent(q):
        return F.scaled_dot_product_attention(q, k, v)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return scores.softmax(dim=-1) @ v


class TimestepEmbedder(nn.Module):
    """Scalar time -> hidden vector: sinusoidal features, then Linear-SiLU-Linear."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(FREQUENCY_EMBEDDING_SIZE, hidden_size)
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = timestep_frequencies(t).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(freq)))


class SelfAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, attention_type: str):
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.attention_type = attention_type
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # qkv channels are ordered (q|k|v, head, head_dim), as in the official checkpoints
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, self.attention_type)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class MLP(nn.Module):
    def __init__(self, hidden_size: int, mlp_ratio: float):
        super().__init__()
        inner = int(hidden_size * mlp_ratio)
        self.fc_in = nn.Linear(hidden_size, inner)
        self.fc_out = nn.Linear(inner, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.gelu(self.fc_in(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero: the conditioning regresses shift/scale/gate for attention and MLP; the
    gates start at zero so every block starts as the identity (DiT paper, sec. 3.2)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, attention_type: str):
        super().__init__()
        self.norm_attn = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads, attention_type)
        self.norm_mlp = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(hidden_size, mlp_ratio)
        self.modulation = nn.Linear(hidden_size, 6 * hidden_size)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(F.silu(c)).chunk(6, dim=1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm_attn(x), shift_a, scale_a))
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm_mlp(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(hidden_size, 2 * hidden_size)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(c)).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(FastGenNetwork):
    """DiT/SiT backbone as a FastGenNetwork (native prediction `net_pred_type`, default "flow" on the RF schedule).

    Time conditioning: the embedder sees `t * 1000` when `scale_t` (DiT's integer DDPM steps) or `t` itself (SiT).
    `use_sit_convention` serves SiT checkpoints, whose time runs from noise (0) to data (1) and whose velocity
    points towards data: the net is fed 1 - t and its output negated, so that outside it the usual fastgen RF
    convention holds (x_t = (1 - t) x0 + t eps, flow = eps - x0).
    `r_timestep` adds a second embedder for MeanFlow's r: of r itself ("abs") or of the interval t - r ("diff",
    measured in fastgen time, so it is >= 0 whatever the convention).
    Labels: `num_classes` rows plus one null row (the classifier-free-guidance "no class"), which a zero one-hot
    row, a [B, 0] condition or None selects.
    """

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        """Tiny DiT for --smoke: 8x8 latents (patches unchanged), 2 blocks of width 32 with 2 heads."""
        return {"input_size": SMOKE_SPATIAL_SIZE, "hidden_size": 32, "depth": min(2, int(kwargs.get("depth", 28))),
                "num_heads": 2}

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        enable_class_dropout: bool = False,
        num_classes: int = 1000,
        learn_sigma: bool = False,
        r_timestep: bool = False,
        scale_t: bool = True,
        time_cond_type: str = "abs",
        use_sit_convention: bool = False,
        enable_logvar_linear: bool = False,
        attention_type: str = "sdpa",
        net_pred_type: str = "flow",
        schedule_type: str = "rf",
        **schedule_kwargs,
    ):
        super().__init__(net_pred_type=net_pred_type, schedule_type=schedule_type, **schedule_kwargs)
        if time_cond_type not in TIME_COND_TYPES:
            raise ValueError(f"time_cond_type={time_cond_type!r}; expected one of {TIME_COND_TYPES}")
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type={attention_type!r}; expected one of {ATTENTION_TYPES}")
        if input_size % patch_size != 0:
            raise ValueError(f"input_size ({input_size}) must be divisible by patch_size ({patch_size})")
        if not 0.0 <= class_dropout_prob <= 1.0:
            raise ValueError(f"class_dropout_prob must be in [0, 1]; got {class_dropout_prob}")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.hidden_size = hidden_size
        self.depth = depth
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.label_dim = num_classes
        self.class_dropout_prob = class_dropout_prob
        self.enable_class_dropout = enable_class_dropout
        self.learn_sigma = learn_sigma
        self.r_timestep = r_timestep
        self.scale_t = scale_t
        self.time_cond_type = time_cond_type
        self.use_sit_convention = use_sit_convention
        self.grid_size = input_size // patch_size

        self.patch_embed = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.t_embed = TimestepEmbedder(hidden_size)
        self.r_embed = TimestepEmbedder(hidden_size) if r_timestep else None
        self.label_embed = nn.Embedding(num_classes + 1, hidden_size)  # last row = null class
        self.register_buffer("pos_embed", sincos_2d(hidden_size, self.grid_size)[None], persistent=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio, attention_type) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.logvar_linear = nn.Linear(hidden_size, 1) if enable_logvar_linear else None
        self.initialize_weights()

    # ----------------------------------------------------------------------------------------------- init
    def initialize_weights(self) -> None:
        """DiT init: xavier linears, N(0, 0.02) embedders, and zeros for every adaLN modulation and the output
        projection, so the untrained network outputs exactly zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.label_embed.weight, std=0.02)
        for embedder in (self.t_embed, self.r_embed):
            if embedder is not None:
                nn.init.normal_(embedder.linear_1.weight, std=0.02)
                nn.init.normal_(embedder.linear_2.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        for layer in (self.final_layer.modulation, self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.logvar_linear is not None:
            nn.init.zeros_(self.logvar_linear.weight)
            nn.init.zeros_(self.logvar_linear.bias)

    def reset_parameters(self) -> None:
        """Re-initialise after `to_empty()` (meta-device construction): weights and the fixed position table."""
        super().reset_parameters()
        self.pos_embed = sincos_2d(self.hidden_size, self.grid_size)[None].to(self.patch_embed.weight.device)
        self.initialize_weights()

    def fsdp_units(self) -> list[nn.Module]:
        """The modules FSDP2 shards one by one: the transformer blocks."""
        return list(self.blocks)

    # ------------------------------------------------------------------------------------------ helpers
    def _embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """Fastgen time [B] (float64 allowed) -> the value the embedder sees (convention and scale applied)."""
        t = 1.0 - t if self.use_sit_convention else t
        return t * 1000.0 if self.scale_t else t

    def _time_condition(self, t: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
        emb = self.t_embed(self._embed_time(t))
        if self.r_embed is not None:
            r = t if r is None else torch.as_tensor(r, device=t.device).reshape(-1).expand_as(t)
            if self.time_cond_type == "diff":
                # interval length t - r: no SiT flip (the flip would make it negative)
                r_in = (t - r) * 1000.0 if self.scale_t else (t - r)
            else:
                r_in = self._embed_time(r)
            emb = emb + self.r_embed(r_in)
        return emb

    def _label_condition(self, condition, batch_size: int, device: torch.device) -> torch.Tensor:
        """Label embedding [B, hidden]. One-hot/class-weight rows w give sum_k w_k e_k + (1 - sum_k w_k) e_null,
        so a one-hot row selects its class exactly and a zero row selects the null class."""
        if isinstance(condition, dict):
            raise ValueError(f"DiT takes a tensor condition (one-hot [B, num_classes]); got a dict {list(condition)}")
        table = self.label_embed.weight
        null = table[-1]
        if condition is None or (condition.ndim == 2 and condition.shape[1] == 0):
            emb = null.expand(batch_size, -1)
            weights = None
        elif not condition.is_floating_point():  # integer class ids [B]
            ids = condition.reshape(-1).long()
            if ids.numel() != batch_size:
                raise ValueError(f"integer condition must have shape [B={batch_size}]; got {tuple(condition.shape)}")
            weights = F.one_hot(ids, self.num_classes).to(table.dtype)
        else:
            if condition.ndim != 2 or condition.shape != (batch_size, self.num_classes):
                raise ValueError(
                    f"condition must be None, [B, 0] or one-hot [B={batch_size}, num_classes={self.num_classes}]; "
                    f"got {tuple(condition.shape)}"
                )
            weights = condition.to(table.dtype)
        if weights is not None:
            if self.training and self.enable_class_dropout and self.class_dropout_prob > 0:
                keep = torch.rand(batch_size, 1, device=device) >= self.class_dropout_prob
                weights = weights * keep.to(weights.dtype)
            emb = weights @ table[:-1] + (1.0 - weights.sum(dim=1, keepdim=True)) * null
        return emb

    def _tokens_to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, self.grid_size, self.grid_size)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        # token channels are ordered (patch_row, patch_col, channel) as in the official checkpoints
        b, p, g, c = x.shape[0], self.patch_size, self.grid_size, self.out_channels
        x = x.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, g * p, g * p)

    def _check_feature_indices(self, feature_indices) -> list[int]:
        indices = sorted(set(int(i) for i in feature_indices or ()))
        bad = [i for i in indices if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"feature_indices {bad} out of range; DiT features are block indices 0..{self.depth - 1}")
        return indices

    # ------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        condition=None,
        r: torch.Tensor | None = None,
        feature_indices=None,
        return_features_early: bool = False,
        return_logvar: bool = False,
        fwd_pred_type: str | None = None,
        **kwargs,
    ):
        """See FastGenNetwork.forward. Features are the tokens after each selected block, as maps
        [B, hidden_size, input_size / patch_size, input_size / patch_size], in increasing block order."""
        indices = self._check_feature_indices(feature_indices)
        if return_features_early and not indices:
            return []  # no feature requested: nothing to compute
        if return_logvar and self.logvar_linear is None:
            raise ValueError("return_logvar=True needs a logvar head: build DiT with enable_logvar_linear=True")
        batch = x_t.shape[0]
        t = self.expand_t(t, x_t)
        if t.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape [B={batch}]; got {tuple(t.shape)}")
        if x_t.shape[-1] != self.input_size or x_t.shape[-2] != self.input_size:
            raise ValueError(
                f"x_t must be [B, {self.in_channels}, {self.input_size}, {self.input_size}]; got {tuple(x_t.shape)}"
            )

        dtype = self.patch_embed.weight.dtype
        x = self.patch_embed(x_t.to(dtype)).flatten(2).transpose(1, 2) + self.pos_embed.to(dtype)
        t_emb = self._time_condition(t, r)
        c = t_emb + self._label_condition(condition, batch, x.device).to(t_emb.dtype)

        features, wanted = [], set(indices)
        for i, block in enumerate(self.blocks):
            x = block(x, c)
            if i in wanted:
                features.append(self._tokens_to_map(x))
                if return_features_early and i == indices[-1]:
                    return features  # the remaining blocks would only be wasted compute
        out = self._unpatchify(self.final_layer(x, c))
        if self.learn_sigma:
            out = out[:, : self.in_channels]  # the variance half is not used by fastgen's losses
        if self.use_sit_convention:
            out = -out
        out = self.convert_output(x_t, out.to(x_t.dtype), t, fwd_pred_type)
        logvar = self.logvar_linear(t_emb) if return_logvar else None
        return self.pack_outputs(out, features, logvar, indices, return_logvar)
