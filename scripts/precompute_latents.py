"""Encode image or video + caption WebDataset shards into latent + text-embedding shards with a config's VAE and
text encoders.

    python scripts/precompute_latents.py --config=fastgen/configs/experiments/.../config_x.py \
        --input WDS:/data/images --output /data/image_latents --img_size 512 [--image_key jpg] [--batch_size 16]
    python scripts/precompute_latents.py --config=<a Wan config> --input WDS:/data/videos \
        --output /data/video_latents --sequence_length 81 --img_size 832 480 [--video_key mp4] [--decoder_type full]
    torchrun --nproc_per_node 8 scripts/precompute_latents.py ...      # shards split over the ranks

The network is the config's `model.net` built with its encoders (`--smoke`: the class's tiny random components,
for tests). `--sequence_length` switches to video: clips decoded as `VideoLoaderConfig` does (frames must be
(T-1) x the VAE's temporal factor + 1, W and H multiples of its spatial factor x the patch size). Output shards keep
the input names; a rerun skips the finished ones. Train from them with `ImageLatentLoaderConfig` /
`VideoLatentLoaderConfig` (`datatags=["WDS:<output>"]`).
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
                         "with; use a config whose network has them (SD15, SDXL, Flux, QwenImage, Wan)")
    return net.to(device).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment config whose model.net encodes")
    parser.add_argument("--input", required=True, nargs="+", help='"WDS:<folder or s3://bucket/prefix>" datatags')
    parser.add_argument("--output", required=True, help="folder or s3://bucket/prefix for the output shards")
    parser.add_argument("--img_size", type=int, nargs="+", default=[512], help="side, or W H")
    parser.add_argument("--image_key", default="jpg")
    parser.add_argument("--video_key", default="mp4")
    parser.add_argument("--sequence_length", type=int, default=None, help="frames per clip: encode videos")
    parser.add_argument("--decoder_type", choices=("segment", "full"), default="segment",
                        help="video frames: a window seeded by (--seed, sample key), or spread over the clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--caption_key", default="txt")
    parser.add_argument("--batch_size", type=int, default=None, help="default: 16 images or 1 video")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny random encoders of the same family (tests)")
    args = parser.parse_args(argv)

    import torch

    from fastgen.datasets.wds.precompute import check_video_input, precompute
    from fastgen.datasets.wds.shards import list_shards

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    img_size = args.img_size[0] if len(args.img_size) == 1 else tuple(args.img_size)
    video = args.sequence_length is not None
    try:
        shards = list_shards(args.input)
        net = build_net(args.config, args.smoke, device)
        if video:
            check_video_input(net, args.sequence_length, img_size)
    except (ValueError, FileNotFoundError) as error:  # VideoError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    media = {"media_key": args.video_key, "sequence_length": args.sequence_length, "decoder_type": args.decoder_type,
             "seed": args.seed} if video else {"media_key": args.image_key}
    batch_size = args.batch_size or (1 if video else 16)
    totals = precompute(net, shards, args.output, rank=rank, world_size=world_size, img_size=img_size,
                        caption_key=args.caption_key, batch_size=batch_size, show_progress=rank == 0, **media)
    print(f"rank {rank}: {totals['shards_done']} shards encoded ({totals['written']} samples, {totals['skipped']} "
          f"skipped), {totals['shards_skipped']} already done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
