"""DMD2 of the exact Gaussian-mixture teacher into a 1-step ToyMLP generator on ring8 (under a minute on CPU).

    python train.py --config=fastgen/configs/experiments/Toy/config_dmd2.py
    python train.py --config=fastgen/configs/experiments/Toy/config_dmd2.py - model.gan_loss_weight_gen=0

The teacher is `GMMDenoiser` (E[x0 | x_t] in closed form, no weights), so the fake score gets its own ToyMLP
(`model.fake_score_net`). The discriminator heads read the teacher's only feature, cat([x_t, x0_pred]) of width 4;
with `model.gan_feature_source=fake_score` use `toy_fake_score_discriminator()` (the fake score's last hidden layer).
Quality: sliced Wasserstein distance of 1-step samples to the mixture (fastgen.utils.gmm).
"""

from fastgen.configs.callbacks import EMA_CALLBACK
from fastgen.configs.data import GaussianMixture_Loader_Config
from fastgen.configs.experiments.Toy.config_sft import apply_toy_settings
from fastgen.configs.methods import config_dmd2
from fastgen.configs.net import GMM_Oracle_Config, Toy_MLP_Config
from fastgen.utils import LazyCall as L

_DISC_MLP = "fastgen.networks.discriminators.Discriminator_MLP"


def toy_teacher_discriminator(hidden_dim: int = 64):
    """Heads on GMMDenoiser's feature 0 = cat([x_t, x0]) (width 2 * dim)."""
    return L(_DISC_MLP)(feature_indices=[0], in_dims=4, hidden_dim=hidden_dim, num_features=1)


def toy_fake_score_discriminator(num_layers: int = 3, width: int = 128, hidden_dim: int = 64):
    """Heads on the ToyMLP fake score's last hidden block (gan_feature_source="fake_score")."""
    return L(_DISC_MLP)(feature_indices=[num_layers - 1], in_dims=width, hidden_dim=hidden_dim,
                        num_features=num_layers)


def apply_toy_distribution_matching(config, name: str, max_iter: int, student_update_freq: int,
                                    gan_loss_weight_gen: float) -> None:
    """Ring8 data, ToyMLP student, exact teacher, ToyMLP fake score, MLP discriminator heads, Adam 1e-3 for all."""
    config.dataloader_train = GaussianMixture_Loader_Config
    apply_toy_settings(config, name=name, max_iter=max_iter)
    config.model.teacher = GMM_Oracle_Config
    config.model.student_update_freq = student_update_freq
    if hasattr(config.model, "gan_loss_weight_gen"):
        config.model.gan_loss_weight_gen = gan_loss_weight_gen
    config.trainer.save_ckpt_iter = max_iter
    config.trainer.validation_iter = max_iter
    for prefix in ("fake_score", "discriminator"):
        if hasattr(config.model, f"{prefix}_optimizer"):
            opt = getattr(config.model, f"{prefix}_optimizer")
            opt.optim_type, opt.lr, opt.weight_decay = "adam", 1e-3, 0.0
            getattr(config.model, f"{prefix}_scheduler").warm_up_steps = [0]
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type = "lognormal"
    t_cfg.train_p_mean, t_cfg.train_p_std = -0.5, 1.5


def apply_toy_score_distillation_budget(config, max_iter: int = 2000, ema_beta: float = 0.995) -> None:
    """Score-difference generators (DMD2, f-distill, SiD): `max_iter` iterations, sampled from an EMA of the generator.

    The generator's gradient is the difference of two score estimates (teacher minus fake score), so its
    signal-to-noise ratio is low: 400 iterations gave the generator only 80 updates (every mode placed, but ~5x
    wider than the data's), and at a constant learning rate the raw generator keeps random-walking around the
    solution (DMD2 seed 0, raw net: 2000 iterations 0.133, 4000 iterations 0.174). An EMA over ~200 iterations
    averages the walk out; measured on ring8 (benchmarks/results/oracle_image.md): 1-step SWD medians of 3 seeds
    DMD2 0.186 -> 0.121, with EMA 0.99 at 400 iterations still 0.19.
    """
    config.trainer.max_iter = config.trainer.save_ckpt_iter = config.trainer.validation_iter = max_iter
    config.model.use_ema = True
    config.trainer.callbacks.update(EMA_CALLBACK)
    config.trainer.callbacks.ema.beta = ema_beta


def create_config():
    config = config_dmd2.create_config()
    apply_toy_distribution_matching(config, name="dmd2_ring8", max_iter=400, student_update_freq=5,
                                    gan_loss_weight_gen=0.01)
    config.model.fake_score_net = Toy_MLP_Config
    config.model.discriminator = toy_teacher_discriminator()
    apply_toy_score_distillation_budget(config)
    return config
