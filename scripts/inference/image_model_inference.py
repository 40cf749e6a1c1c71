"""Sample images from a trained (or distilled) image model: individual PNGs plus a grid with one row per class
(class-conditional networks) or per prompt (text-to-image networks: --prompt / --prompts, one column per seed).

    python scripts/inference/image_model_inference.py \
        --config=fastgen/configs/experiments/FashionMNIST/config_dmd2.py \
        --ckpt_path=$FASTGEN_OUTPUT_ROOT/fastgen/fashion_mnist/<run>/dmd2/checkpoints/0001500.pth \
        --prompt_file=scripts/inference/prompts/classes.txt --num_samples_per_class=8 - model.student_sample_steps=1

The network is built from the config's `model.net` (overrides after '-' apply, Hydra grammar as in train.py) and its
weights come from `--ckpt_path`: a fastgen training checkpoint (.pth, `--net_key` picks net / ema / fake_score) or a
plain state dict (.safetensors / .pth, e.g. the shipped demo teacher). The sampler follows the method: SFT configs
sample like a teacher (Heun, `model.student_sample_steps` network evaluations), distilled students with the few-step
student sampler (`model.student_sample_steps` steps); `--sampler_type` and `--num_steps` override it.
Outputs: `<out_dir>/images/<class id>_<class name>_<k>.png` and `<out_dir>/grid.png`.

Text-to-image (diffusers-backed networks, e.g. a distilled SD1.5; LoRA students load their adapters onto the base):

    python scripts/inference/image_model_inference.py --config=CFG --ckpt_path=CKPT \
        --prompts=scripts/inference/prompts/t2i.txt --seeds=0-3 [--guidance_scale=G] [--num_steps=N]

writes `<out_dir>/images/<prompt index>_<prompt words>_s<seed>.png` and the grid, and reports images per second.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

SCRIPT_USAGE = ("python scripts/inference/image_model_inference.py --config=PATH --ckpt_path=PATH "
                "[--classes=LIST | --prompt_file=PATH | --prompt=TEXT | --prompts=FILE] [options] - key=value ...")
SAMPLER_TYPES = ("auto", "student", "heun", "euler")


def build_parser() -> argparse.ArgumentParser:
    from fastgen.cli import _Parser

    parser = _Parser(
        description="Sample a class-conditional (or unconditional) image model: writes one PNG per sample and a grid "
                    "with one row per class. Config overrides follow a '-' (Hydra grammar, as in train.py).",
        usage=SCRIPT_USAGE,
    )
    parser.add_argument("--config", required=True,
                        help="experiment config .py with create_config(); its model.net builds the network")
    parser.add_argument("--ckpt_path", default=None,
                        help="weights: a fastgen checkpoint (.pth from train.py) or a state dict (.safetensors/.pth). "
                             "Default: the config's model.pretrained_model_path (e.g. the shipped demo teacher)")
    parser.add_argument("--net_key", default="auto",
                        help="network inside a fastgen checkpoint: net, ema, fake_score, ... ('auto': the first EMA "
                             "if the checkpoint has one, else net)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated class ids or names (e.g. '0,7,Bag'); default: every class of the "
                             "network's label_dim")
    parser.add_argument("--prompt_file", default=None,
                        help="text file with one class per line ('<id> <name>', '<id>' or '<name>'; '#' comments), "
                             "e.g. scripts/inference/prompts/classes.txt")
    parser.add_argument("--prompt", default=None, help="text-to-image: one prompt")
    parser.add_argument("--prompts", default=None, help="text-to-image: a text file with one prompt per line")
    parser.add_argument("--seeds", default=None,
                        help="text-to-image: noise seeds, e.g. '0,5,7' or '0-3' (one image per prompt and seed); "
                             "default seed, seed+1, ... (--num_samples_per_class of them)")
    parser.add_argument("--num_samples_per_class", type=int, default=4,
                        help="images per class (unconditional networks: images in total; text-to-image: per "
                             "prompt when --seeds is not given); default 4")
    parser.add_argument("--num_steps", type=int, default=None,
                        help="network evaluations (heun/euler) or student steps (student); default "
                             "model.student_sample_steps of the config")
    parser.add_argument("--sampler_type", default="auto", choices=SAMPLER_TYPES,
                        help="auto: heun for SFT configs, the few-step student sampler otherwise")
    parser.add_argument("--guidance_scale", type=float, default=None,
                        help="classifier-free guidance for heun/euler and text-to-image (default: model.guidance_scale "
                             "of the config for teacher-style sampling, none for a distilled student)")
    parser.add_argument("--seed", type=int, default=0, help="sample k of class c uses noise seeded by (seed, c, k)")
    parser.add_argument("--batch_size", type=int, default=64, help="images per network call (default 64)")
    parser.add_argument("--out_dir", default=None,
                        help="output folder (default: <run folder of the config>/inference)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument("--compile", nargs="?", const="default", default=None,
                        help="torch.compile the network first (optional mode, e.g. max-autotune); the first batch "
                             "pays the compile time, so time several batches")
    parser.add_argument("--compile_backend", default="inductor",
                        help="torch.compile backend with --compile (default inductor; aot_eager: no code generation)")
    parser.add_argument("--no_individual", action="store_true", help="write only grid.png, not one PNG per sample")
    parser.add_argument("--log_level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="default INFO")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="'-' then key=value config overrides")
    return parser


def known_class_names(label_dim: int) -> list[str]:
    """Human-readable names for Fashion-MNIST-sized label sets, else 'class<i>'."""
    from fastgen.demo.evaluate import FASHION_MNIST_CLASSES

    if label_dim == len(FASHION_MNIST_CLASSES):
        return list(FASHION_MNIST_CLASSES)
    return [f"class{i}" for i in range(label_dim)]


def parse_class_entry(entry: str, names: list[str]) -> int:
    """'7', '7 Sneaker' or 'sneaker' -> 7, checked against the label set."""
    from fastgen.cli import UsageError

    entry = entry.strip()
    head = entry.split(maxsplit=1)[0] if entry else ""
    if re.fullmatch(r"\d+", head):
        index = int(head)
        if not 0 <= index < len(names):
            raise UsageError(f"class id {index} is out of range; the network has classes 0..{len(names) - 1}")
        return index
    lowered = [n.lower() for n in names]
    if entry.lower() in lowered:
        return lowered.index(entry.lower())
    raise UsageError(f"unknown class {entry!r}; expected an id 0..{len(names) - 1} or one of {', '.join(names)}")


def resolve_classes(args: argparse.Namespace, label_dim: int) -> list[int]:
    """Class ids from --classes / --prompt_file (at most one), default all; [] for an unconditional network."""
    from fastgen.cli import UsageError

    if args.classes is not None and args.prompt_file is not None:
        raise UsageError("give either --classes or --prompt_file, not both")
    if label_dim == 0:
        if args.classes is not None or args.prompt_file is not None:
            raise UsageError("this network is unconditional (label_dim=0): drop --classes / --prompt_file")
        return []
    names = known_class_names(label_dim)
    if args.prompt_file is not None:
        if not os.path.isfile(args.prompt_file):
            raise UsageError(f"--prompt_file {args.prompt_file} does not exist")
        with open(args.prompt_file) as file:
            entries = [line.split("#", 1)[0] for line in file]
        entries = [e for e in entries if e.strip()]
        if not entries:
            raise UsageError(f"--prompt_file {args.prompt_file} names no class")
        return [parse_class_entry(e, names) for e in entries]
    if args.classes is not None:
        entries = [e for e in args.classes.split(",") if e.strip()]
        if not entries:
            raise UsageError("--classes is empty")
        return [parse_class_entry(e, names) for e in entries]
    return list(range(label_dim))



def make_sampler(config, net, sampler_type: str, num_steps: int | None, guidance_scale: float | None):
    """(noise, condition) -> images, and a description of the sampler."""
    import torch

    from fastgen.networks.samplers import student_sample

    target = str(config.model_class.get("_target_", ""))
    if sampler_type == "auto":
        sampler_type = "heun" if target.endswith("SFTModel") else "student"
    steps = int(num_steps if num_steps is not None else config.model.student_sample_steps)
    if steps < 1:
        raise ValueError(f"--num_steps must be >= 1; got {steps}")
    scale = guidance_scale if guidance_scale is not None else config.model.guidance_scale
    if sampler_type == "student":
        t_list = net.noise_scheduler.get_t_list(steps, device=next(net.parameters()).device)
        sample_type = config.model.student_sample_type

        @torch.no_grad()
        def sample(noise, condition, generator=None):
            return student_sample(lambda x, t: net(x, t, condition=condition, fwd_pred_type="x0"), noise, t_list,
                                  net.noise_scheduler, sample_type=sample_type, generator=generator)

        return sample, f"student sampler, {steps} step(s) ({sample_type})"

    @torch.no_grad()
    def sample(noise, condition, generator=None):
        return net.sample(noise, condition=condition, guidance_scale=scale, num_steps=steps, sampler_type=sampler_type)

    return sample, f"{sampler_type}, {steps} network evaluations" + (f", CFG {scale}" if scale is not None else "")






def text_to_image(args: argparse.Namespace, config, net, prompts: list[str], device, out_dir: str) -> list:
    """Sample one image per (prompt, seed), prompt-major; returns the jobs and the images in [-1, 1]."""
    import torch
    from loguru import logger

    from fastgen.inference import make_text_sampler, parse_seeds, slug

    seeds = parse_seeds(args.seeds, args.seed, args.num_samples_per_class)
    sample_fn, description = make_text_sampler(config, net, args.sampler_type, args.num_steps, args.guidance_scale)
    shape = tuple(int(s) for s in config.model.input_shape)
    logger.info(f"{len(prompts)} prompt(s) x {len(seeds)} seed(s) -> {out_dir}; {description}")
    jobs = [(p, s) for p in range(len(prompts)) for s in seeds]
    images = []
    for start in range(0, len(jobs), args.batch_size):
        chunk = jobs[start:start + args.batch_size]
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for _, s in chunk])
        condition = net.encode_text([prompts[p] for p, _ in chunk], device=device)
        generator = torch.Generator(device=device).manual_seed(args.seed + start)
        latents = sample_fn(noise.to(device), condition, generator=generator)
        images.append(net.decode_latents(latents).clamp(-1, 1).float().cpu())
        logger.info(f"sampled {min(start + args.batch_size, len(jobs))}/{len(jobs)} images")
    names = [f"{p:03d}_{slug(prompts[p])}_s{s}" for p, s in jobs]
    return names, torch.cat(images), len(seeds)


def class_conditional(args: argparse.Namespace, config, net, device, out_dir: str):
    """Sample --num_samples_per_class images per class (class-major: one grid row per class); returns names, images
    in [-1, 1] and the grid's row length."""
    import torch
    from loguru import logger

    from fastgen.cli import UsageError

    label_dim = int(getattr(net, "label_dim", 0) or 0)
    if args.seeds is not None:
        raise UsageError("--seeds applies to text-to-image networks; class-conditional samples use --seed")
    if label_dim == 0 and args.guidance_scale is not None:
        raise UsageError(f"--guidance_scale needs a conditional network; {type(net).__name__} is unconditional "
                         "(label_dim=0)")
    classes = resolve_classes(args, label_dim)
    class_names = known_class_names(label_dim) if label_dim else []
    sample_fn, description = make_sampler(config, net, args.sampler_type, args.num_steps, args.guidance_scale)
    shape = tuple(int(s) for s in config.model.input_shape)
    logger.info(description)
    jobs = [(c, k) for c in (classes or [None]) for k in range(args.num_samples_per_class)]
    images = []
    for start in range(0, len(jobs), args.batch_size):
        chunk = jobs[start:start + args.batch_size]
        noise = torch.stack([
            torch.randn(shape, generator=torch.Generator().manual_seed(args.seed * 1_000_003 + (c or 0) * 10_007 + k))
            for c, k in chunk
        ]).to(device)
        condition = None
        if label_dim:
            labels = torch.tensor([c for c, _ in chunk], device=device)
            condition = torch.nn.functional.one_hot(labels, label_dim).to(torch.float32)
        generator = torch.Generator(device=device).manual_seed(args.seed + start)
        images.append(sample_fn(noise, condition, generator=generator).clamp(-1, 1).cpu())
        logger.info(f"sampled {min(start + args.batch_size, len(jobs))}/{len(jobs)} images")
    names = [("uncond" if c is None else f"{c}_{re.sub(r'[^A-Za-z0-9]+', '-', class_names[c]).strip('-')}")
             + f"_{k:03d}" for c, k in jobs]
    return names, torch.cat(images), args.num_samples_per_class


def main(argv: list[str] | None = None) -> int:
    from loguru import logger

    from fastgen.cli import UsageError, check_image_config, check_opts, resolve_config
    from fastgen.inference import load_network, read_prompts
    from fastgen.methods.model import resolve_device
    from fastgen.utils.image_grid import save_image_grid
    from fastgen.utils.logging import setup_logging

    args = build_parser().parse_args(argv)
    args.opts = check_opts(args.opts)
    setup_logging(args.log_level)
    if args.num_samples_per_class < 1 or args.batch_size < 1:
        raise UsageError("--num_samples_per_class and --batch_size must be >= 1")
    config = resolve_config(args)
    check_image_config(config, "image_model_inference.py")
    device = resolve_device(args.device)
    prompts = read_prompts(args)
    ckpt_path = args.ckpt_path or config.model.pretrained_model_path
    net, source = load_network(config, ckpt_path, args.net_key)
    from fastgen.methods.lora import LoRAView

    base = net.base if isinstance(net, LoRAView) else net  # a LoRA student's adapters live inside its base network
    base.to(device)
    if getattr(base, "encoders", None) is not None:
        base.encoders.to(device)
    if args.compile:  # the 1-step / few-step path compiled (Module.compile: weights and names unchanged)
        base.compile(backend=args.compile_backend, **({} if args.compile == "default" else {"mode": args.compile}))
    text_net = callable(getattr(net, "encode_text", None))
    out_dir = args.out_dir or os.path.join(config.log_config.save_path, "inference")
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    logger.info(f"{ckpt_path or 'model_id'} ({source}) -> {out_dir}")
    tic = time.perf_counter()
    if text_net or prompts is not None:
        if not text_net:
            raise UsageError(f"--prompt / --prompts need a text-to-image network; {type(net).__name__} is not one "
                             "(class-conditional networks take --classes / --prompt_file)")
        if prompts is None:
            raise UsageError(f"{type(net).__name__} is a text-to-image network: pass --prompt TEXT or --prompts FILE")
        names, images, per_row = text_to_image(args, config, net, prompts, device, out_dir)
    else:
        names, images, per_row = class_conditional(args, config, net, device, out_dir)
    seconds = time.perf_counter() - tic
    if not args.no_individual:
        from PIL import Image

        from fastgen.utils.image_grid import make_image_grid

        for name, image in zip(names, images):
            pixels = make_image_grid(image[None], nrow=1)
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
                os.path.join(out_dir, "images", f"{name}.png"))
    grid = save_image_grid(images, os.path.join(out_dir, "grid.png"), nrow=per_row, padding=2)
    logger.info(f"wrote {len(names)} images in {seconds:.1f} s ({len(names) / max(seconds, 1e-9):.2f} images/s) "
                f"and {grid}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from fastgen.cli import run_cli

    sys.exit(run_cli(main))
