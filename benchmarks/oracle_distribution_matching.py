"""Exact-oracle quality of the distribution-matching family on the toy Gaussian mixture (ring8).

Each method (DMD2, f-distill, LADD, SiD; plus DMD2 with the GAN heads on the fake score's features) is trained with
the real Trainer on its Toy config: ToyMLP 1-step student, the exact GMMDenoiser teacher, a ToyMLP fake score and MLP
discriminator heads. Its 1-step samples are compared with the known data distribution: sliced Wasserstein distance
(before and after training) and mode coverage. `oracle_rows()` returns one dict per method for benchmarks/oracle.py;
run this file to print them as a table:

    OMP_NUM_THREADS=1 python benchmarks/oracle_distribution_matching.py [dmd2 f_distill ladd sid dmd2_fake_feat]
    OMP_NUM_THREADS=1 python benchmarks/oracle_distribution_matching.py dmd2 --seeds 0 1 2   # + median [min, max]
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _args import parse_method_args, seeded_methods_parser  # noqa: E402  (stdlib only: --help answers before torch loads)

METHODS = ("dmd2", "f_distill", "ladd", "sid", "dmd2_fake_feat")


def toy_config(name: str, max_iter: int | None = None, seed: int = 0):
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
    # bare training, but keep the EMA the config samples from (its absence would leave net_inference untrained)
    config.trainer.callbacks = {k: v for k, v in config.trainer.callbacks.items() if k == "ema"}
    config.trainer.logging_iter = 10**9
    config.trainer.seed = seed
    return config


def oracle_rows(methods=METHODS, seed: int = 0) -> list[dict]:
    """Train each method on ring8 (trainer.seed=seed); one dict {method, steps, swd, swd_init, mode_coverage,
    on_mode, seconds} per method."""
    from _oracle_common import measured_row

    rows = []
    with tempfile.TemporaryDirectory() as root:
        for name in methods:
            rows.append(measured_row(name, toy_config(name, seed=seed), os.path.join(root, name)))
    return rows


def main(argv=None) -> None:
    args = parse_method_args(seeded_methods_parser(__doc__, METHODS), METHODS, argv)
    from _oracle_common import quiet_logs, run_seeds

    quiet_logs()
    run_seeds(oracle_rows, args.methods, args.seeds)


if __name__ == "__main__":
    main()
