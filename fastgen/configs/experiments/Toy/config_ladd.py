"""LADD of the exact Gaussian-mixture teacher into a 1-step ToyMLP on ring8: the teacher is only the discriminator's
feature extractor (its one feature is cat([x_t, x0_pred])), so the student learns from the GAN loss alone.

    python train.py --config=fastgen/configs/experiments/Toy/config_ladd.py
"""

from fastgen.configs.experiments.Toy.config_dmd2 import apply_toy_distribution_matching, toy_teacher_discriminator
from fastgen.configs.methods import config_ladd


def create_config():
    config = config_ladd.create_config()
    apply_toy_distribution_matching(config, name="ladd_ring8", max_iter=600, student_update_freq=4,
                                    gan_loss_weight_gen=0.0)
    config.model.discriminator = toy_teacher_discriminator(hidden_dim=128)
    config.model.net_optimizer.lr = 5e-4
    config.model.discriminator_optimizer.lr = 3e-3  # the critic must keep up with the generator (3 steps per G step)
    config.model.gan_r1_reg_weight = 0.1
    config.model.gan_use_same_t_noise = True  # real and fake compared at the same (t, eps): lower-variance critic
    # LADD feeds the discriminator mostly low/medium noise levels, where the mixture's modes are still visible
    config.model.sample_t_cfg.train_p_mean, config.model.sample_t_cfg.train_p_std = -1.5, 1.0
    return config
