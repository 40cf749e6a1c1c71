"""Training-step time of the consistency-model family relative to SFT, on the same network and batch.

One "step" = single_train_step + backward + optimizer step (what the trainer does per iteration). The methods differ
in network passes per step: SFT 1 forward/backward; CM/TCM 2 forwards (one without grad); CD adds a teacher pass;
sCM and MeanFlow add a forward-mode JVP (about 2-3 forward costs with torch.func.jvp; 3 forwards with central
differences). Steps of all methods are interleaved and the median is compared, so machine load affects all alike.

    OMP_NUM_THREADS=1 python benchmarks/bench_consistency.py            # ToyMLP (batch 256) and tiny EDM UNet
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from fastgen.utils import LazyCall as L  # noqa: E402
from fastgen.utils import instantiate  # noqa: E402

TOY_NET = L("fastgen.networks.toy.ToyMLP")(dim=2, hidden_dim=128, num_layers=3)
EDM_NET = L("fastgen.networks.EDM.network.EDMPrecond")(
    img_resolution=16, img_channels=3, label_dim=0, model_type="SongUNet", model_channels=32, channel_mult=[1, 2],
    num_blocks=1, attn_resolutions=[8], dropout=0.0, enable_logvar=True,
)
# name -> (method config module, loss_config.use_cd, JVP by finite differences)
METHODS = {
    "SFT": ("config_sft", False, False),
    "CM (CT)": ("config_cm", False, False),
    "CM (CD)": ("config_cm", True, False),
    "TCM": ("config_tcm", False, False),
    "sCM (sCT)": ("config_scm", False, False),
    "sCM (sCD)": ("config_scm", True, False),
    "sCM (sCT, finite-diff JVP)": ("config_scm", False, True),
    "MeanFlow": ("config_mean_flow", False, False),
    "MeanFlow (CD)": ("config_mean_flow", True, False),
}


def build(method_module: str, use_cd: bool, finite_diff: bool, net_cfg, teacher_cfg=None):
    import copy
    import importlib

    config = importlib.import_module(f"fastgen.configs.methods.{method_module}").create_config()
    net_cfg = copy.deepcopy(net_cfg)
    if method_module == "config_mean_flow":
        net_cfg.r_timestep = True
    config.model.net = net_cfg
    config.model.teacher = teacher_cfg
    config.model.device = "cpu"
    config.model.use_ema = False
    if hasattr(config.model, "loss_config"):
        config.model.loss_config.use_cd = use_cd
        if hasattr(config.model.loss_config, "use_jvp_finite_diff"):
            config.model.loss_config.use_jvp_finite_diff = finite_diff
    if method_module == "config_tcm":
        config.model.sample_t_cfg.min_t = config.model.transition_t
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    model.on_train_begin()
    model.init_optimizers()
    return model


def step(model, data, iteration):
    loss_map, _ = model.single_train_step(data, iteration)
    loss_map["total_loss"].backward()
    model.optimizers_schedulers_step(iteration)
    model.optimizers_zero_grad(iteration)


def bench(net_cfg, teacher_cfg, data, rounds: int = 15, warmup: int = 3) -> dict[str, float]:
    models = {name: build(module, cd, fd, net_cfg, teacher_cfg) for name, (module, cd, fd) in METHODS.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(warmup + rounds):
        for name, model in models.items():
            start = time.perf_counter()
            step(model, data, i + 1)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None) -> None:
    from _args import benchmark_parser
    from loguru import logger

    benchmark_parser(__doc__).parse_args(argv)

    logger.remove()
    torch.set_num_threads(1)
    cases = [
        ("ToyMLP 128x3, batch 256", TOY_NET, L("fastgen.networks.toy.GMMDenoiser")(gmm_name="ring8", dim=2),
         {"real": torch.randn(256, 2), "condition": torch.zeros(256, 0)}),
        ("EDM SongUNet 16x16 ch32, batch 8", EDM_NET, EDM_NET, {"real": torch.randn(8, 3, 16, 16),
                                                               "condition": torch.zeros(8, 0)}),
    ]
    for title, net_cfg, teacher_cfg, data in cases:
        medians = bench(net_cfg, teacher_cfg, data)
        base = medians["SFT"]
        print(f"\n{title} (median of 15 interleaved steps, 1 CPU thread)")
        print(f"{'method':<30}{'ms/step':>10}{'x SFT':>8}")
        for name, value in medians.items():
            print(f"{name:<30}{value * 1e3:>10.2f}{value / base:>8.2f}")


if __name__ == "__main__":
    main()
