"""Exact-oracle quality of the consistency-model family on the toy Gaussian mixture (ring8).

Each method is trained with the real Trainer on its Toy config (ToyMLP student; the exact GMMDenoiser teacher for the
distillation variants) and its 1-step samples are compared with the known data distribution:
sliced Wasserstein distance (before and after training) and mode coverage. `oracle_rows()` returns one dict per
method for benchmarks/oracle.py; run this file to print them as a table:

    OMP_NUM_THREADS=1 python benchmarks/oracle_consistency.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from fastgen.utils.gmm import make_gmm, mode_coverage, sliced_wasserstein  # noqa: E402

NUM_EVAL = 2000


def toy_config(method: str, use_cd: bool = False, max_iter: int | None = None, hidden_dim: int | None = None,
               stage1_ckpt: str | None = None):
    """The Toy config of `method` (cm | scm | tcm | mean_flow), optionally as distillation / shortened / narrower."""
    import importlib

    module = importlib.import_module(f"fastgen.configs.experiments.Toy.config_{method}")
    config = module.create_config()
    config.model.loss_config.use_cd = use_cd
    if max_iter is not None:
        config.trainer.max_iter = max_iter
        config.trainer.save_ckpt_iter = max_iter
    if hidden_dim is not None:
        config.model.net.hidden_dim = hidden_dim
    if stage1_ckpt is not None:
        config.trainer.checkpointer.pretrained_ckpt_path = stage1_ckpt
    config.trainer.logging_iter = 10**9
    return config


def one_step_samples(model, n: int = NUM_EVAL, seed: int = 5, net=None, steps: int = 1, t_list=None):
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)).to(model.device)
    net = model.net_inference if net is None else net
    return model.generator_fn(net, noise, student_sample_steps=steps, t_list=t_list).cpu()


def swd_to_data(samples: torch.Tensor, seed: int = 11) -> float:
    data, _ = make_gmm("ring8").sample(NUM_EVAL, torch.Generator().manual_seed(seed))
    return sliced_wasserstein(samples, data, generator=torch.Generator().manual_seed(6))


def train(config, output_root: str):
    """Build the model from config.model_class and run the real Trainer in `output_root`; returns the model."""
    from fastgen.trainer import Trainer
    from fastgen.utils import instantiate

    os.environ["FASTGEN_OUTPUT_ROOT"] = output_root
    torch.manual_seed(config.trainer.seed)
    model = instantiate(config.model_class, config=config.model)
    swd_before = swd_to_data(one_step_samples(model))
    Trainer(config).run(model)
    return model, swd_before


def checkpoint_path(config) -> str:
    return os.path.join(config.log_config.save_path, "checkpoints", f"{config.trainer.max_iter:07d}.pth")


def oracle_rows(methods=("cm", "cm_cd", "scm", "scm_cd", "tcm", "mean_flow", "mean_flow_cd")) -> list[dict]:
    """Train each method on ring8 and report {method, steps, swd, swd_init, mode_coverage, seconds}."""
    rows = []
    with tempfile.TemporaryDirectory() as root:
        stage1 = None
        for name in methods:
            method, use_cd = (name[:-3], True) if name.endswith("_cd") else (name, False)
            if method == "tcm" and stage1 is None:
                cm_config = toy_config("cm")
                train(cm_config, os.path.join(root, "stage1"))
                stage1 = checkpoint_path(cm_config)
            config = toy_config(method, use_cd=use_cd, stage1_ckpt=stage1 if method == "tcm" else None)
            start = time.perf_counter()
            model, swd_before = train(config, os.path.join(root, name))
            samples = one_step_samples(model)
            rows.append({
                "method": name,
                "steps": int(config.trainer.max_iter),
                "swd_init": round(swd_before, 4),
                "swd": round(swd_to_data(samples), 4),
                "mode_coverage": mode_coverage(samples, make_gmm("ring8"))["mode_coverage"],
                "seconds": round(time.perf_counter() - start, 1),
            })
    return rows


if __name__ == "__main__":
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    rows = oracle_rows(sys.argv[1:] or None) if len(sys.argv) > 1 else oracle_rows()
    print(f"{'method':<14}{'steps':>6}{'SWD init':>10}{'SWD':>9}{'modes':>7}{'sec':>7}")
    for row in rows:
        print(f"{row['method']:<14}{row['steps']:>6}{row['swd_init']:>10.4f}{row['swd']:>9.4f}"
              f"{row['mode_coverage']:>7.2f}{row['seconds']:>7.1f}")
