"""Plumbing the inference scripts share (scripts/inference/image_model_inference.py, video_model_inference.py):
prompts from --prompt / --prompts, --seeds lists, the student (or teacher) rebuilt from config + checkpoint, and the
text-conditioned sampler (few-step student sampler, or the network's own teacher sampling for SFT configs), whose
t_list, CFG choice and CFG negative the `--causal` streaming path (fastgen/inference_causal.py) shares."""

from __future__ import annotations

import argparse
import os
import re


def load_network(config, ckpt_path: str, net_key: str):
    """The config's model.net with weights from a fastgen checkpoint (network `net_key`) or a state-dict file;
    LoRA-aware (fastgen.export.student). Without a path, a diffusers network with load_pretrained keeps its hub
    weights."""
    from fastgen.export.student import build_student, checkpoint_network_state

    if not ckpt_path and getattr(config.model.net, "load_pretrained", False):
        return build_student(config, None), f"pretrained weights of {config.model.net.get('model_id')}"
    state, source = checkpoint_network_state(ckpt_path, net_key)
    return build_student(config, state, ckpt_path), source


def read_prompts(args: argparse.Namespace) -> list[str] | None:
    """Prompts from --prompt / --prompts (one per line, blank lines skipped); None when neither is given."""
    from fastgen.cli import UsageError

    if args.prompt is not None and args.prompts is not None:
        raise UsageError("give either --prompt or --prompts, not both")
    if args.prompt is not None:
        if not args.prompt.strip():
            raise UsageError("--prompt is empty")
        return [args.prompt]
    if args.prompts is None:
        return None
    if not os.path.isfile(args.prompts):
        raise UsageError(f"--prompts {args.prompts} does not exist (a text file with one prompt per line)")
    with open(args.prompts) as file:
        prompts = [line.strip() for line in file if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts {args.prompts} holds no prompt (a text file with one prompt per line)")
    return prompts


def parse_seeds(text: str | None, seed: int, count: int) -> list[int]:
    """'0,5,7' / '0-3' (inclusive) / mixes; None -> seed, seed+1, ..., seed+count-1."""
    from fastgen.cli import UsageError

    if text is None:
        return [seed + k for k in range(count)]
    seeds = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise UsageError(f"--seeds {text!r}: expected non-negative integers or ranges like 0-3, comma-separated")
        seeds += list(range(int(match.group(1)), int(match.group(2) or match.group(1)) + 1))
    return seeds


def student_t_list(config, net, steps: int):
    """The few-step student's float64 t_list for `steps` steps: the config's sample_t_cfg.t_list when it has that
    many, else the network schedule's grid (the plain sampler and `--causal` streaming share it)."""
    import torch

    t_list = config.model.sample_t_cfg.t_list
    if t_list is None or len(t_list) != steps + 1:
        t_list = net.noise_scheduler.get_t_list(steps)
    return torch.as_tensor(list(t_list), dtype=torch.float64)


def empty_prompt_negative(net, condition, batch: int, device):
    """CFG's negative: the empty prompt; the other condition parts (an I2V image, a V2V control video) stay, as the
    pipelines' CFG keeps them."""
    neg = net.encode_text([""] * batch, device=device)
    return {**condition, **neg} if isinstance(condition, dict) else neg


def sampler_choice(config, sampler_type: str, guidance_scale: float | None) -> tuple[str, float | None]:
    """(sampler type, CFG scale): "auto" is "teacher" for SFT configs (CausalSFTModel too: the trained model itself,
    sampled with many steps) and "student" otherwise; the scale is --guidance_scale, else for teacher sampling the
    config's model.guidance_scale (what an SFT model samples with), else none (a distilled student needs none)."""
    if sampler_type == "auto":
        sampler_type = "teacher" if str(config.model_class.get("_target_", "")).endswith("SFTModel") else "student"
    if guidance_scale is None and sampler_type == "teacher":
        guidance_scale = config.model.guidance_scale
    return sampler_type, guidance_scale


def make_text_sampler(config, net, sampler_type: str, num_steps: int | None, guidance_scale: float | None):
    """(noise, prompt embeddings) -> latents for a text-to-image network, and a description of the sampler."""
    import torch

    from fastgen.cli import UsageError
    from fastgen.networks.samplers import guided_x0_fn, student_sample

    sampler_type, scale = sampler_choice(config, sampler_type, guidance_scale)
    if sampler_type in ("heun", "euler"):
        raise UsageError(f"{type(net).__name__} samples teacher-style with the scheduler it ships with: use "
                         "--sampler_type auto (SFT configs) or student")
    steps = int(num_steps if num_steps is not None else config.model.student_sample_steps)
    if steps < 1:
        raise ValueError(f"--num_steps must be >= 1; got {steps}")
    if sampler_type == "teacher":
        @torch.no_grad()
        def sample(noise, condition, generator=None):
            return net.sample(noise, condition=condition, guidance_scale=scale, num_steps=steps)

        return sample, f"the model's scheduler, {steps} steps" + (f", CFG {scale}" if scale is not None else "")
    t_list = student_t_list(config, net, steps)

    @torch.no_grad()
    def sample(noise, condition, generator=None):
        neg = None if guidance_scale is None else empty_prompt_negative(net, condition, noise.shape[0], noise.device)
        x0_fn = guided_x0_fn(net, condition, neg, guidance_scale)
        return student_sample(x0_fn, noise, t_list.to(noise.device), net.noise_scheduler,
                              sample_type=config.model.student_sample_type, generator=generator)

    cfg = f", CFG {guidance_scale}" if guidance_scale is not None else ""
    return sample, f"student sampler, {steps} step(s) ({config.model.student_sample_type}){cfg}"


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit] or "prompt"
