"""Encode image + caption WebDataset shards into latent + text-embedding shards with a config's VAE and text encoders.

    python scripts/precompute_latents.py --config=fastgen/configs/experiments/.../config_x.py \
        --input WDS:/data/images --output /data/image_latents --img_size 512 [--image_key jpg] [--batch_size 16]
    torchrun --nproc_per_node 8 scripts/precompute_latents.py ...      # shards split over the ranks

The network is the config's `model.net` built with its encoders (`--smoke`: the class's tiny random components,
for tests). Output shards keep the input names; a rerun skips the finished ones. Train from them with
`ImageLatentLoaderConfig` (`datatags=["WDS:<output>"]`). Images only: no video VAE ships in this tree yet.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


def build_net(config_path: str, smoke: bool, device: str):
    from fastgen.configs.config_utils import import_config_from_python_file
    from fastgen.utils import instantiate
    from fastgen.utils.lazy import locate

    net_cfg = import_config_from_python_file(config_path).model.net
    overrides = {"enable_preprocessors": True}
    if smoke:
        overrides.update(locate(net_cfg["_target_"]).smoke_overrides(dict(net_cfg)))
    net = instantiate(net_cfg, **overrides)
    if not hasattr(net, "encode_images") or not hasattr(net, "encode_text"):
        raise ValueError(f"{type(net).__name__} (model.net of {config_path}) has no VAE / text encoders to precompute "
                         "with; use a config whose network has them (SD15, SDXL, Flux, QwenImage)")
    return net.to(device).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment config whose model.net encodes")
    parser.add_argument("--input", required=True, nargs="+", help='"WDS:<folder or s3://bucket/prefix>" datatags')
    parser.add_argument("--output", required=True, help="folder or s3://bucket/prefix for the output shards")
    parser.add_argument("--img_size", type=int, nargs="+", default=[512], help="side, or W H")
    parser.add_argument("--image_key", default="jpg")
    parser.add_argument("--caption_key", default="txt")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny random encoders of the same family (tests)")
    args = parser.parse_args(argv)

    import torch

    from fastgen.datasets.wds.precompute import precompute
    from fastgen.datasets.wds.shards import list_shards

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        shards = list_shards(args.input)
        net = build_net(args.config, args.smoke, device)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    img_size = args.img_size[0] if len(args.img_size) == 1 else tuple(args.img_size)
    totals = precompute(net, shards, args.output, rank=rank, world_size=world_size, img_size=img_size,
                        image_key=args.image_key, caption_key=args.caption_key, batch_size=args.batch_size,
                        show_progress=rank == 0)
    print(f"rank {rank}: {totals['shards_done']} shards encoded ({totals['written']} samples, {totals['skipped']} "
          f"skipped), {totals['shards_skipped']} already done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
