"""python -m fastgen.export --config=CFG --ckpt=CKPT --out=DIR [--net_key auto] [- key=value ...]"""

from __future__ import annotations

import argparse
import sys

USAGE = "python -m fastgen.export --config=PATH --ckpt=PATH --out=DIR [--net_key KEY] [- key=value ...]"


def build_parser() -> argparse.ArgumentParser:
    from fastgen.cli import _Parser

    parser = _Parser(description="Write a trained student as a diffusers pipeline folder that "
                                 "DiffusionPipeline.from_pretrained loads (a LoRA student: base pipeline + LoRA file).",
                     usage=USAGE)
    parser.add_argument("--config", required=True, help="the training run's config .py (overrides after '-')")
    parser.add_argument("--ckpt", required=True, help="a fastgen checkpoint (.pth) or the student's state dict")
    parser.add_argument("--out", required=True, help="new output folder (must not exist)")
    parser.add_argument("--net_key", default="auto", help="network of the checkpoint: auto (first EMA, else net), "
                                                          "net, ema, ...")
    parser.add_argument("--log_level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="'-' then key=value config overrides")
    return parser


def main(argv: list[str] | None = None) -> int:
    from loguru import logger

    from fastgen.cli import UsageError, check_opts, resolve_config
    from fastgen.export import ExportError, export_student
    from fastgen.utils.logging import setup_logging

    args = build_parser().parse_args(argv)
    args.opts = check_opts(args.opts)
    setup_logging(args.log_level)
    config = resolve_config(args)
    try:
        info = export_student(config, args.ckpt, args.out, args.net_key)
    except ExportError as error:
        raise UsageError(str(error)) from None
    logger.info(f"exported {info['weights']} of {args.ckpt} as a {info['pipeline']} folder: {args.out}")
    logger.info(f"load it with DiffusionPipeline.from_pretrained({args.out!r})"
                + (f" + pipe.load_lora_weights({args.out!r})" if info["lora"] else "")
                + f" and call it with {info['call_kwargs']}")
    return 0


if __name__ == "__main__":
    from fastgen.cli import run_cli

    sys.exit(run_cli(main))
