"""python -m fastgen.export: the exported diffusers folder reproduces our student's samples (full and LoRA students,
1 and 4 steps, the scheduler's own grid and explicit timesteps); bad input is one line, exit 2, nothing written."""

import json
import os

import diffusers
import pytest
import torch
from _tiny_sd15 import tiny_config, write_config
from safetensors.torch import save_file

from fastgen.cli import run_cli
from fastgen.configs.net import Toy_MLP_Config
from fastgen.export import EXPORT_INFO, LORA_WEIGHT_NAME, export_student
from fastgen.export.__main__ import main as export_main
from fastgen.export.student import build_student, checkpoint_network_state
from fastgen.networks.samplers import student_sample
from fastgen.utils import instantiate

PROMPTS = ["a red cat", "two dogs"]


def save_ckpt(path, networks, iteration=1):
    torch.save({"model": networks, "iteration": iteration}, path)
    return str(path)


def perturbed_student(config, seed=0, scale=0.02):
    """The tiny SD1.5 net with weights moved off their init (so a student differs from its teacher)."""
    torch.manual_seed(seed)
    net = instantiate(config.model.net)
    with torch.no_grad():
        for p in net.denoiser.parameters():
            p.add_(torch.randn_like(p) * scale)
    return net


def our_sample(config, student, pipe, seed, t_list):
    """Our student sampler (FastGenModel.generator_fn's loop) on the exported text encoder's prompt embeddings,
    from the noise the pipeline draws for `seed`."""
    embeds, _ = pipe.encode_prompt(PROMPTS, "cpu", 1, False)
    noise = torch.randn((len(PROMPTS), 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    t_list = torch.tensor(t_list, dtype=torch.float64)
    with torch.no_grad():
        return student_sample(lambda x, t: student(x, t, condition={"prompt_embeds": embeds}, fwd_pred_type="x0"),
                              noise, t_list, student.noise_scheduler, sample_type=config.model.student_sample_type)


def pipeline_sample(pipe, seed, call_kwargs, output_type="latent"):
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt=PROMPTS, height=16, width=16, generator=torch.Generator().manual_seed(seed),
                output_type=output_type, **call_kwargs).images


@pytest.mark.parametrize("steps, t_list, expected_call", [
    (1, None, {"guidance_scale": 0.0, "num_inference_steps": 1}),
    (4, [0.999, 0.749, 0.499, 0.249, 0.0], {"guidance_scale": 0.0, "num_inference_steps": 4}),
    (2, [0.999, 0.6, 0.0], {"guidance_scale": 0.0, "timesteps": [999, 600]}),
])
def test_exported_pipeline_reproduces_the_student(tmp_path, one_thread, steps, t_list, expected_call):
    config = tiny_config("dmd2", tmp_path)
    config.model.student_sample_steps = steps
    config.model.student_sample_type = "ode"
    config.model.sample_t_cfg.t_list = t_list
    student = perturbed_student(config).eval()
    ckpt = save_ckpt(tmp_path / "0000001.pth", {"net": student.state_dict()})
    out = tmp_path / "export"
    info = export_student(config, ckpt, str(out))
    assert info["call_kwargs"] == expected_call and info["lora"] is None
    assert json.loads((out / EXPORT_INFO).read_text())["call_kwargs"] == expected_call
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(out))
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    ref = pipeline_sample(pipe, 5, info["call_kwargs"])
    ours = our_sample(config, student, pipe, 5, t_list or [0.999, 0.0])
    assert (ours - ref).abs().max() <= 1e-3 and ref.abs().max() > 1.0
    if steps == 1:  # the decoded images too (pipeline's VAE on our latents vs the pipeline's own output)
        images = pipeline_sample(pipe, 5, info["call_kwargs"], output_type="pt")
        with torch.no_grad():
            decoded = pipe.vae.decode(ours / pipe.vae.config.scaling_factor).sample
        assert ((decoded / 2 + 0.5).clamp(0, 1) - images).abs().max() <= 1e-3


def test_exported_flux_student_reproduces_the_student(tmp_path, one_thread):
    """Flux: FlowMatchEuler without shift on the student's sigmas (t_list must start at 1: the pipeline's start)."""
    from fastgen.export import ExportError

    config = tiny_config("dmd2", tmp_path, family="flux")
    config.model.student_sample_steps, config.model.student_sample_type = 2, "ode"
    config.model.sample_t_cfg.t_list = [1.0, 0.5, 0.0]
    student = perturbed_student(config).eval()
    ckpt = save_ckpt(tmp_path / "flux.pth", {"net": student.state_dict()})
    info = export_student(config, ckpt, str(tmp_path / "flux"))
    assert info["call_kwargs"] == {"sigmas": [1.0, 0.5], "num_inference_steps": 2, "guidance_scale": 3.5}
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(tmp_path / "flux"))
    assert type(pipe).__name__ == "FluxPipeline"
    ref = type(pipe)._unpack_latents(pipeline_sample(pipe, 5, info["call_kwargs"]), 16, 16, pipe.vae_scale_factor)
    embeds, pooled, _ = pipe.encode_prompt(PROMPTS, None, device="cpu", num_images_per_prompt=1)
    condition = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    noise = torch.randn((len(PROMPTS), 4, 8, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = student_sample(lambda x, t: student(x, t, condition=condition, fwd_pred_type="x0"), noise,
                              torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64), student.noise_scheduler, "ode")
    assert (ours - ref).abs().max() <= 1e-3 and ref.abs().max() > 1.0
    config.model.sample_t_cfg.t_list = None  # the rf schedule's default grid starts at 0.999
    with pytest.raises(ExportError, match=r"starts at 0.999; .*t_list starting at 1.0, e.g. \[1.0, 0.4995, 0.0\]"):
        export_student(config, ckpt, str(tmp_path / "flux2"))
    assert not (tmp_path / "flux2").exists()


def test_exported_sft_student_samples_teacher_style_with_cfg(tmp_path, one_thread):
    """An SFT student keeps the scheduler the model ships with (DDIM here) and the config's CFG and step count."""
    config = tiny_config("sft", tmp_path)
    config.model.student_sample_steps, config.model.guidance_scale = 3, 2.5
    student = perturbed_student(config, seed=4).eval()
    info = export_student(config, save_ckpt(tmp_path / "sft.pth", {"net": student.state_dict()}), str(tmp_path / "o"))
    assert info["call_kwargs"] == {"num_inference_steps": 3, "guidance_scale": 2.5}
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(tmp_path / "o"))
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    ref = pipeline_sample(pipe, 2, info["call_kwargs"])
    embeds, neg = pipe.encode_prompt(PROMPTS, "cpu", 1, True)
    noise = torch.randn((len(PROMPTS), 4, 8, 8), generator=torch.Generator().manual_seed(2))
    ours = student.sample(noise, condition={"prompt_embeds": embeds}, neg_condition={"prompt_embeds": neg},
                          guidance_scale=2.5, num_steps=3)
    assert (ours - ref).abs().max() <= 1e-3


def lora_dmd2_checkpoint(tmp_path, config):
    """Train the LoRA DMD2 student of the tiny SD1.5 for a critic then a generator step; return the checkpoint,
    checking on the way that only adapter tensors changed and only they were saved."""
    from fastgen.methods import DMD2Model
    from fastgen.methods.lora import base_state_dict
    from fastgen.utils.checkpointer import collect_state

    torch.manual_seed(3)
    base = instantiate(config.model.net)
    base_path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(base_path))
    config.model.pretrained_model_path = str(base_path)
    config.model.student_update_freq = 2  # iteration 1: fake score (so F != T), 2: generator
    config.model.net_optimizer.lr = config.model.fake_score_optimizer.lr = 1e-2
    torch.manual_seed(0)
    model = DMD2Model(config.model)
    model.on_train_begin()
    model.init_optimizers()
    before = {k: v.clone() for k, v in base_state_dict(model.lora_base).items()}
    data = {"real": torch.randn(2, 4, 8, 8), "condition": {"prompt_embeds": torch.randn(2, 16, 32)},
            "neg_condition": {"prompt_embeds": torch.randn(2, 16, 32)}}
    for it in (1, 2):
        model.optimizers_zero_grad(it)
        model.single_train_step(data, it)[0]["total_loss"].backward()
        model.optimizers_schedulers_step(it)
    after = base_state_dict(model.lora_base)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the SD1.5 base stayed bit-identical
    state = collect_state(model, iteration=2)
    assert all(".lora_A." in k or ".lora_B." in k for sd in state["model"].values() for k in sd)
    assert any(v.abs().sum() > 0 for k, v in state["model"]["net"].items() if "lora_B" in k)
    path = tmp_path / "0000001.pth"
    torch.save(state, path)
    return str(path)


def test_lora_export_loads_into_the_base_pipeline_and_reproduces_the_student(tmp_path, one_thread):
    from fastgen.configs.config import LoRAConfig

    config = tiny_config("dmd2", tmp_path)
    config.model.lora = LoRAConfig(rank=4, alpha=8.0)  # default targets: to_q, to_k, to_v, to_out.0
    ckpt = lora_dmd2_checkpoint(tmp_path, config)
    out = tmp_path / "export"
    info = export_student(config, ckpt, str(out))
    assert info["lora"] == LORA_WEIGHT_NAME and (out / LORA_WEIGHT_NAME).is_file()
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(out))
    base_latents = pipeline_sample(pipe, 9, info["call_kwargs"])
    pipe.load_lora_weights(str(out))
    ref = pipeline_sample(pipe, 9, info["call_kwargs"])
    state, _ = checkpoint_network_state(ckpt)
    student = build_student(config, state, ckpt)
    ours = our_sample(config, student, pipe, 9, [0.999, 0.0])
    assert (ours - ref).abs().max() <= 1e-3
    assert (base_latents - ref).abs().max() > 1e-2  # the LoRA changed the pipeline's output


def test_bad_export_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, one_thread):
    cfg = write_config(tmp_path, "dmd2")
    out = tmp_path / "export"

    def run(*args):
        code = run_cli(export_main, [f"--config={cfg}", *args])
        err = capsys.readouterr().err.strip()
        assert not out.exists() and not os.path.exists(str(out) + ".tmp")
        return code, err

    code, err = run("--ckpt=/nonexistent/ckpt.pth", f"--out={out}")
    assert code == 2 and "checkpoint /nonexistent/ckpt.pth does not exist" in err and len(err.splitlines()) == 1
    # a checkpoint of another family (the Toy MLP) passed with the SD1.5 config
    toy = instantiate(Toy_MLP_Config, hidden_dim=8)
    toy_ckpt = save_ckpt(tmp_path / "toy.pth", {"net": toy.state_dict()})
    code, err = run(f"--ckpt={toy_ckpt}", f"--out={out}")
    assert code == 2 and "do not match model.net of the config (SD15)" in err and len(err.splitlines()) == 1
    # an SDXL UNet (same parameter names, other shapes) passed with the SD1.5 config
    from fastgen.configs.net import SDXLConfig
    from fastgen.networks.hf.tiny import tiny_components

    sdxl = instantiate(SDXLConfig, load_pretrained=False, component_configs=tiny_components("sdxl"))
    code, err = run(f"--ckpt={save_ckpt(tmp_path / 'sdxl.pth', {'net': sdxl.state_dict()})}", f"--out={out}")
    assert code == 2 and "do not match model.net of the config (SD15)" in err and len(err.splitlines()) == 1
    # LoRA adapters with a config without model.lora
    lora_state = {"denoiser.x.lora_A.weight": torch.zeros(1)}
    code, err = run(f"--ckpt={save_ckpt(tmp_path / 'lora.pth', {'net': lora_state})}", f"--out={out}")
    assert code == 2 and "hold LoRA adapters but the config has no model.lora" in err
    # a multi-step stochastic student has no stock diffusers scheduler
    good = save_ckpt(tmp_path / "good.pth", {"net": perturbed_student(tiny_config("dmd2", tmp_path)).state_dict()})
    code, err = run(f"--ckpt={good}", f"--out={out}", "-", "model.student_sample_steps=2",
                    "model.student_sample_type=sde")
    assert code == 2 and "student_sample_type=ode" in err
    code, err = run(f"--ckpt={good}", f"--out={out}", "-", "model.student_sample_steps=4",
                    "model.student_sample_type=ode")
    assert code == 2 and "not on the model's 1000 discrete timesteps" in err
    out.mkdir()
    code = run_cli(export_main, [f"--config={cfg}", f"--ckpt={good}", f"--out={out}"])
    assert code == 2 and "already exists" in capsys.readouterr().err and not os.listdir(out)
