"""FID of every checkpoint of a run that is not yet in its fid.json.

    python scripts/fid/compute_fid_from_ckpts.py --config=PATH [--feature_net fmnist|inception]
        [--inception_weights FILE] [--ref FILE] [--batch_size 250] [--seed 0] [--network NAME] [--output FILE]
        - overrides...
    torchrun --nproc_per_node=8 scripts/fid/compute_fid_from_ckpts.py --config=PATH ... - trainer.ddp=True

For each `{save_dir}/{iteration:07d}.pth` with eval.min_ckpt <= iteration <= eval.max_ckpt: load it
(weights_only), take `--network` (default: the first EMA copy if the checkpoint holds one, else `net`), generate
eval.num_samples images with the model's few-step `generator_fn` (model.student_sample_steps; random one-hot labels
when the network is class-conditional), and compute FID against the reference statistics. Sample i uses noise (and label) from a
generator seeded with seed + i, so each image does not depend on the batch size or the number of ranks.

Results merge into `{run_dir}/fid.json` (`fid_{network}.json` with --network) = {"ckpt_num": [...], "fid": [...],
"num_samples", "ref_sha256", "feature_net", "feature_net_sha256", "seed_range", "student_sample_steps"}, rewritten
atomically after each checkpoint. A fid.json written under another protocol (reference, feature weights, sample count, seeds, steps) is
refused: its numbers are not comparable; pass --output to write elsewhere.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.nn.functional as F
from loguru import logger

PROTOCOL_KEYS = ("num_samples", "ref_sha256", "feature_net", "feature_net_sha256", "seed_range",
                 "student_sample_steps")
USAGE = ("python scripts/fid/compute_fid_from_ckpts.py --config=PATH [--feature_net fmnist|inception] "
         "[--inception_weights FILE] [--ref FILE] - overrides...")


def build_parser():
    from fastgen.cli import build_parser as base_parser

    parser = base_parser(description="FID of a run's checkpoints")
    parser.usage = USAGE
    parser.add_argument("--feature_net", choices=("fmnist", "inception"), default="fmnist")
    parser.add_argument("--inception_weights", default=None, help="default: $FASTGEN_INCEPTION_WEIGHTS")
    parser.add_argument("--ref", default=None, help="reference statistics .npz (fmnist default: shipped train split)")
    parser.add_argument("--batch_size", type=int, default=250, help="images generated per forward")
    parser.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    parser.add_argument("--network", default=None,
                        help="network of the checkpoints to evaluate, e.g. net or ema (default: the first EMA copy, "
                             "else net); compare an EMA with the raw weights without retraining")
    parser.add_argument("--output", default=None,
                        help="results file (default: {run_dir}/fid.json; {run_dir}/fid_NETWORK.json with --network)")
    return parser


# --- fid.json ---------------------------------------------------------------------------------------------------------
def read_results(path: str, protocol: dict) -> dict:
    """Existing results for this protocol (empty lists when the file does not exist)."""
    if not os.path.isfile(path):
        return {"ckpt_num": [], "fid": [], **protocol}
    with open(path) as file:
        try:
            results = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); move it away to recompute") from error
    for key in PROTOCOL_KEYS:
        if key in results and results[key] != protocol[key]:
            raise ValueError(f"{path} was computed with {key}={results[key]!r} but this run uses {protocol[key]!r}; "
                             "the numbers would not be comparable: pass --output NEW_FILE (or move the old file)")
    results.setdefault("ckpt_num", [])
    results.setdefault("fid", [])
    results.update(protocol)
    return results


def merge_result(results: dict, ckpt_num: int, fid: float) -> dict:
    """Insert/replace one checkpoint's FID, keeping ckpt_num sorted."""
    pairs = dict(zip(results["ckpt_num"], results["fid"]))
    pairs[int(ckpt_num)] = float(fid)
    results["ckpt_num"] = sorted(pairs)
    results["fid"] = [pairs[k] for k in results["ckpt_num"]]
    return results


def write_json_atomic(path: str, data: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    with open(tmp, "w") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def pending_checkpoints(save_dir: str, min_ckpt: int, max_ckpt: int, done: list[int]) -> list[tuple[int, str]]:
    from fastgen.utils.checkpointer import Checkpointer

    done_set = set(done)
    return [(it, path) for it, path in Checkpointer(save_dir).list_checkpoints()
            if min_ckpt <= it <= max_ckpt and it not in done_set]


# --- generation -------------------------------------------------------------------------------------------------------
def seeded_inputs(start: int, count: int, seed: int, shape: list[int], label_dim: int
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Noise [count, *shape] and one-hot labels [count, label_dim] (None if unconditional): sample i from a CPU
    generator seeded with seed + i."""
    noises, labels = [], []
    for index in range(start, start + count):
        generator = torch.Generator().manual_seed(seed + index)
        noises.append(torch.randn(shape, generator=generator))
        if label_dim > 0:
            labels.append(int(torch.randint(label_dim, (1,), generator=generator)))
    noise = torch.stack(noises)
    condition = F.one_hot(torch.tensor(labels), label_dim).float() if label_dim > 0 else None
    return noise, condition


def make_generate_fn(model, net, seed: int, student_sample_steps: int):
    """generate_fn(start, count) -> images of samples [start, start + count) on the model's device."""
    shape = list(model.config.input_shape)
    label_dim = int(getattr(net, "label_dim", 0) or 0)

    def generate(start: int, count: int) -> torch.Tensor:
        noise, condition = seeded_inputs(start, count, seed, shape, label_dim)
        noise = noise.to(model.device, model.precision)
        if condition is not None:
            condition = condition.to(model.device, model.precision)
        generator = torch.Generator(model.device).manual_seed(seed + start)  # re-noising of multi-step "sde"
        return model.generator_fn(net, noise, condition=condition, student_sample_steps=student_sample_steps,
                                  generator=generator)

    return generate


def load_inference_weights(model, state: dict, path: str, network: str | None = None) -> str:
    """Load the checkpoint's `network` (default: its first EMA copy, else 'net') into model.net; returns the name."""
    from fastgen.utils.checkpointer import CheckpointError, load_module_state

    saved = state["model"]
    if network is not None:
        if network not in saved:
            raise CheckpointError(f"{path} has no network {network!r} (it holds {sorted(saved)}); pick one with "
                                  "--network")
        load_module_state(model.net, saved[network], network, strict=True)
        return network
    name = next((n for n in getattr(model, "ema_names", []) if n in saved), None)
    name = name or next((n for n in sorted(saved) if n.startswith("ema")), None) or "net"
    if name not in saved:
        raise CheckpointError(f"{path} holds no 'net' or EMA weights (it holds {sorted(saved)})")
    load_module_state(model.net, saved[name], name, strict=True)
    return name


def main(argv: list[str] | None = None) -> int:
    from fastgen.cli import UsageError, check_image_config, parse_args, setup
    from fastgen.metrics import compute_fid, load_feature_extractor, load_stats
    from fastgen.metrics.fid import check_compatible
    from fastgen.utils import instantiate
    from fastgen.utils.checkpointer import Checkpointer, CheckpointError
    from fastgen.utils.logging import current_rank

    args = parse_args(argv, build_parser())
    if args.feature_net == "inception" and not args.ref:
        raise UsageError("--ref FILE is required with --feature_net inception (compute it with "
                         "`python scripts/fid/fid.py ref ...`)")
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be positive; got {args.batch_size}")
    config = setup(args, evaluation=True)
    check_image_config(config, "compute_fid_from_ckpts.py")
    run_dir = config.log_config.save_path
    output = args.output or os.path.join(run_dir, f"fid_{args.network}.json" if args.network else "fid.json")
    steps = int(config.model.student_sample_steps)
    num_samples = int(config.eval.num_samples)

    if args.ref:
        ref_path = args.ref
    else:
        from fastgen.metrics.feature_net import reference_stats_path

        ref_path = str(reference_stats_path("train"))
    ref = load_stats(ref_path)
    config.model.pretrained_model_path = ""  # only the checkpoint's student weights matter here
    model = instantiate(config.model_class, config=config.model)
    extractor = load_feature_extractor(args.feature_net, weights=args.inception_weights, device=model.device)
    check_compatible(ref, extractor)
    protocol = {"num_samples": num_samples, "ref_sha256": ref.sha256, "feature_net": extractor.name,
                "feature_net_sha256": extractor.weights_sha256,
                "seed_range": [args.seed, args.seed + num_samples - 1], "student_sample_steps": steps}
    results = read_results(output, protocol)
    todo = pending_checkpoints(config.trainer.checkpointer.save_dir, config.eval.min_ckpt, config.eval.max_ckpt,
                               results["ckpt_num"])
    logger.info(f"{len(todo)} checkpoint(s) to evaluate in {config.trainer.checkpointer.save_dir} "
                f"({len(results['ckpt_num'])} already in {output})")
    net = model.net.to(model.device, model.precision)
    checkpointer = Checkpointer(config.trainer.checkpointer.save_dir)
    for iteration, path in todo:
        try:
            state = checkpointer.load(path)
        except (CheckpointError, OSError) as error:  # e.g. a checkpoint still being written by a live run
            logger.warning(f"skipping unreadable checkpoint {path}: {error}")
            continue
        name = load_inference_weights(model, state, path, args.network)
        generate = make_generate_fn(model, net, args.seed, steps)
        fid = compute_fid(generate, extractor, ref, num_samples=num_samples, batch_size=args.batch_size,
                          device=model.device)
        logger.info(f"checkpoint {iteration} ({name}): FID {fid:.4f} over {num_samples} samples")
        if config.eval.save_images and current_rank() == 0:
            from fastgen.utils.image_grid import save_image_grid

            grid_path = os.path.join(run_dir, config.eval.samples_dir, f"iter_{iteration:07d}.png")
            save_image_grid(generate(0, min(64, num_samples)).float().cpu(), grid_path)
        if current_rank() == 0:
            write_json_atomic(output, merge_result(results, iteration, fid))
    return 0


def main_with_cleanup(argv: list[str] | None = None) -> int:
    from fastgen.utils.distributed import clean_up

    try:
        return main(argv)
    finally:
        clean_up()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from fastgen.cli import run_cli

    sys.exit(run_cli(main_with_cleanup))
