"""The demo's shipped teacher: export from a training checkpoint, verify, load.

The teacher ships as `fastgen/assets/teachers/fashion_mnist_edm_teacher.safetensors` (the EMA weights of an SFT run
of `fastgen/configs/experiments/FashionMNIST/config_sft_teacher.py`) beside a JSON manifest that records the file's
sha256, the exact command that trained it, its iterations and its measured FID. Loading checks the sha256 first, so
a damaged or swapped file is refused instead of silently producing a bad demo (safetensors: loading never runs code).

    python -m fastgen.demo.teacher --checkpoint RUN/checkpoints/0006000.pth --ema_name ema \
        --out fastgen/assets/teachers/fashion_mnist_edm_teacher.safetensors --command "bash scripts/train_demo_teacher.sh"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from fastgen.configs.experiments.FashionMNIST._common import shipped_teacher_path


def manifest_path(weights_path: str) -> str:
    """`x.safetensors` -> `x.json`."""
    return os.path.splitext(weights_path)[0] + ".json"


def sha256_of(path: str) -> str:
    from fastgen.metrics import sha256_of_file

    return sha256_of_file(path)


def read_manifest(weights_path: str) -> dict[str, Any]:
    path = manifest_path(weights_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"teacher manifest {path} is missing (it holds the sha256 of {weights_path})")
    with open(path) as file:
        return json.load(file)


def verify_teacher(weights_path: str) -> dict[str, Any]:
    """The manifest of `weights_path` after checking the file's sha256 against it (ValueError on a mismatch)."""
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"teacher weights not found: {weights_path}")
    manifest = read_manifest(weights_path)
    actual = sha256_of(weights_path)
    if actual != manifest.get("sha256"):
        raise ValueError(f"teacher weights {weights_path} have sha256 {actual} but the manifest says "
                         f"{manifest.get('sha256')}: the file is damaged or was replaced. Restore it (git checkout) or "
                         f"re-train it with `{manifest.get('command', 'bash scripts/train_demo_teacher.sh')}`")
    return manifest


def teacher_state_from_checkpoint(checkpoint_path: str, ema_name: str = "ema") -> tuple[dict, int]:
    """(state dict of the EMA network `ema_name` (else 'net'), iteration) from a fastgen training checkpoint."""
    from fastgen.utils.checkpointer import Checkpointer

    state = Checkpointer(os.path.dirname(checkpoint_path)).load(checkpoint_path)
    networks = state["model"]
    name = ema_name if ema_name in networks else "net"
    if name != ema_name:
        raise ValueError(f"{checkpoint_path} has no network {ema_name!r}; it holds {sorted(networks)}")
    return {k: v.contiguous() for k, v in networks[name].items()}, int(state["iteration"])


def export_teacher(checkpoint_path: str, out_path: str, ema_name: str = "ema", command: str = "",
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the EMA weights of a checkpoint as safetensors plus its manifest (sha256, command, iterations, ...)."""
    from safetensors.torch import save_file

    weights, iteration = teacher_state_from_checkpoint(checkpoint_path, ema_name)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    save_file(weights, tmp, metadata={"format": "pt", "source": os.path.basename(checkpoint_path), "ema": ema_name})
    os.replace(tmp, out_path)
    os.chmod(out_path, 0o644)
    manifest = {
        "file": os.path.basename(out_path),
        "sha256": sha256_of(out_path),
        "size_bytes": os.path.getsize(out_path),
        "num_parameters": int(sum(v.numel() for v in weights.values())),
        "config": "fastgen/configs/experiments/FashionMNIST/config_sft_teacher.py",
        "network": "ema (power EMA, gamma 6.94) of the SFT student",
        "iterations": iteration,
        "command": command,
        **(extra or {}),
    }
    write_manifest(out_path, manifest)
    return manifest


def write_manifest(weights_path: str, manifest: dict[str, Any]) -> None:
    path = manifest_path(weights_path)
    with open(path + ".tmp", "w") as file:
        json.dump(manifest, file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(path + ".tmp", path)


def load_teacher_net(weights_path: str | None = None, net_config: Any = None, verify: bool = True):
    """The teacher EDMPrecond in eval mode (frozen), from the shipped (or given) safetensors file."""
    from safetensors.torch import load_file

    from fastgen.configs.experiments.FashionMNIST._common import fashion_mnist_net
    from fastgen.utils import instantiate

    weights_path = weights_path or shipped_teacher_path()
    if verify:
        verify_teacher(weights_path)
    net = instantiate(net_config if net_config is not None else fashion_mnist_net())
    result = net.load_state_dict(load_file(weights_path, device="cpu"), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{weights_path} does not match the demo network: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return net.eval().requires_grad_(False)


def measure_teacher_fid(weights_path: str, num_samples: int, nfe: int = 35, seed: int = 0) -> dict[str, Any]:
    """The demo's teacher FID protocol (fastgen.demo.evaluate) on an exported teacher."""
    from fastgen.demo.evaluate import teacher_sampler, timed_fid
    from fastgen.metrics import load_feature_extractor, load_stats
    from fastgen.metrics.feature_net import reference_stats_path

    feature_net = load_feature_extractor("fmnist")
    result = timed_fid(f"teacher ({nfe} NFE)", teacher_sampler(load_teacher_net(weights_path), nfe), feature_net,
                       load_stats(str(reference_stats_path("train"))), num_samples, 250, (1, 32, 32), seed)
    return {f"fid_{nfe}nfe": result["fid"], "fid_num_samples": num_samples, "fid_feature_net": feature_net.name,
            "fid_feature_net_sha256": feature_net.weights_sha256}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the EMA weights of a teacher training checkpoint as the "
                                                 "demo's safetensors teacher plus its JSON manifest.")
    parser.add_argument("--checkpoint", required=True, help="fastgen checkpoint (.pth) of the SFT teacher run")
    parser.add_argument("--out", default=shipped_teacher_path(), help="output .safetensors (default: the shipped path)")
    parser.add_argument("--ema_name", default="ema", help="network of the checkpoint to export (default ema)")
    parser.add_argument("--command", default="", help="the exact command that trained the checkpoint (recorded)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra manifest entries (numbers are parsed as JSON when possible)")
    parser.add_argument("--measure_fid", type=int, default=0, metavar="N",
                        help="also measure the exported teacher's FID (N samples, 35-NFE Heun, seed 0, the demo's "
                             "protocol) and record it as fid_35nfe (0: skip)")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    manifest = export_teacher(args.checkpoint, args.out, args.ema_name, args.command, extra)
    if args.measure_fid > 0:
        manifest.update(measure_teacher_fid(args.out, args.measure_fid))
        write_manifest(args.out, manifest)
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
