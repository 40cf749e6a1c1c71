"""Official EDM / EDM2 pickle conversion, on pickles this test builds with the official layout.

The official files pickle `torch_utils.persistence` objects (reconstructed through
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with the module source inside `meta`), torch.nn
containers, NumPy scalars and a `dnnlib.util.EasyDict`. We mimic exactly that with stand-in classes registered
under the fake module names while pickling, remove those modules again, and check that the converter reads the
file without them, never executes the embedded source, and reproduces the network's outputs.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from fastgen.networks.EDM.convert import convert_edm_pickle, main, save_state_dict
from fastgen.networks.EDM.layers import Conv2d
from fastgen.networks.EDM.network import EDMPrecond
from fastgen.networks.EDM.official_pickle import load_official_pickle
from fastgen.networks.EDM2.convert import convert_edm2_pickle
from fastgen.networks.EDM2.network import EDM2Precond

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
NEVER_RUN_SRC = "raise RuntimeError('the pickled module source must never be executed')\n"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reconstruct_persistent_obj(meta):  # what EDM's loader would call (never reached in these tests)
    raise RuntimeError("the real persistence loader must not be used")


class EasyDict(dict):
    pass


class PersistentModule(nn.Module):
    """An nn.Module that pickles like a `@persistence.persistent_class` instance."""

    def __init__(self, class_name, init_kwargs=None):
        super().__init__()
        self._orig_class_name = class_name
        self._init_args = ()
        self._init_kwargs = dict(init_kwargs or {})

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=NEVER_RUN_SRC, class_name=self._orig_class_name,
                    state=dict(self.__dict__))  # fmt: skip
        return (_reconstruct_persistent_obj, (meta,), None)


@contextlib.contextmanager
def fake_official_modules():
    """Register torch_utils.persistence / dnnlib.util / training.networks while pickling; remove them after."""
    names = ["torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "training", "training.networks"]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["training.networks"].PersistentModule = PersistentModule
    originals = [(obj, obj.__module__) for obj in (_reconstruct_persistent_obj, EasyDict, PersistentModule)]
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    EasyDict.__module__ = "dnnlib.util"
    PersistentModule.__module__ = "training.networks"
    sys.modules.update(mods)
    try:
        yield
    finally:
        for obj, module in originals:
            obj.__module__ = module
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def build_official_tree(flat: dict[str, torch.Tensor], root_class: str, init_kwargs: dict) -> PersistentModule:
    """A module tree holding `flat` under its dotted names, shaped like EDM's (ModuleDicts for enc/dec)."""
    root = PersistentModule(root_class, init_kwargs)
    for key, value in flat.items():
        *path, leaf = key.split(".")
        module = root
        for name in path:
            if name not in module._modules:
                child = nn.ModuleDict() if name in ("enc", "dec") else PersistentModule(name.capitalize())
                if isinstance(child, PersistentModule):
                    child.skip_scale = np.float64(np.sqrt(0.5))  # EDM stores NumPy scalars as attributes
                module.add_module(name, child)
            module = module._modules[name]
        if leaf in ("weight", "bias") or leaf.endswith("gain"):
            module.register_parameter(leaf, nn.Parameter(value.clone()))
        else:
            module.register_buffer(leaf, value.clone())
    return root


def official_pickle_bytes(net_tree, protocol=pickle.HIGHEST_PROTOCOL) -> bytes:
    loss_fn = PersistentModule("EDMLoss", dict(P_mean=-1.2, P_std=1.2))
    data = dict(ema=net_tree, loss_fn=loss_fn, augment_pipe=None, dataset_kwargs=EasyDict(path="cifar10.zip"))
    with fake_official_modules():
        blob = pickle.dumps(data, protocol=protocol)
    for name in ("torch_utils.persistence", "training.networks", "dnnlib.util"):
        assert name not in sys.modules  # the converter has to work without the training code
    return blob


def randomize_(net, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return net


SONG_KW = dict(
    img_resolution=8,
    img_channels=3,
    label_dim=10,
    sigma_data=0.5,
    model_type="SongUNet",
    augment_dim=9,
    model_channels=16,
    channel_mult=[1, 2],
    num_blocks=1,
    attn_resolutions=[4],
    dropout=0.0,
    embedding_type="fourier",
    channel_mult_noise=2,
    encoder_type="residual",
    resample_filter=[1, 3, 3, 1],
)
DHARIWAL_KW = dict(img_resolution=8, img_channels=3, label_dim=10, model_type="DhariwalUNet", model_channels=64,
                   channel_mult=[1, 1], num_blocks=1, attn_resolutions=[4], dropout=0.0)  # fmt: skip


def official_edm_state(net: EDMPrecond) -> dict[str, torch.Tensor]:
    """Our weights under EDM's names: `model.` prefix plus every resampling conv's resample_filter buffer."""
    flat = {"model." + k[len("unet.") :]: v for k, v in net.state_dict().items()}
    for name, module in net.named_modules():
        if isinstance(module, Conv2d) and module.resample_filter is not None:
            flat["model." + name[len("unet.") :] + ".resample_filter"] = module.resample_filter.clone()
    return flat


@pytest.mark.parametrize("net_kw", [SONG_KW, DHARIWAL_KW], ids=["song_ncsnpp", "dhariwal"])
def test_edm_pickle_converts_and_reproduces_outputs(net_kw, tmp_path):
    torch.manual_seed(0)
    source = randomize_(EDMPrecond(**net_kw)).eval()
    flat = official_edm_state(source)
    # a few names and shapes of EDM's layout, written out independently of the converter
    c = net_kw["model_channels"]
    c4 = c * net_kw["channel_mult"][1]  # channels at 4x4
    assert flat["model.enc.8x8_conv.weight"].shape == (c, 3, 3, 3)
    assert flat["model.enc.4x4_block0.qkv.weight"].shape == (3 * c4, c4, 1, 1)
    assert "model.enc.4x4_down.conv0.resample_filter" in flat and "model.map_label.weight" in flat
    assert ("model.dec.8x8_aux_conv.weight" in flat) == (net_kw is SONG_KW)
    assert ("model.out_conv.weight" in flat) == (net_kw is DHARIWAL_KW)
    # official constructor kwargs: EDMPrecond(img_resolution, img_channels, label_dim, use_fp16, ..., **model_kwargs)
    official_kwargs = {k: v for k, v in net_kw.items()}
    official_kwargs.update(use_fp16=False, sigma_min=0, sigma_max=float("inf"))
    tree = build_official_tree(flat, "EDMPrecond", official_kwargs)
    path = tmp_path / "edm.pkl"
    path.write_bytes(official_pickle_bytes(tree))

    kwargs, state = convert_edm_pickle(path)
    assert all(kwargs[k] == v for k, v in net_kw.items()), kwargs
    assert not any(k.endswith("resample_filter") for k in state)
    torch.manual_seed(123)
    target = EDMPrecond(**kwargs).eval()
    target.load_state_dict(state, strict=True)
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 3, 8, 8, generator=gen), torch.tensor([0.4, 7.0], dtype=torch.float64)
    cond = {"orig_condition": F.one_hot(torch.tensor([3, 8]), 10).float(), "aug_condition": torch.rand(2, 9)}
    if not net_kw.get("augment_dim"):
        cond = cond["orig_condition"]
    torch.testing.assert_close(target(x, t, cond), source(x, t, cond), rtol=0, atol=0)

    # file round trip through the CLI: safetensors (kwargs in metadata + .json) and a weights_only torch file
    assert main([str(path), str(tmp_path / "edm.safetensors")]) == 0
    loaded = load_file(str(tmp_path / "edm.safetensors"))
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert (tmp_path / "edm.safetensors.json").is_file()
    save_state_dict(state, tmp_path / "edm.pth", kwargs)
    pth = torch.load(tmp_path / "edm.pth", weights_only=True)
    assert all(torch.equal(pth[k], state[k]) for k in state)


def test_edm2_pickle_converts_and_reproduces_outputs(tmp_path):
    net_kw = dict(img_resolution=8, img_channels=3, label_dim=10, model_channels=16, channel_mult=[1, 2],
                  num_blocks=1, attn_resolutions=[4], channels_per_head=8, logvar_channels=16)  # fmt: skip
    torch.manual_seed(0)
    source = randomize_(EDM2Precond(**net_kw)).eval()
    flat = {k: (v.reshape([]) if k.endswith("gain") else v) for k, v in source.state_dict().items()}  # EDM2: 0-d
    assert {"unet.out_gain", "unet.emb_fourier.freqs", "logvar_fourier.phases", "logvar_linear.weight",
            "unet.enc.4x4_block0.attn_qkv.weight", "unet.dec.8x8_block1.conv_skip.weight"} <= flat.keys()  # fmt: skip
    tree = build_official_tree(flat, "Precond", dict(net_kw, use_fp16=True))
    path = tmp_path / "edm2.pkl"
    path.write_bytes(official_pickle_bytes(tree, protocol=2))

    kwargs, state = convert_edm2_pickle(path)
    assert "use_fp16" not in kwargs and kwargs["model_channels"] == 16
    torch.manual_seed(321)
    target = EDM2Precond(**kwargs).eval()
    target.load_state_dict(state, strict=True)
    x, t = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0.2, 3.0]).double()
    cond = F.one_hot(torch.tensor([1, 9]), 10).float()
    out, logvar = target(x, t, cond, return_logvar=True)
    ref_out, ref_logvar = source(x, t, cond, return_logvar=True)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    torch.testing.assert_close(logvar, ref_logvar, rtol=0, atol=0)


def test_reader_keeps_non_network_entries_and_never_runs_code():
    tree = build_official_tree({"model.map_layer0.weight": torch.ones(2, 2)}, "EDMPrecond", {})
    data = load_official_pickle(io.BytesIO(official_pickle_bytes(tree)))
    assert data["dataset_kwargs"] == {"path": "cifar10.zip"} and data["augment_pipe"] is None
    assert data["loss_fn"].class_name == "EDMLoss" and data["loss_fn"].init_kwargs == {"P_mean": -1.2, "P_std": 1.2}
    assert data["ema"].state_dict().keys() == {"model.map_layer0.weight"}
    assert float(data["ema"].children()["model"].state["skip_scale"]) == pytest.approx(np.sqrt(0.5))


def test_malicious_globals_are_refused():
    evil = b"cos\nsystem\n(S'echo pwned'\ntR."
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        load_official_pickle(io.BytesIO(evil))
    evil_builtin = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        load_official_pickle(io.BytesIO(evil_builtin))


def test_wrong_network_class_and_layout_are_reported(tmp_path):
    tree = build_official_tree({"model.map_layer0.weight": torch.ones(2, 2)}, "VPPrecond", dict(img_resolution=8))
    path = tmp_path / "vp.pkl"
    path.write_bytes(official_pickle_bytes(tree))
    with pytest.raises(ValueError, match="VPPrecond"):
        convert_edm_pickle(path)
    kw = dict(DHARIWAL_KW, use_fp16=False)
    tree = build_official_tree({"model.map_layer0.weight": torch.ones(2, 2)}, "EDMPrecond", kw)
    path.write_bytes(official_pickle_bytes(tree))
    with pytest.raises(ValueError, match="missing"):
        convert_edm_pickle(path)
    with pytest.raises(FileNotFoundError):
        convert_edm_pickle(tmp_path / "absent.pkl")


@pytest.mark.parametrize("module", ["fastgen.networks.EDM.convert", "fastgen.networks.EDM2.convert"])
def test_converter_cli_reports_a_bad_file_in_one_line(module, tmp_path, capsys):
    import importlib

    from fastgen.cli import run_cli

    bad = tmp_path / "not_a_pickle.pkl"
    bad.write_bytes(np.random.default_rng(0).bytes(256))
    code = run_cli(importlib.import_module(module).main, [str(bad), str(tmp_path / "out.pth")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot convert {bad}: not a readable official network pickle (")
    assert err.count("\n") == 1 and not (tmp_path / "out.pth").exists()
    code = run_cli(importlib.import_module(module).main, [str(tmp_path / "missing.pkl"), str(tmp_path / "o.pth")])
    assert code == 1 and capsys.readouterr().err == f"error: source pickle not found: {tmp_path / 'missing.pkl'}\n"
