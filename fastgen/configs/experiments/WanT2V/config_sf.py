"""Self-Forcing of Wan 2.1 T2V 1.3B: the causal 4-step CausalWan student trained on its own autoregressive rollouts
(KV cache, gradient through one exit step per chunk) against the bidirectional teacher (CFG 5.0), DMD2 losses plus a
small GAN term (weight 0.003, multiscale video discriminator), lr 5e-6, 5k iterations; the student starts from a
causal KD checkpoint (`model.pretrained_student_net_path`)."""

from fastgen.configs.discriminator import Discriminator_Wan_1_3B_Multiscale_Config
from fastgen.configs.experiments.WanT2V._causal import apply_causal_wan_distill
from fastgen.configs.methods import config_self_forcing


def apply_wan_self_forcing(config, name: str, size: str = "1.3b",
                           discriminator=Discriminator_Wan_1_3B_Multiscale_Config):
    apply_causal_wan_distill(config, name, size)
    config.model.discriminator = discriminator
    config.model.gan_loss_weight_gen = 0.003
    config.model.net_optimizer.lr = 5e-6
    config.trainer.max_iter = 5000
    config.trainer.batch_size_global = 64
    return config


def create_config():
    return apply_wan_self_forcing(config_self_forcing.create_config(), name="sf")
