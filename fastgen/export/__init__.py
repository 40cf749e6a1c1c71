"""Export a trained student as a diffusers pipeline folder (`python -m fastgen.export`, see README.md).

    python -m fastgen.export --config=CFG --ckpt=CKPT --out=DIR [--net_key auto] [- key=value ...]
    pipe = DiffusionPipeline.from_pretrained(DIR); image = pipe(prompt, **json.load(open(DIR/fastgen_export.json))["call_kwargs"]).images[0]

The folder holds the teacher's pipeline components (encoders, VAE, tokenizers, from the config's model_id / local
folder, or the tiny random ones of a --smoke-like config), the student's denoiser in safetensors, and a scheduler
that walks the student's own time grid:
  * distilled students (1..4 steps) of the VP families (SD1.5, SDXL): `EulerDiscreteScheduler` with "trailing"
    spacing. Its Euler step in sigma_VE is exactly our deterministic student step (x0 + sigma' eps), and with that
    spacing its initial latents are noise * sigma_VE(t0), i.e. noise * sigma(t0) at the model's input: the student
    sampler's start. The timesteps are t_list * 1000 (passed explicitly when they are not the scheduler's own grid);
  * SFT students: the scheduler the model ships with (our teacher sampler equals the pipeline there), with CFG.
`fastgen_export.json` records the exact call arguments (steps or timesteps, guidance_scale) that reproduce our
sampler. A LoRA student is written as the base pipeline plus `pytorch_lora_weights.safetensors` (diffusers'
`save_lora_weights` format, with its rank / alpha metadata): `pipe.load_lora_weights(DIR)` turns the base into the
student. Everything is written to DIR.tmp and renamed at the end: a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np

from fastgen.export.student import StudentLoadError, build_student, checkpoint_network_state

EXPORT_INFO = "fastgen_export.json"
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
VP_SCHEDULES = ("sd", "sdxl")
FLOW_FAMILIES = ("flux",)
PRED_TO_DIFFUSERS = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}

__all__ = ["ExportError", "export_student", "student_scheduler", "EXPORT_INFO", "LORA_WEIGHT_NAME"]


class ExportError(ValueError):
    """Bad export input (other family, mismatching checkpoint, unsupported sampler): one line, nothing written."""


def is_sft(config: Any) -> bool:
    return str(config.model_class.get("_target_", "")).endswith("SFTModel")


def student_t_list(config: Any, net: Any) -> np.ndarray:
    """The student's time grid as FastGenModel.student_t_list builds it (float64, last entry 0)."""
    steps = int(config.model.student_sample_steps)
    t_list = config.model.sample_t_cfg.t_list
    if t_list is None:
        return net.noise_scheduler.get_t_list(steps).numpy()
    t_list = np.asarray(list(t_list), dtype=np.float64)
    if len(t_list) != steps + 1 or t_list[-1] != 0.0:
        raise ExportError(f"sample_t_cfg.t_list must have student_sample_steps+1={steps + 1} entries ending in 0; "
                          f"got {t_list.tolist()}")
    return t_list


def trailing_timesteps(num_steps: int, num_train_timesteps: int) -> list[int]:
    """The timesteps diffusers' discrete schedulers visit with timestep_spacing='trailing'."""
    grid = np.round(np.arange(num_train_timesteps, 0, -num_train_timesteps / num_steps)) - 1
    return [int(t) for t in grid]


def student_scheduler(config: Any, net: Any) -> tuple[Any, dict]:
    """(scheduler, pipeline call kwargs) that make the family's pipeline sample like our student sampler."""
    import diffusers

    family = net.adapter.family
    if is_sft(config):  # teacher-style sampling: the shipped scheduler, the config's CFG and step count
        if net.schedule_type not in VP_SCHEDULES:
            raise ExportError(f"export of SFT {type(net).__name__} models is not supported yet (their pipelines mix "
                              "CFG and distilled guidance differently); supported: SD1.5 / SDXL SFT, distilled "
                              "SD1.5 / SDXL / Flux students")
        cls_path, _ = net.adapter.components["scheduler"]
        cls = getattr(diffusers, cls_path.rsplit(".", 1)[-1])
        scale = config.model.guidance_scale
        return cls.from_config(net.scheduler_config), {
            "num_inference_steps": int(config.model.student_sample_steps),
            "guidance_scale": float(scale) if scale is not None else 1.0}
    if net.schedule_type not in VP_SCHEDULES and family not in FLOW_FAMILIES:
        raise ExportError(f"export of distilled {type(net).__name__} students is not supported yet; supported: "
                          "SD1.5, SDXL, Flux")
    steps = int(config.model.student_sample_steps)
    if steps > 1 and config.model.student_sample_type != "ode":
        raise ExportError(f"a {steps}-step student with student_sample_type={config.model.student_sample_type!r} "
                          "draws fresh noise at each step, which no stock diffusers scheduler reproduces from the "
                          "same start; export it with - model.student_sample_type=ode (or 1 step)")
    t_list = student_t_list(config, net)
    if family in FLOW_FAMILIES:
        return flow_scheduler(net, t_list)
    big = int(net.scheduler_config.get("num_train_timesteps", 1000))
    scaled = t_list[:-1] * big
    timesteps = [int(round(v)) for v in scaled]
    if np.abs(scaled - np.asarray(timesteps)).max() > 1e-6:
        raise ExportError(f"the student's t_list {t_list.tolist()} is not on the model's {big} discrete timesteps; "
                          f"set model.sample_t_cfg.t_list to multiples of 1/{big}, e.g. "
                          f"{[t / big for t in trailing_timesteps(steps, big)] + [0.0]}")
    scheduler = diffusers.EulerDiscreteScheduler.from_config(
        net.scheduler_config, timestep_spacing="trailing", interpolation_type="linear", use_karras_sigmas=False,
        final_sigmas_type="zero", timestep_type="discrete", prediction_type=PRED_TO_DIFFUSERS[net.net_pred_type])
    kwargs: dict[str, Any] = {"guidance_scale": 0.0}  # a distilled student samples without CFG
    if timesteps == trailing_timesteps(steps, big):
        kwargs["num_inference_steps"] = steps
    else:
        kwargs["timesteps"] = timesteps
    return scheduler, kwargs


def flow_scheduler(net: Any, t_list: np.ndarray) -> tuple[Any, dict]:
    """Flux: FlowMatchEulerDiscreteScheduler without shift, walking sigmas = t_list (its Euler step x + (s' - s) v
    is exactly the deterministic student step on the rf schedule). The pipeline starts from unscaled noise, i.e.
    at sigma 1, so the student's grid must start at t = 1."""
    import diffusers

    if float(t_list[0]) != 1.0:
        raise ExportError(f"the Flux pipeline starts from pure noise (sigma 1) but the student's t_list starts at "
                          f"{float(t_list[0])}; train and export with model.sample_t_cfg.t_list starting at 1.0, "
                          f"e.g. {[1.0] + [float(t) for t in t_list[1:]]}")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(
        net.scheduler_config, shift=1.0, use_dynamic_shifting=False, shift_terminal=None, stochastic_sampling=False,
        invert_sigmas=False, use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False)
    sigmas = [float(t) for t in t_list[:-1]]
    # guidance_scale is Flux's distilled-guidance input (the network's own setting), not CFG
    return scheduler, {"sigmas": sigmas, "num_inference_steps": len(sigmas),
                       "guidance_scale": float(net.options["guidance_scale"])}


def _check_family(net: Any) -> None:
    base = getattr(net, "base", net)
    if not callable(getattr(base, "pipeline", None)) or getattr(base, "adapter", None) is None:
        raise ExportError(f"model.net builds {type(base).__name__}, which has no diffusers pipeline; export supports "
                          "the diffusers-backed families (fastgen.networks.hf: SD15, SDXL, Flux, QwenImage)")


def _clean_copy(config: Any, view: Any) -> Any:
    """A network of the config without adapters, holding the LoRA base's weights and sharing its encoders."""
    from fastgen.methods.lora import base_state_dict
    from fastgen.utils import instantiate

    clean = instantiate(config.model.net)
    clean.load_state_dict(base_state_dict(view.base), strict=True)
    clean.encoders = view.base.encoders
    return clean.eval()


def lora_metadata(view: Any, prefix: str) -> tuple[dict, dict]:
    """(diffusers-named LoRA tensors of the denoiser, the LoraConfig kwargs diffusers reads back as metadata)."""
    from fastgen.methods.lora import adapter_weights, lora_scale_settings

    weights = {k: v.detach().contiguous() for k, v in adapter_weights(view, prefix_strip=prefix).items()}
    rank, alpha = lora_scale_settings(view)
    targets = sorted({k.rsplit(".lora_", 1)[0] for k in weights})
    return weights, {"r": rank, "lora_alpha": alpha, "target_modules": targets, "lora_dropout": 0.0}


def export_student(config: Any, ckpt_path: str, out_dir: str, net_key: str = "auto") -> dict:
    """Write the student of (config, checkpoint) as a diffusers pipeline folder `out_dir`; returns the info."""
    from loguru import logger

    from fastgen.methods.lora import LoRAView

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise ExportError(f"--out {out_dir} already exists; choose a new folder (nothing is overwritten)")
    try:
        state, source = checkpoint_network_state(ckpt_path, net_key)
        student = build_student(config, state, ckpt_path)
    except StudentLoadError as error:
        raise ExportError(str(error)) from None
    _check_family(student)
    is_lora = isinstance(student, LoRAView)
    net = _clean_copy(config, student) if is_lora else student
    scheduler, call_kwargs = student_scheduler(config, net)
    tmp_dir = out_dir + ".tmp"
    if os.path.exists(tmp_dir):
        logger.warning(f"removing {tmp_dir} left by an interrupted export")
        shutil.rmtree(tmp_dir)
    try:
        pipe = net.pipeline(with_denoiser=True)
        pipe.register_modules(scheduler=scheduler)
        pipe.save_pretrained(tmp_dir, safe_serialization=True)
        denoiser = net.adapter.denoiser_name
        if is_lora:
            weights, metadata = lora_metadata(student, prefix="denoiser.")
            type(pipe).save_lora_weights(tmp_dir, weight_name=LORA_WEIGHT_NAME, **{
                f"{denoiser}_lora_layers": weights, f"{denoiser}_lora_adapter_metadata": metadata})
        info = {"pipeline": type(pipe).__name__, "network": type(net).__name__, "checkpoint": os.path.abspath(ckpt_path),
                "weights": source, "lora": LORA_WEIGHT_NAME if is_lora else None,
                "student_sample_steps": int(config.model.student_sample_steps), "call_kwargs": call_kwargs}
        with open(os.path.join(tmp_dir, EXPORT_INFO), "w") as file:
            json.dump(info, file, indent=2)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return info
