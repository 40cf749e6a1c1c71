"""Load official DiT (facebookresearch/DiT) and SiT (willisma/SiT) checkpoints into `fastgen.networks.DiT.DiT`.

Both projects share one state-dict layout (SiT reused DiT's model file). Official key -> ours:

    x_embedder.proj.{weight,bias}                  -> patch_embed.{weight,bias}          (Conv2d, kernel = patch)
    t_embedder.mlp.0.{weight,bias}                 -> t_embed.linear_1.{weight,bias}     (256 -> hidden)
    t_embedder.mlp.2.{weight,bias}                 -> t_embed.linear_2.{weight,bias}     (hidden -> hidden)
    y_embedder.embedding_table.weight              -> label_embed.weight                 ([num_classes + 1, hidden],
                                                                                          last row = null class)
    pos_embed                                      -> (dropped: ours is a fixed buffer; checked to be equal)
    blocks.{i}.attn.qkv.{weight,bias}              -> blocks.{i}.attn.qkv.{weight,bias}
    blocks.{i}.attn.proj.{weight,bias}             -> blocks.{i}.attn.out_proj.{weight,bias}
    blocks.{i}.mlp.fc1.{weight,bias}               -> blocks.{i}.mlp.fc_in.{weight,bias}
    blocks.{i}.mlp.fc2.{weight,bias}               -> blocks.{i}.mlp.fc_out.{weight,bias}
    blocks.{i}.adaLN_modulation.1.{weight,bias}    -> blocks.{i}.modulation.{weight,bias}  (6 * hidden outputs)
    final_layer.linear.{weight,bias}               -> final_layer.linear.{weight,bias}
    final_layer.adaLN_modulation.1.{weight,bias}   -> final_layer.modulation.{weight,bias} (2 * hidden outputs)

Tensor layouts (qkv order, modulation chunk order, patch channel order) are the same on both sides, so values are
copied unchanged. Files: the released `.pt` files are bare state dicts; training checkpoints are
`{"model", "ema", "opt", "args"}` (the EMA weights are used unless `use_ema=False`); a DDP `module.` prefix is
stripped. Loading uses `torch.load(weights_only=True)` or safetensors: opening a checkpoint never runs code.

Settings that reproduce the releases: DiT-XL/2: `DiT(hidden_size=1152, depth=28, num_heads=16, learn_sigma=True,
net_pred_type="eps", schedule_type="alphas", alphas_cumprod=dit_alphas_cumprod(), scale_t=True)` (DiT trained on
DDPM's linear betas; fastgen time t = step / 1000, so the embedder sees the integer step); SiT-XL/2: same sizes,
`learn_sigma=True, net_pred_type="flow", schedule_type="rf", scale_t=False, use_sit_convention=True`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

# (official regex, our replacement); the first match wins
KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^x_embedder\.proj\.(weight|bias)$", r"patch_embed.\1"),
    (r"^t_embedder\.mlp\.0\.(weight|bias)$", r"t_embed.linear_1.\1"),
    (r"^t_embedder\.mlp\.2\.(weight|bias)$", r"t_embed.linear_2.\1"),
    (r"^y_embedder\.embedding_table\.weight$", r"label_embed.weight"),
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"blocks.\1.attn.qkv.\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$", r"blocks.\1.attn.out_proj.\2"),
    (r"^blocks\.(\d+)\.mlp\.fc1\.(weight|bias)$", r"blocks.\1.mlp.fc_in.\2"),
    (r"^blocks\.(\d+)\.mlp\.fc2\.(weight|bias)$", r"blocks.\1.mlp.fc_out.\2"),
    (r"^blocks\.(\d+)\.adaLN_modulation\.1\.(weight|bias)$", r"blocks.\1.modulation.\2"),
    (r"^final_layer\.linear\.(weight|bias)$", r"final_layer.linear.\1"),
    (r"^final_layer\.adaLN_modulation\.1\.(weight|bias)$", r"final_layer.modulation.\1"),
)
DROPPED_KEYS = ("pos_embed",)
# parameters our DiT may have that no official checkpoint holds (they keep their fresh initialisation)
FASTGEN_ONLY_PREFIXES = ("r_embed.", "logvar_linear.")


def dit_alphas_cumprod(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> list[float]:
    """alpha-bar table of the DDPM linear-beta schedule DiT was trained with (for schedule_type="alphas")."""
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0).tolist()


def official_to_fastgen_key(key: str) -> str | None:
    """Our name for an official key; None for keys we drop; ValueError for keys we do not know."""
    if key in DROPPED_KEYS:
        return None
    for pattern, replacement in KEY_RULES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    raise ValueError(f"unknown key {key!r} in the DiT/SiT checkpoint; known layout: see fastgen.networks.DiT.convert")


def unwrap_checkpoint(checkpoint: dict, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The state dict inside a released file or a training checkpoint, without a DDP `module.` prefix."""
    if use_ema and "ema" in checkpoint:
        checkpoint = checkpoint["ema"]
    elif "model" in checkpoint:
        checkpoint = checkpoint["model"]
    return {k.removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def convert_official_state_dict(official: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Official layout -> ours. Returns (state_dict, dropped) where dropped holds the tensors without a
    counterpart in ours (the fixed `pos_embed`)."""
    converted, dropped = {}, {}
    for key, value in official.items():
        new_key = official_to_fastgen_key(key)
        if new_key is None:
            dropped[key] = value
        else:
            converted[new_key] = value
    return converted, dropped


def load_official_checkpoint(net, path: str | Path, use_ema: bool = True, strict: bool = True) -> list[str]:
    """Load an official DiT/SiT checkpoint file into `net` (a fastgen DiT). Returns the fastgen-only parameter
    names that kept their initialisation (r_embed / logvar_linear). Raises ValueError on shape mismatches,
    missing weights, or a `pos_embed` that differs from ours (a different input/patch size)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        checkpoint = load_file(str(path))
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return load_official_state_dict(net, unwrap_checkpoint(checkpoint, use_ema=use_ema), strict=strict)


def load_official_state_dict(net, official: dict[str, torch.Tensor], strict: bool = True) -> list[str]:
    """As `load_official_checkpoint`, from an in-memory official-layout state dict."""
    converted, dropped = convert_official_state_dict(official)
    ours = net.state_dict()
    table = converted.get("label_embed.weight")
    if table is not None and table.shape[0] == ours["label_embed.weight"].shape[0] - 1:
        # trained without class dropout: no null row; keep our freshly initialised one
        converted["label_embed.weight"] = torch.cat([table, ours["label_embed.weight"][-1:].to(table)], dim=0)
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs network {tuple(ours[k].shape)}"
        for k, v in converted.items()
        if k in ours and ours[k].shape != v.shape
    ]
    unexpected = [k for k in converted if k not in ours]
    if mismatched or unexpected:
        raise ValueError(
            "checkpoint does not fit this DiT (check hidden_size/depth/patch_size/in_channels/learn_sigma/"
            f"num_classes): mismatched {mismatched}, unexpected {unexpected}"
        )
    if "pos_embed" in dropped:
        pos, ref = dropped["pos_embed"].float(), net.pos_embed.float().cpu()
        if pos.numel() != ref.numel() or not torch.allclose(pos.reshape(ref.shape), ref, atol=1e-4):
            raise ValueError("checkpoint pos_embed differs from this DiT's 2-D sin-cos table (input/patch size?)")
    missing = [k for k in ours if k not in converted]
    fresh = [k for k in missing if k.startswith(FASTGEN_ONLY_PREFIXES)]
    if strict and len(fresh) != len(missing):
        raise ValueError(f"checkpoint lacks weights {sorted(set(missing) - set(fresh))}")
    net.load_state_dict(converted, strict=False)
    return fresh
