"""CausVid: DMD2 of the bidirectional Wan 2.1 T2V 1.3B teacher into a causal 4-step CausalWan student (chunks of 3
latent frames, KV cache) at 480p / 81 frames. The student starts from a causal KD checkpoint
(`model.pretrained_student_net_path`, see _causal.causal_kd_init_path) and trains with diffusion forcing (per-chunk t
from the t_list); teacher CFG 5.0, no GAN term (as the paper), 6k iterations, global batch 64."""

from fastgen.configs.experiments.WanT2V._causal import apply_causal_wan_distill
from fastgen.configs.methods import config_causvid


def create_config():
    config = config_causvid.create_config()
    apply_causal_wan_distill(config, name="causvid")
    config.model.discriminator = None
    config.model.gan_loss_weight_gen = 0.0
    config.trainer.max_iter = 6000
    config.trainer.batch_size_global = 64
    return config
