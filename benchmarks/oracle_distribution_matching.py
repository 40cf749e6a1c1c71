"""Exact-oracle quality of the distribution-matching family on the toy Gaussian mixture (ring8).

Each method (DMD2, f-distill, LADD, SiD; plus DMD2 with the GAN heads on the fake score's features) is trained with
the real Trainer on its Toy config: ToyMLP 1-step student, the exact GMMDenoiser teacher, a ToyMLP fake score and MLP
discriminator heads. Its 1-step samples are compared with the known data distribution: sliced Wasserstein distance
(before and after training) and mode coverage. `oracle_rows()` returns one dict per method for benchmarks/oracle.py;
run this file to print them as a table:

    OMP_NUM_THREADS=1 python benchmarks/oracle_distribution_matching.py [dmd2 f_distill ladd sid dmd2_fake_feat]
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
METHODS = ("dmd2", "f_distill", "ladd", "sid", "dmd2_fake_feat")


def toy_config(name: str, max_iter: int | None = None):
    """The Toy config behind a row name ("dmd2_fake_feat": DMD2 with gan_feature_source=fake_score)."""
    import importlib

    method = "dmd2" if name == "dmd2_fake_feat" else name
    module = importlib.import_module(f"fastgen.configs.experiments.Toy.config_{method}")
    config = module.create_config()
    if name == "dmd2_fake_feat":
        from fastgen.configs.experiments.Toy.config_dmd2 import toy_fake_score_discriminator

        net = config.model.fake_score_net
        config.model.gan_feature_source = "fake_score"
        config.model.discriminator = toy_fake_score_discriminator(net.num_layers, net.hidden_dim)
        config.log_config.name = "dmd2_fake_feat_ring8"
    if max_iter is not None:
        config.trainer.max_iter = config.trainer.save_ckpt_iter = max_iter
    config.trainer.callbacks = {}
    config.trainer.logging_iter = 10**9
    return config


def one_step_samples(model, n: int = NUM_EVAL, seed: int = 5) -> torch.Tensor:
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)).to(model.device)
    return model.generator_fn(model.net_inference, noise).cpu()


def swd_to_data(samples: torch.Tensor, seed: int = 11) -> float:
    data, _ = make_gmm("ring8").sample(NUM_EVAL, torch.Generator().manual_seed(seed))
    return sliced_wasserstein(samples, data, generator=torch.Generator().manual_seed(6))


def train(config, output_root: str):
    """Build config.model_class and run the real Trainer in `output_root`; returns (model, SWD before training)."""
    from fastgen.trainer import Trainer
    from fastgen.utils import instantiate

    os.environ["FASTGEN_OUTPUT_ROOT"] = output_root
    torch.manual_seed(config.trainer.seed)
    model = instantiate(config.model_class, config=config.model)
    swd_before = swd_to_data(one_step_samples(model))
    Trainer(config).run(model)
    return model, swd_before


def oracle_rows(methods=METHODS) -> list[dict]:
    """Train each method on ring8; one dict {method, steps, swd, swd_init, mode_coverage, seconds} per method."""
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for name in methods:
            config = toy_config(name)
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
    rows = oracle_rows(tuple(sys.argv[1:])) if len(sys.argv) > 1 else oracle_rows()
    print(f"{'method':<16}{'steps':>6}{'SWD init':>10}{'SWD':>9}{'modes':>7}{'sec':>7}")
    for row in rows:
        print(f"{row['method']:<16}{row['steps']:>6}{row['swd_init']:>10.4f}{row['swd']:>9.4f}"
              f"{row['mode_coverage']:>7.2f}{row['seconds']:>7.1f}")
