"""Convert official EDM2 network pickles (NVlabs/edm2 `training.networks_edm2.Precond`) into `EDM2Precond` state
dicts.

    python -m fastgen.networks.EDM2.convert edm2-img64-s-fid.pkl edm2-img64-s-fid.pth

The pickle is read by `fastgen.networks.EDM.official_pickle.RestrictedUnpickler` (no code from the file runs).
Key mapping, official (`data["ema"]`, class Precond) -> ours (EDM2Precond): the module tree has the same names,
so keys map one-to-one:

    unet.out_gain, unet.emb_fourier.{freqs,phases}, unet.emb_noise.weight, unet.emb_label.weight,
    unet.enc.{R}x{R}_conv.weight, unet.{enc,dec}.{R}x{R}_{down|up|in0|in1|blockN}.{emb_gain, conv_res0, emb_linear,
    conv_res1, conv_skip, attn_qkv, attn_proj}.weight, unet.out_conv.weight,
    logvar_fourier.{freqs,phases}, logvar_linear.weight                      -> the same keys

Layouts are identical (MPConv weights [out, in, k, k] / [out, in]; qkv channels [head, channel, q/k/v]); values copy
unchanged (as float32), except that the 0-d gains (`unet.out_gain`, `*.emb_gain`) become shape [1] here, because
FSDP2 cannot shard 0-d parameters. The weights of a released EDM2 model are already unit-norm, so no renormalisation is applied.
`use_fp16` is dropped (precision comes from AMP); the other constructor arguments carry over by name.
"""

from __future__ import annotations

import torch

from fastgen.networks.EDM.convert import check_against_network, official_init_kwargs
from fastgen.networks.EDM.convert import main as _main
from fastgen.networks.EDM.official_pickle import OfficialObject, find_network, load_official_pickle
from fastgen.networks.EDM2.network import EDM2Precond

OFFICIAL_EDM2_POSITIONAL = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_data", "logvar_channels")
# arguments of the official Precond / UNet / Block that EDM2Precond takes under the same name
EDM2_KWARGS = ("img_resolution", "img_channels", "label_dim", "sigma_data", "logvar_channels", "model_channels",
               "channel_mult", "channel_mult_noise", "channel_mult_emb", "num_blocks", "attn_resolutions",
               "label_balance", "concat_balance", "resample_filter", "channels_per_head", "dropout", "res_balance",
               "attn_balance", "clip_act")  # fmt: skip


def edm2_kwargs_from_official(net: OfficialObject) -> dict:
    """EDM2Precond kwargs equivalent to an official Precond's constructor arguments (official defaults = ours)."""
    if net.class_name != "Precond":
        raise ValueError(f"expected an EDM2 'Precond' network; got class {net.class_name!r}")
    given = official_init_kwargs(net, OFFICIAL_EDM2_POSITIONAL)
    given.pop("use_fp16", None)
    unknown = sorted(k for k in given if k not in EDM2_KWARGS)
    if unknown:
        raise ValueError(f"official EDM2 Precond arguments not understood: {unknown}")
    if "img_resolution" not in given or "img_channels" not in given:
        raise ValueError("the pickled EDM2 Precond does not record img_resolution / img_channels")
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in given.items()}


def convert_edm2_state_dict(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official EDM2 Precond state dict -> ours (identity on names; float32 contiguous copies)."""
    allowed = ("unet.", "logvar_fourier.", "logvar_linear.")
    bad = sorted(k for k in official if not k.startswith(allowed))
    if bad:
        raise ValueError(f"unexpected keys in an EDM2 Precond state dict: {bad[:8]}")
    converted = {}
    for key, value in official.items():
        value = value.detach().to(torch.float32).contiguous()
        converted[key] = value.reshape(1) if value.ndim == 0 else value  # 0-d gains -> [1] (FSDP2)
    return converted


def convert_edm2_pickle(source, key: str = "ema", net_kwargs: dict | None = None) -> tuple[dict, dict]:
    """(EDM2Precond kwargs, state dict) from an official EDM2 pickle (path or file object)."""
    net = find_network(load_official_pickle(source), key)
    kwargs = dict(net_kwargs) if net_kwargs is not None else edm2_kwargs_from_official(net)
    state = convert_edm2_state_dict(net.state_dict())
    with torch.device("meta"):
        reference = EDM2Precond(**kwargs)
    check_against_network(state, reference)
    return kwargs, state


def main(argv=None) -> int:
    return _main(argv, convert_fn=convert_edm2_pickle, description=__doc__)


if __name__ == "__main__":
    from fastgen.cli import run_cli  # one 'error: ...' line instead of a traceback

    raise SystemExit(run_cli(main))
