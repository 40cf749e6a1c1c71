"""Train a fastgen model: python train.py --config=PATH [--log_level LEVEL] [--dryrun] - key=value ..."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from fastgen.cli import parse_args, setup

    args = parse_args(argv)
    config = setup(args)  # exits 0 under --dryrun

    from fastgen.utils import instantiate
    from fastgen.utils.rng import seed_everything

    # the same seed on every rank: replicas start from identical weights, and a rerun starts where the last one did
    seed_everything(config.trainer.seed, rank=0, iteration=0)
    from fastgen.utils.distributed.fsdp import meta_init_context

    # with fsdp_meta_init, ranks other than 0 build on the meta device; FSDP fills them from rank 0's weights
    with meta_init_context(bool(config.trainer.fsdp and config.model.fsdp_meta_init)):
        model = instantiate(config.model_class, config=config.model)
    from fastgen.trainer import Trainer  # imported late: --dryrun and config errors never pay for it

    try:
        Trainer(config).run(model)
    finally:
        from fastgen.utils.distributed import clean_up
        from fastgen.utils.run_dir import release_run_lock

        release_run_lock(config.log_config.save_path)  # (also released at exit, e.g. after a crash above)
        clean_up()
    return 0


if __name__ == "__main__":
    from fastgen.cli import run_cli

    sys.exit(run_cli(main))
