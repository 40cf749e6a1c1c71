"""Exact-oracle quality of the consistency-model family on the toy Gaussian mixture (ring8).

Each method is trained with the real Trainer on its Toy config (ToyMLP student; the exact GMMDenoiser teacher for the
distillation variants) and its 1-step samples are compared with the known data distribution:
sliced Wasserstein distance (before and after training) and mode coverage. `oracle_rows()` returns one dict per
method for benchmarks/oracle.py; run this file to print them as a table:

    OMP_NUM_THREADS=1 python benchmarks/oracle_consistency.py
    OMP_NUM_THREADS=1 python benchmarks/oracle_consistency.py scm scm_cd --seeds 0 1 2   # + median [min, max]
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _args import parse_method_args, seeded_methods_parser  # noqa: E402  (stdlib only: --help answers before torch loads)


def toy_config(method: str, use_cd: bool = False, max_iter: int | None = None, hidden_dim: int | None = None,
               stage1_ckpt: str | None = None, seed: int = 0):
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
    config.trainer.seed = seed
    return config


def checkpoint_path(config) -> str:
    return os.path.join(config.log_config.save_path, "checkpoints", f"{config.trainer.max_iter:07d}.pth")


METHODS = ("cm", "cm_cd", "scm", "scm_cd", "tcm", "mean_flow", "mean_flow_cd")


def oracle_rows(methods=METHODS, seed: int = 0) -> list[dict]:
    """Train each method on ring8 (trainer.seed=seed) and report {method, steps, swd, swd_init, mode_coverage,
    seconds}."""
    from _oracle_common import measured_row, train

    rows = []
    with tempfile.TemporaryDirectory() as root:
        stage1 = None
        for name in methods:
            method, use_cd = (name[:-3], True) if name.endswith("_cd") else (name, False)
            if method == "tcm" and stage1 is None:
                cm_config = toy_config("cm", seed=seed)
                train(cm_config, os.path.join(root, "stage1"))
                stage1 = checkpoint_path(cm_config)
            config = toy_config(method, use_cd=use_cd, stage1_ckpt=stage1 if method == "tcm" else None, seed=seed)
            rows.append(measured_row(name, config, os.path.join(root, name)))
    return rows


def main(argv=None) -> None:
    args = parse_method_args(seeded_methods_parser(__doc__, METHODS), METHODS, argv)
    from _oracle_common import quiet_logs, run_seeds

    quiet_logs()
    run_seeds(oracle_rows, args.methods, args.seeds, name_width=14)


if __name__ == "__main__":
    main()
