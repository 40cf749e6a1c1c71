"""LADD of Wan 2.1 T2V 1.3B into a 4-step generator: multiscale video discriminator heads on the teacher's blocks
15, 22 and 29, student lr 2e-6, discriminator lr 4e-6, R1 regularisation 0.1, a generator step every 2nd
iteration."""

from fastgen.configs.discriminator import Discriminator_Wan_1_3B_Multiscale_Config
from fastgen.configs.experiments.WanT2V._common import apply_wan, apply_wan_distill
from fastgen.configs.methods import config_ladd


def create_config():
    config = config_ladd.create_config()
    apply_wan(config, name="ladd")
    apply_wan_distill(config)
    config.model.discriminator = Discriminator_Wan_1_3B_Multiscale_Config
    config.model.net_optimizer.lr = 2e-6
    config.model.discriminator_optimizer.lr = 4e-6
    config.model.gan_r1_reg_weight = 0.1
    config.model.student_update_freq = 2
    return config
