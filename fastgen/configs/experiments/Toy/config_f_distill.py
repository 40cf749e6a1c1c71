"""f-distill (Jensen-Shannon by default) of the exact Gaussian-mixture teacher into a 1-step ToyMLP on ring8.

    python train.py --config=fastgen/configs/experiments/Toy/config_f_distill.py - model.f_distill.f_div=kl

Same networks as Toy/config_dmd2.py; the discriminator's logits on generated samples give the density ratio whose
f-divergence weight h(r) scales each sample's VSD gradient.
"""

from fastgen.configs.experiments.Toy.config_dmd2 import (
    apply_toy_distribution_matching,
    apply_toy_score_distillation_budget,
    toy_teacher_discriminator,
)
from fastgen.configs.methods import config_f_distill
from fastgen.configs.net import Toy_MLP_Config


def create_config():
    config = config_f_distill.create_config()
    apply_toy_distribution_matching(config, name="f_distill_ring8", max_iter=400, student_update_freq=5,
                                    gan_loss_weight_gen=0.01)
    config.model.fake_score_net = Toy_MLP_Config
    config.model.discriminator = toy_teacher_discriminator()
    config.model.f_distill.f_div = "js"
    config.model.f_distill.ratio_ema_rate = 0.9
    apply_toy_score_distillation_budget(config)
    return config
