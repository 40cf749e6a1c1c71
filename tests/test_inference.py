"""scripts/inference/image_model_inference.py: requested images and grid, the exact student sample, class lists."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from fastgen.cli import UsageError, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "inference", "image_model_inference.py")
DMD2_CONFIG = os.path.join(ROOT, "fastgen", "configs", "experiments", "FashionMNIST", "config_dmd2.py")
SFT_CONFIG = os.path.join(ROOT, "fastgen", "configs", "experiments", "FashionMNIST", "config_sft_teacher.py")
CLASSES_FILE = os.path.join(ROOT, "scripts", "inference", "prompts", "classes.txt")


def load_script():
    spec = importlib.util.spec_from_file_location("image_model_inference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture()
def weights(tmp_path):
    """A seeded random demo network saved as a fastgen checkpoint holding 'net' and a different 'ema'."""
    from fastgen.configs.experiments.FashionMNIST._common import fashion_mnist_net
    from fastgen.utils import instantiate

    torch.manual_seed(0)
    net, ema = instantiate(fashion_mnist_net()), instantiate(fashion_mnist_net())
    path = tmp_path / "0000010.pth"
    torch.save({"model": {"net": net.state_dict(), "ema": ema.state_dict()}, "iteration": 10}, path)
    return path, net.eval(), ema.eval()


def png(path):
    return np.asarray(Image.open(path))


def test_student_inference_writes_the_requested_images(script, weights, tmp_path):
    ckpt, _, ema = weights
    out = tmp_path / "inf"
    code = run_cli(script.main, [f"--config={DMD2_CONFIG}", f"--ckpt_path={ckpt}", "--classes=0,Bag,7",
                                 "--num_samples_per_class=3", f"--out_dir={out}", "--seed=4", "--batch_size=4"])
    assert code == 0
    files = sorted(os.listdir(out / "images"))
    assert len(files) == 9
    assert files == [f"{tag}_{k:03d}.png" for tag in ("0_T-shirt-top", "7_Sneaker", "8_Bag") for k in range(3)]
    # grid: 3 class rows x 3 samples, 32x32 cells, 2-pixel padding
    assert png(out / "grid.png").shape == (3 * 34 + 2, 3 * 34 + 2)

    # the image is the EMA network's 1-step sample x0 = G(z * 80, 80, class) of the documented noise seed
    noise = torch.randn((1, 32, 32), generator=torch.Generator().manual_seed(4 * 1_000_003 + 8 * 10_007 + 1))
    with torch.no_grad():
        expected = ema(noise[None] * 80.0, torch.full((1,), 80.0, dtype=torch.float64),
                       condition=torch.nn.functional.one_hot(torch.tensor([8]), 10).float()).clamp(-1, 1)
    expected_u8 = np.clip(np.floor(expected[0, 0].numpy().astype(np.float64) * 127.5 + 128), 0, 255)
    assert np.abs(png(out / "images" / "8_Bag_001.png").astype(np.int64) - expected_u8).max() <= 1


def test_net_key_and_prompt_file_and_teacher_sampler(script, weights, tmp_path):
    ckpt, net, _ = weights
    out = tmp_path / "teacher"
    prompt = tmp_path / "classes.txt"
    prompt.write_text("# two classes\n7 Sneaker\n\nbag\n")
    code = run_cli(script.main, [f"--config={SFT_CONFIG}", f"--ckpt_path={ckpt}", "--net_key=net",
                                 f"--prompt_file={prompt}", "--num_samples_per_class=2", "--num_steps=3",
                                 "--sampler_type=euler", f"--out_dir={out}", "--no_individual"])
    assert code == 0
    assert not os.listdir(out / "images") and png(out / "grid.png").shape == (2 * 34 + 2, 2 * 34 + 2)
    # with the raw net, 3 Euler steps: compare the first grid cell (class 7, sample 0) with net.sample directly
    noise = torch.randn((1, 32, 32), generator=torch.Generator().manual_seed(7 * 10_007))
    with torch.no_grad():
        x = net.sample(noise[None], condition=torch.nn.functional.one_hot(torch.tensor([7]), 10).float(),
                       num_steps=3, sampler_type="euler").clamp(-1, 1)
    expected = np.clip(np.floor(x[0, 0].numpy().astype(np.float64) * 127.5 + 128), 0, 255)
    assert np.abs(png(out / "grid.png")[2:34, 2:34].astype(np.int64) - expected).max() <= 1


def test_class_lists(script):
    names = script.known_class_names(10)
    assert [script.parse_class_entry(e, names) for e in ("3", "7 Sneaker", "ankle boot", "T-shirt/top")] == [3, 7, 9, 0]
    with pytest.raises(UsageError, match="out of range"):
        script.parse_class_entry("10", names)
    with pytest.raises(UsageError, match="unknown class 'Hat'"):
        script.parse_class_entry("Hat", names)
    with open(CLASSES_FILE) as file:  # the shipped class list names every class once, in order
        entries = [line for line in file if line.strip() and not line.startswith("#")]
    assert [script.parse_class_entry(e, names) for e in entries] == list(range(10))


def test_usage_errors_exit_2(script, weights, tmp_path, capsys):
    ckpt, _, _ = weights
    code = run_cli(script.main, [f"--config={DMD2_CONFIG}", f"--ckpt_path={ckpt}", "--classes=0",
                                 f"--prompt_file={CLASSES_FILE}", f"--out_dir={tmp_path}"])
    assert code == 2 and "either --classes or --prompt_file" in capsys.readouterr().err
    code = run_cli(script.main, [f"--config={DMD2_CONFIG}", f"--ckpt_path={ckpt}", "--net_key=fake_score",
                                 f"--out_dir={tmp_path}"])
    assert code == 1 and "--net_key 'fake_score' is not in" in capsys.readouterr().err


# --- text-to-image (tiny random SD1.5, nothing downloaded) -------------------------------------------------------
TOY_SFT_CONFIG = os.path.join(ROOT, "fastgen", "configs", "experiments", "Toy", "config_sft.py")


@pytest.fixture()
def sd15_student(tmp_path):
    """The tiny SD1.5 DMD2 config file and a checkpoint of a student whose UNet moved off its initialisation."""
    from _tiny_sd15 import tiny_config, write_config

    from fastgen.utils import instantiate

    config = tiny_config("dmd2", tmp_path)
    torch.manual_seed(1)
    net = instantiate(config.model.net)
    with torch.no_grad():
        for p in net.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ckpt = tmp_path / "0000002.pth"
    torch.save({"model": {"net": net.state_dict()}, "iteration": 2}, ckpt)
    return write_config(tmp_path, "dmd2"), str(ckpt), config


def expected_t2i_image(config, ckpt, prompt, seed, guidance_scale=None):
    """The 1-step student sample of `prompt` from seed `seed`, decoded, as uint8 (encoders built like the script's:
    the same global seed before the build)."""
    from fastgen.export.student import build_student, checkpoint_network_state
    from fastgen.networks.samplers import cfg_combine

    torch.manual_seed(0)
    net = build_student(config, checkpoint_network_state(ckpt)[0], ckpt)
    noise = torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(seed))[None]
    t = torch.full((1,), 0.999, dtype=torch.float64)
    x = noise * net.noise_scheduler.sigma(t).float().view(1, 1, 1, 1)
    with torch.no_grad():
        x0 = net(x, t, condition=net.encode_text([prompt]), fwd_pred_type="x0")
        if guidance_scale is not None:
            x0 = cfg_combine(x0, net(x, t, condition=net.encode_text([""]), fwd_pred_type="x0"), guidance_scale)
        image = net.decode_latents(x0).clamp(-1, 1)[0]
    return np.clip(np.floor(image.numpy().astype(np.float64) * 127.5 + 128), 0, 255).transpose(1, 2, 0)


def test_text_to_image_writes_one_image_per_prompt_and_seed(script, sd15_student, tmp_path, capsys, one_thread):
    cfg, ckpt, config = sd15_student
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cat\n\n  two dogs  \n")
    out = tmp_path / "t2i"
    torch.manual_seed(0)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", f"--prompts={prompts}", "--seeds=3,5",
                                 f"--out_dir={out}", "--batch_size=3"])
    assert code == 0 and "wrote 4 images in" in capsys.readouterr().err
    assert sorted(os.listdir(out / "images")) == ["000_a-red-cat_s3.png", "000_a-red-cat_s5.png",
                                                  "001_two-dogs_s3.png", "001_two-dogs_s5.png"]
    assert png(out / "grid.png").shape == (2 * 18 + 2, 2 * 18 + 2, 3)  # rows: prompts, columns: seeds
    expected = expected_t2i_image(config, ckpt, "two dogs", 5)
    assert np.abs(png(out / "images" / "001_two-dogs_s5.png").astype(np.int64) - expected).max() <= 1
    # classifier-free guidance on the student: x0 = x0(neg) + g (x0(prompt) - x0(neg)), neg = the empty prompt
    torch.manual_seed(0)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=a red cat", "--seeds=4",
                                 "--guidance_scale=3.0", "--num_steps=1", f"--out_dir={tmp_path / 'cfg'}"])
    assert code == 0
    expected = expected_t2i_image(config, ckpt, "a red cat", 4, guidance_scale=3.0)
    assert np.abs(png(tmp_path / "cfg" / "images" / "000_a-red-cat_s4.png").astype(np.int64) - expected).max() <= 1


def test_text_to_image_usage_errors_exit_2(script, sd15_student, weights, tmp_path, capsys):
    cfg, ckpt, _ = sd15_student
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    toy = tmp_path / "toy.pth"
    from fastgen.configs.net import Toy_MLP_Config
    from fastgen.utils import instantiate

    torch.save({"model": {"net": instantiate(Toy_MLP_Config).state_dict()}, "iteration": 1}, toy)
    from fastgen.configs.experiments.FashionMNIST._common import fashion_mnist_net

    uncond_net = fashion_mnist_net()
    uncond_net.label_dim = 0
    uncond = tmp_path / "uncond.pth"
    torch.save({"model": {"net": instantiate(uncond_net).state_dict()}, "iteration": 1}, uncond)
    cases = [
        ([f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompts=/nonexistent/prompts.txt"], "does not exist"),
        ([f"--config={cfg}", f"--ckpt_path={ckpt}", f"--prompts={empty}"], "holds no prompt"),
        ([f"--config={cfg}", f"--ckpt_path={ckpt}"], "is a text-to-image network: pass --prompt"),
        ([f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=x", "--seeds=5-2"], "--seeds '5-2'"),
        ([f"--config={DMD2_CONFIG}", f"--ckpt_path={weights[0]}", "--prompt=a cat"], "need a text-to-image network"),
        ([f"--config={TOY_SFT_CONFIG}", f"--ckpt_path={toy}", "--prompt=a cat"], "describes vectors"),
        ([f"--config={DMD2_CONFIG}", f"--ckpt_path={uncond}", "--guidance_scale=2", "-", "model.net.label_dim=0"],
         "--guidance_scale needs a conditional network; EDMPrecond is unconditional"),
    ]
    for argv, message in cases:
        opts = argv[argv.index("-"):] if "-" in argv else []
        argv = argv[:len(argv) - len(opts)]
        code = run_cli(script.main, [*argv, f"--out_dir={tmp_path / 'out'}", *opts])
        lines = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in lines, (argv, lines)


def test_non_image_config_is_refused_before_sampling(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    toy = os.path.join(ROOT, "fastgen", "configs", "experiments", "Toy", "config_dmd2.py")
    code = run_cli(script.main, [f"--config={toy}", f"--out_dir={tmp_path / 'inference'}"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: image_model_inference.py works on pixel images [C, H, W] with 1 or 3 channels, but this config's "
        "model.input_shape=[2] describes vectors; pass an image experiment's config")
    assert not (tmp_path / "inference").exists()
