"""Command-line set-up shared by train.py, the demo and the inference/FID scripts.

It sits above `fastgen.configs` (it loads configs), so `fastgen.utils` never has to import upwards.

`parse_args` reads `--config=PATH [--log_level LEVEL] [--dryrun] - key=value ...`; `setup(args)` loads the config,
applies the overrides, places the run under `$FASTGEN_OUTPUT_ROOT/{project}/{group}/{name}/`, derives gradient
accumulation from `trainer.batch_size_global`, and (unless --dryrun) loads credentials, starts the process group
and writes `config.yaml`. `run_cli(main)` turns usage errors into one `error: ...` line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from loguru import logger

from fastgen.utils.logging import LOG_LEVELS, current_rank, setup_logging

USAGE = "python train.py --config=PATH [--log_level LEVEL] [--dryrun] [--smoke] - key=value ..."


class UsageError(ValueError):
    """Bad command line: one line on stderr and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line instead of argparse's usage block
        raise UsageError(f"{message} (usage: {self.usage or USAGE})")


def build_parser(description: str = "fastgen", usage: str = USAGE) -> argparse.ArgumentParser:
    parser = _Parser(description=description, usage=usage)
    parser.add_argument("--config", required=True,
                        help="a config .py file with create_config(), or a run's saved config.yaml")
    parser.add_argument("--log_level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="default INFO")
    parser.add_argument("--dryrun", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--smoke", action="store_true",
                        help="2 iterations on CPU with tiny networks and synthetic data (see fastgen/smoke.py)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="'-' then key=value overrides (Hydra grammar)")
    return parser


def check_opts(opts: Sequence[str]) -> list[str]:
    """The '-' separator and the overrides after it; overrides without the separator are a usage error."""
    opts = list(opts)
    if opts and opts[0] != "-":
        raise UsageError(f"overrides must follow a '-' separator: ... - {' '.join(opts)}")
    return opts


def _pull_trailing_flags(args: argparse.Namespace) -> None:
    """Accept --dryrun / --log_level written after the overrides too (an override never starts with '--')."""
    rest, kept = list(args.opts[1:]), []
    while rest:
        item = rest.pop(0)
        if item in ("--dryrun", "--smoke"):
            setattr(args, item[2:], True)
        elif item.startswith("--log_level="):
            args.log_level = item.split("=", 1)[1].upper()
        elif item == "--log_level" and rest:
            args.log_level = rest.pop(0).upper()
        elif item.startswith("--"):
            raise UsageError(f"unknown flag {item} after the '-' separator (usage: {USAGE})")
        else:
            kept.append(item)
    if args.log_level not in LOG_LEVELS:
        raise UsageError(f"--log_level {args.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    args.opts = ["-", *kept] if args.opts else []


def parse_args(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None):
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    args.opts = check_opts(args.opts)
    _pull_trailing_flags(args)
    return args


def split_global_batch(batch_size_global: int, batch_size: int, world_size: int) -> tuple[int, int]:
    """Per-rank micro-batch and accumulation rounds with micro_batch * world_size * rounds == batch_size_global.

    The configured per-rank `batch_size` is an upper bound (what fits in memory). When the global batch is not a
    multiple of batch_size * world_size, the largest micro-batch <= batch_size that divides the per-rank share is
    used instead, so the global batch the experiment asks for is honoured exactly on any number of processes
    (e.g. the quick-start's global 64 on 8 GPUs runs 8 per GPU in one round).
    """
    for name, value in (("batch_size_global", batch_size_global), ("batch_size", batch_size),
                        ("world_size", world_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if batch_size_global % world_size:
        raise ValueError(
            f"trainer.batch_size_global={batch_size_global} is not divisible by the world size ({world_size}); "
            f"choose a multiple of {world_size}"
        )
    per_rank = batch_size_global // world_size
    micro = max(d for d in range(1, min(batch_size, per_rank) + 1) if per_rank % d == 0)
    return micro, per_rank // micro


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as e:
        raise UsageError(f"WORLD_SIZE must be an integer, got {os.environ.get('WORLD_SIZE')!r}") from e


def resolve_config(args, evaluation: bool = False):
    """Load the config file and overrides and derive the run-dependent fields (pure: builds and writes nothing)."""
    from fastgen.configs.config_utils import load_config_file, override_config_with_opts

    config = load_config_file(args.config)
    logger.debug(f"loaded {type(config).__module__}.{type(config).__name__} from {args.config}")
    config = override_config_with_opts(config, args.opts)
    logger.debug(f"applied {max(len(args.opts) - 1, 0)} override(s)")
    checkpointer = config.trainer.checkpointer
    if not os.path.isabs(checkpointer.save_dir):
        checkpointer.save_dir = os.path.join(config.log_config.save_path, checkpointer.save_dir)
    from fastgen.configs.validate import check_micro_batch, validate_config

    # bad values fail here, so --dryrun catches them; --smoke runs on CPU whatever model.device says, so it skips
    # only the GPU-presence check (setup validates the smoked config again, in full)
    validate_config(config, check_gpu=not getattr(args, "smoke", False))
    trainer, model = config.trainer, config.model
    if getattr(model, "fsdp_meta_init", False) and (
        not trainer.fsdp or evaluation or checkpointer.pretrained_ckpt_path
    ):
        model.fsdp_meta_init = False  # meta init only helps a fresh FSDP training run
    if trainer.batch_size_global is not None:
        batch_size = getattr(config.dataloader_train, "batch_size", None)
        if batch_size is None:
            raise UsageError("trainer.batch_size_global is set but dataloader_train has no batch_size")
        world = env_world_size() if (trainer.ddp or trainer.fsdp) else 1
        try:
            micro, trainer.grad_accum_rounds = split_global_batch(trainer.batch_size_global, batch_size, world)
        except ValueError as e:
            raise UsageError(str(e)) from None
        per_rank = trainer.batch_size_global // world
        check_micro_batch(micro, batch_size, per_rank, trainer.batch_size_global, world)
        if micro != batch_size:  # loud when the split wastes memory the configured batch size says is there
            log = logger.warning if micro < min(batch_size, per_rank) else logger.info
            log(f"dataloader_train.batch_size {batch_size} -> {micro} so that {micro} x {world} process(es) x "
                f"{trainer.grad_accum_rounds} round(s) = batch_size_global {trainer.batch_size_global}")
            config.dataloader_train.batch_size = micro
    return config


def check_image_config(config, script: str) -> None:
    """Image scripts (inference grids, FID) need pixel images [C, H, W] with 1 or 3 channels, or image latents of a
    diffusers-backed family (its VAE decodes them): say so before any network is built or sampled, instead of failing
    on the first batch."""
    shape = [int(s) for s in config.model.input_shape]
    target = str(getattr(config.model.net, "get", lambda *_: "")("_target_", "") or "")
    latent_images = len(shape) == 3 and target.startswith("fastgen.networks.hf.")  # its VAE decodes to pixels
    if not latent_images and (len(shape) != 3 or shape[0] not in (1, 3)):
        kind = "vectors" if len(shape) == 1 else "videos" if len(shape) == 4 else f"{shape[0]}-channel latents"
        raise UsageError(f"{script} works on pixel images [C, H, W] with 1 or 3 channels, but this config's "
                         f"model.input_shape={shape} describes {kind}; pass an image experiment's config")


def init_distributed() -> None:
    """Start the default process group from torchrun's environment (NCCL on GPUs, gloo on CPU), if launched so."""
    from fastgen.utils.distributed.launch import init_distributed as start

    start()


def setup(args, evaluation: bool = False):
    """Resolved config, with the environment prepared for a run (or printed and exit(0) under --dryrun)."""
    setup_logging(args.log_level)
    config = resolve_config(args, evaluation=evaluation)
    if getattr(args, "smoke", False):
        from fastgen.smoke import apply_smoke

        apply_smoke(config)
        from fastgen.configs.validate import validate_config

        validate_config(config)
    from fastgen.configs.config_utils import serialize_config

    if args.dryrun:
        sys.stdout.write(serialize_config(config, return_type="yaml", include_classes=False))
        sys.stdout.flush()
        raise SystemExit(0)

    from fastgen.utils.env import set_env_vars

    set_env_vars(config.trainer.checkpointer.s3_credential, config.log_config.wandb_credential)
    if config.trainer.ddp or config.trainer.fsdp:
        init_distributed()
    world = env_world_size() if (config.trainer.ddp or config.trainer.fsdp) else 1
    batch_size = getattr(config.dataloader_train, "batch_size", None)
    if batch_size is not None:
        logger.info(f"global batch size: {batch_size} x {config.trainer.grad_accum_rounds} accumulation rounds x "
                    f"{world} processes = {batch_size * config.trainer.grad_accum_rounds * world}")
    if not evaluation:
        _prepare_run_folder(config)  # before config.yaml: a refused run must not overwrite another run's record
    if current_rank() == 0:
        out_dir = config.log_config.save_path
        if evaluation:
            out_dir = os.path.join(out_dir, config.eval.samples_dir)
        path = serialize_config(config, return_type="file", path=out_dir)
        logger.info(f"resolved config saved to {path}")
    _set_backend_flags(config)
    return config


def _prepare_run_folder(config) -> None:
    """Rank 0 locks the run folder, refuses mixing runs (local checkpoints, and with use_s3 the S3 prefix), removes
    partial saves, checks writability; every rank raises the same one-line error (the other ranks must not wait for
    a rank 0 that gave up)."""
    from fastgen.utils.distributed import broadcast_object
    from fastgen.utils.run_dir import RunFolderError, prepare_run_folder

    error, failure = None, None  # (usage?, message) for every rank; the exception itself on rank 0
    if current_rank() == 0:
        checkpointer = config.trainer.checkpointer
        list_remote = (lambda: _remote_checkpoints(config)) if checkpointer.use_s3 else None
        try:
            removed = prepare_run_folder(config.log_config.save_path, checkpointer.save_dir,
                                         resume=config.trainer.resume, list_remote=list_remote)
            if removed:
                logger.info(f"removed {len(removed)} partial checkpoint(s) of an interrupted save: {', '.join(removed)}")
        except RunFolderError as e:
            error, failure = (True, str(e)), UsageError(str(e))
        except Exception as e:  # noqa: BLE001 - e.g. S3 unreachable or no credentials: every rank must stop
            error, failure = (False, str(e)), e
    error = broadcast_object(error)
    if error is not None:
        if failure is not None:
            raise failure
        raise UsageError(error[1]) if error[0] else RuntimeError(error[1])


def _remote_checkpoints(config) -> tuple[str, list[str]]:
    """(S3 prefix, checkpoint names) the run's own S3 backend lists (objects, plus local copies still to upload)."""
    from fastgen.utils.checkpointer import checkpointer_from_config

    checkpointer = checkpointer_from_config(config.trainer.checkpointer, config.trainer.checkpointer.save_dir,
                                            sharded=config.trainer.fsdp)
    names = [os.path.basename(path.rstrip("/")) for _, path in checkpointer.list_checkpoints()]
    return str(checkpointer.prefix), names


def _set_backend_flags(config) -> None:
    import torch

    cudnn = config.trainer.cudnn
    torch.backends.cudnn.deterministic = cudnn.deterministic
    torch.backends.cudnn.benchmark = cudnn.benchmark
    tf32 = config.trainer.tf32_enabled
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


def run_cli(main: Callable[[list[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)`; usage/config/bad-input errors (UsageError, ConfigError, fastgen.utils.errors.BadInputError)
    -> 'error: ...' + exit 2, other failures -> 'error: ...' + exit 1.

    The traceback is shown only with --log_level DEBUG.
    """
    from fastgen.configs.config_utils import ConfigError
    from fastgen.utils.env import redact_text
    from fastgen.utils.errors import BadInputError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    try:
        code = main(argv)
        return 0 if code is None else int(code)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except (UsageError, ConfigError, BadInputError) as e:  # bad input, wherever it is found
        _report(e, debug, redact_text)
        return 2
    except Exception as e:  # noqa: BLE001 - anything else: still one clear line
        _report(e, debug, redact_text)
        return 1


def _debug_requested(argv: Sequence[str]) -> bool:
    head = list(argv)
    for i, arg in enumerate(head):
        if arg == "--log_level=DEBUG" or arg.lower() == "--log_level=debug":
            return True
        if arg == "--log_level" and i + 1 < len(head) and head[i + 1].upper() == "DEBUG":
            return True
    return False


def _report(error: BaseException, debug: bool, redact_text) -> None:
    if debug:
        import traceback

        sys.stderr.write(redact_text("".join(traceback.format_exception(error))))
    message = " ".join(str(error).split()) or error.__class__.__name__
    sys.stderr.write(f"error: {redact_text(message)}\n")
    sys.stderr.flush()
