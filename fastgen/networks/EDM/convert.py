"""Convert official EDM network pickles (NVlabs/edm `EDMPrecond`) into `EDMPrecond` state dicts.

    python -m fastgen.networks.EDM.convert edm-cifar10-32x32-cond-vp.pkl edm-cifar10-32x32-cond-vp.pth

The pickle is read by `official_pickle.RestrictedUnpickler` (no code from the file runs). Key mapping, official
(`data["ema"]`, class EDMPrecond) -> ours (EDMPrecond):

    model.<rest>                      -> unet.<rest>      (SongUNet / DhariwalUNet: same module names and layouts:
                                                           map_noise, map_label, map_augment, map_layer0/1,
                                                           enc.{R}x{R}_{conv|down|blockN|aux_*}, dec.{R}x{R}_{in0|in1|
                                                           up|blockN|aux_*}, out_norm, out_conv; UNetBlock children
                                                           norm0, conv0, affine, norm1, conv1, skip, norm2, qkv, proj)
    model.<...>.resample_filter       -> dropped (a constant here, recomputed from `resample_filter`; checked equal)

Tensor layouts are identical (qkv channels ordered [head, channel, q/k/v]; Linear weights [out, in]), so values
copy unchanged. Our extras (`unet.map_r` for r_timestep, `logvar_linear` for enable_logvar) are not in EDM
checkpoints and keep their initialisation. The constructor kwargs are rebuilt from the pickled `_init_kwargs`
(official defaults filled in), so the converted file loads into `EDMPrecond(**kwargs)` with strict=True.
`use_fp16`, `sigma_min`, `sigma_max` are dropped: precision comes from AMP, the time range from the schedule.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from fastgen.networks.EDM.layers import resample_kernel
from fastgen.networks.EDM.network import MODEL_TYPES, EDMPrecond, resolve_arch_kwargs
from fastgen.networks.EDM.official_pickle import OfficialObject, find_network, load_official_pickle

OFFICIAL_EDM_POSITIONAL = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min", "sigma_max",
                           "sigma_data", "model_type")  # fmt: skip
OFFICIAL_EDM_DROPPED = ("use_fp16", "sigma_min", "sigma_max")
ARCH_KEYS = ("model_channels", "channel_mult", "channel_mult_emb", "channel_mult_noise", "num_blocks",
             "attn_resolutions", "dropout", "label_dropout", "embedding_type", "encoder_type", "decoder_type",
             "resample_filter")  # fmt: skip


def official_init_kwargs(net: OfficialObject, positional_names) -> dict:
    """Constructor kwargs recorded by torch_utils.persistence (positional args named)."""
    args, kwargs = net.init_args, net.init_kwargs
    if not args and not kwargs:
        raise ValueError(
            f"the pickled {net.class_name} has no recorded constructor arguments; pass net_kwargs explicitly"
        )
    if len(args) > len(positional_names):
        raise ValueError(
            f"{net.class_name} pickle has {len(args)} positional args; expected <= {len(positional_names)}"
        )
    return {**dict(zip(positional_names, args)), **kwargs}


def edm_kwargs_from_official(net: OfficialObject) -> dict:
    """EDMPrecond kwargs equivalent to an official EDMPrecond's constructor arguments."""
    if net.class_name != "EDMPrecond":
        raise ValueError(
            f"only EDM's EDMPrecond networks convert to EDMPrecond; got class {net.class_name!r} "
            "(VP/VE/iDDPM preconditionings are different formulations)"
        )
    given = official_init_kwargs(net, OFFICIAL_EDM_POSITIONAL)
    for name in OFFICIAL_EDM_DROPPED:
        given.pop(name, None)
    model_type = given.pop("model_type", "DhariwalUNet")  # EDM's default
    if model_type not in MODEL_TYPES:
        raise ValueError(f"official model_type {model_type!r} not supported; expected one of {MODEL_TYPES}")
    kwargs = dict(
        img_resolution=int(given.pop("img_resolution")), img_channels=int(given.pop("img_channels")),
        label_dim=int(given.pop("label_dim", 0)), sigma_data=float(given.pop("sigma_data", 0.5)),
        model_type=model_type, augment_dim=int(given.pop("augment_dim", 0)),
    )  # fmt: skip
    arch = {k: given.pop(k) for k in ARCH_KEYS if k in given}
    if given:
        raise ValueError(f"official EDMPrecond arguments not understood: {sorted(given)}")
    kwargs.update(resolve_arch_kwargs(model_type, **arch))
    return kwargs


def _check_filter(key: str, value: torch.Tensor, taps) -> None:
    expected = resample_kernel(taps)
    if value.shape != expected.shape or not torch.allclose(value.float(), expected, atol=1e-6):
        raise ValueError(f"{key} differs from the filter of resample_filter={list(taps)}; refusing to convert")


def convert_edm_state_dict(official: dict[str, torch.Tensor], resample_filter=(1, 1)) -> dict[str, torch.Tensor]:
    """Official EDMPrecond state dict -> ours (see the module docstring for the mapping)."""
    converted = {}
    for key, value in official.items():
        if not key.startswith("model."):
            raise ValueError(f"unexpected key {key!r} in an EDMPrecond state dict (expected 'model.*')")
        if key.endswith(".resample_filter"):
            _check_filter(key, value, resample_filter)
            continue
        converted["unet." + key[len("model.") :]] = value.detach().to(torch.float32).contiguous()
    return converted


def check_against_network(state: dict[str, torch.Tensor], net: torch.nn.Module, optional_prefixes=()) -> None:
    """Raise unless `state` fills every tensor of `net` with the right shape (keys under optional_prefixes aside)."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    missing = sorted(k for k in expected if k not in state and not k.startswith(tuple(optional_prefixes)))
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(k for k in state if k in expected and tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(
            f"converted weights do not match the network: missing {missing[:8]}, unexpected {unexpected[:8]}, "
            f"wrong shape {[(k, tuple(state[k].shape), expected[k]) for k in wrong[:8]]}"
        )


def convert_edm_pickle(source, key: str = "ema", net_kwargs: dict | None = None) -> tuple[dict, dict]:
    """(EDMPrecond kwargs, state dict) from an official EDM pickle (path or file object)."""
    net = find_network(load_official_pickle(source), key)
    kwargs = dict(net_kwargs) if net_kwargs is not None else edm_kwargs_from_official(net)
    state = convert_edm_state_dict(net.state_dict(), kwargs.get("resample_filter") or (1, 1))
    with torch.device("meta"):
        reference = EDMPrecond(**kwargs)
    check_against_network(state, reference, optional_prefixes=("unet.map_r.", "logvar_linear."))
    return kwargs, state


def save_state_dict(state: dict[str, torch.Tensor], path, net_kwargs: dict | None = None) -> Path:
    """Write a state dict as .safetensors (kwargs in its metadata) or a torch file; kwargs also go to <path>.json.

    Written to a temporary name and renamed, so a crash never leaves a truncated file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        meta = {"fastgen_net_kwargs": json.dumps(net_kwargs)} if net_kwargs is not None else None
        save_file(tensors, str(tmp), metadata=meta)
    else:
        torch.save(tensors, tmp)
    os.replace(tmp, path)
    if net_kwargs is not None:
        path.with_name(path.name + ".json").write_text(json.dumps(net_kwargs, indent=2) + "\n")
    return path


def main(argv=None, convert_fn=convert_edm_pickle, description=__doc__) -> int:
    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    parser.add_argument("source", help="official network pickle (.pkl)")
    parser.add_argument("output", help="output state dict (.pth / .pt / .safetensors)")
    parser.add_argument("--key", default="ema", help="entry of the pickled dict holding the network (default: ema)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.source):
        raise ValueError(f"source pickle not found: {args.source}")
    try:
        kwargs, state = convert_fn(args.source, key=args.key)
    except (ValueError, KeyError) as error:  # already names the problem
        raise ValueError(f"cannot convert {args.source}: {error}") from error
    except Exception as error:  # noqa: BLE001 - e.g. pickle errors of a damaged or foreign file: one line
        raise ValueError(f"cannot convert {args.source}: not a readable official network pickle "
                         f"({type(error).__name__}: {error})") from error
    out = save_state_dict(state, args.output, kwargs)
    print(f"wrote {len(state)} tensors to {out}; constructor kwargs: {json.dumps(kwargs)}")
    return 0


if __name__ == "__main__":
    from fastgen.cli import run_cli  # one 'error: ...' line instead of a traceback

    raise SystemExit(run_cli(main))
