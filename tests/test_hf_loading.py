"""Pretrained loading of the diffusers-backed networks: a hub-like cache under a temporary HF_HOME read with
LOCAL_FILES_ONLY=1 through the code users run, local folders, the missing-model line, meta-device builds."""

import json
import os
import subprocess
import sys

import pytest
import torch
from _hf_models import tiny_net

from fastgen.networks.hf import SD15, network_class
from fastgen.networks.hf.loading import ModelNotFoundError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_ID = "tiny-org/tiny-sd15"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _save_snapshot(net, root) -> str:
    """Write the network's components the way the hub client caches a repo: models--org--name/snapshots/<rev>/
    <subfolder>/..., plus refs/main naming the revision."""
    repo = os.path.join(root, "hub", "models--" + MODEL_ID.replace("/", "--"))
    snap = os.path.join(repo, "snapshots", REVISION)
    net.denoiser.save_pretrained(os.path.join(snap, "unet"))
    for name in ("vae", "text_encoder", "tokenizer"):
        net.encoders[name].save_pretrained(os.path.join(snap, name))
    os.makedirs(os.path.join(snap, "scheduler"))
    with open(os.path.join(snap, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump({"_class_name": "PNDMScheduler", **net.scheduler_config}, f)
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(REVISION)
    return snap


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    net = tiny_net("sd15", seed=7)
    root = tmp_path_factory.mktemp("hf_home")
    return net, str(root), _save_snapshot(net, str(root))


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_loads_from_hub_cache_with_local_files_only(hub, monkeypatch):
    net, root, _ = hub
    monkeypatch.setenv("HF_HOME", root)
    monkeypatch.setenv("LOCAL_FILES_ONLY", "1")
    loaded = SD15(model_id=MODEL_ID, enable_preprocessors=True)
    assert _same_weights(loaded, net)
    for name in ("vae", "text_encoder"):
        assert _same_weights(loaded.encoders[name], net.encoders[name])
    assert loaded.scheduler_config["steps_offset"] == 1
    prompts = ["a red cat", ""]
    assert torch.equal(loaded.encode_text(prompts)["prompt_embeds"], net.encode_text(prompts)["prompt_embeds"])


def test_loads_from_local_folder(hub, monkeypatch):
    net, _, snapshot = hub
    monkeypatch.setenv("HF_HOME", "/nonexistent")
    loaded = SD15(model_id=snapshot)
    assert _same_weights(loaded, net) and not loaded.encoders  # encoders only on init_preprocessors


def test_missing_model_is_one_line_naming_id_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("LOCAL_FILES_ONLY", "1")
    with pytest.raises(ModelNotFoundError) as info:
        SD15(model_id="nobody/missing-model")
    msg = str(info.value)
    assert "\n" not in msg and "nobody/missing-model" in msg
    assert "huggingface-cli download nobody/missing-model" in msg and "LOCAL_FILES_ONLY" in msg
    with pytest.raises(ValueError, match="unknown diffusers family 'sd3'"):
        network_class("sd3")


def test_meta_device_builds_architecture_without_weights(hub, monkeypatch):
    net, root, _ = hub
    monkeypatch.setenv("HF_HOME", root)
    monkeypatch.setenv("LOCAL_FILES_ONLY", "1")
    with torch.device("meta"):
        meta = SD15(model_id=MODEL_ID)
    assert all(p.is_meta for p in meta.parameters())
    assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert len(meta.fsdp_units()) == len(net.denoiser.down_blocks) + 1 + len(net.denoiser.up_blocks)


def test_smoke_overrides_build_the_same_family_tiny():
    for family in ("sd15", "sdxl", "flux", "qwen_image"):
        cls = network_class(family)
        kw = cls.smoke_overrides({"model_id": "org/real"})
        assert kw["load_pretrained"] is False and cls.adapter.denoiser_name in kw["component_configs"]
        net = cls(model_id="org/real", **kw)  # no hub access: everything from the tiny configs
        assert type(net) is cls and sum(p.numel() for p in net.parameters()) < 1_000_000  # the real ones: 0.86B to 20B


def test_config_targets_resolve_without_importing_torch_heavy_modules():
    code = ("import sys, fastgen.configs.net as n; assert 'diffusers' not in sys.modules; "
            "print(n.SD15Config._target_, n.FluxConfig.guidance_scale)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["fastgen.networks.hf.SD15", "3.5"]
