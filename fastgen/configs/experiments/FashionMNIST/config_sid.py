"""SiD (score identity distillation) 1-step student for Fashion-MNIST: generator and fake score start from the
shipped SFT teacher; no GAN. Same optimiser/time-distribution choices as config_dmd2.py.

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_sid.py

Not tuned (benchmarks/fashion_mnist_table.py measures it at equal CPU time with the other methods).
"""

from fastgen.configs.experiments.FashionMNIST._common import apply_distillation_settings, use_adam
from fastgen.configs.methods import config_sid


def create_config():
    config = config_sid.create_config()
    apply_distillation_settings(config, name="sid_student")
    model = config.model
    model.discriminator = None
    model.gan_loss_weight_gen = 0.0
    model.student_update_freq = 2
    model.student_sample_type = "sde"
    model.guidance_scale = None
    use_adam(model.net_optimizer, lr=2e-5)
    use_adam(model.fake_score_optimizer, lr=2e-4)
    model.fake_score_scheduler.warm_up_steps = [0]
    t_cfg = model.sample_t_cfg
    t_cfg.time_dist_type, t_cfg.min_t, t_cfg.max_t = "polynomial", 0.002, 80.0
    return config
