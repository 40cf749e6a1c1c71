"""LADD 1-step student for Fashion-MNIST: trained by the GAN alone (no score-matching term), on real training images
against the student's samples, both re-noised and seen through the frozen shipped teacher's features
(`fashion_mnist_discriminator`: heads on its 32/16/8 levels). The student starts from the teacher.

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_ladd.py

One discriminator step per generator step, real and fake re-noised with the same (t, eps) (a lower-variance critic),
approximate R1 on the real features (weight 0.1), t from EDM's polynomial density as in config_dmd2.py, Adam beta1 = 0
(generator 5e-5, discriminator 2e-4). Not tuned (benchmarks/fashion_mnist_table.py measures it at equal CPU time).
"""

from fastgen.configs.experiments.FashionMNIST._common import (
    apply_distillation_settings,
    use_adam,
    use_discriminator,
)
from fastgen.configs.methods import config_ladd


def create_config():
    config = config_ladd.create_config()
    apply_distillation_settings(config, name="ladd_student")
    model = config.model
    use_discriminator(model)
    model.student_update_freq = 2
    model.gan_use_same_t_noise = True
    model.gan_r1_reg_weight = 0.1
    model.guidance_scale = None
    use_adam(model.net_optimizer, lr=5e-5)
    t_cfg = model.sample_t_cfg
    t_cfg.time_dist_type, t_cfg.min_t, t_cfg.max_t = "polynomial", 0.002, 80.0
    return config
