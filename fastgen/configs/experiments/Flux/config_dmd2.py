"""DMD2 of FLUX.1-dev into a 4-step generator: bf16 weights, ImageDiT discriminator heads on the middle transformer
block (GAN weight 0.03, the same t and noise for the GAN and the distribution-matching terms), an x0-predicting fake
score, 2 samples per GPU."""

from fastgen.configs.discriminator import Discriminator_ImageDiT_Flux_Config
from fastgen.configs.experiments.Flux._common import apply_flux
from fastgen.configs.methods import config_dmd2


def create_config():
    config = config_dmd2.create_config()
    apply_flux(config, name="dmd2")
    config.model.precision = "bfloat16"
    config.model.discriminator = Discriminator_ImageDiT_Flux_Config
    config.model.gan_loss_weight_gen = 0.03
    config.model.gan_use_same_t_noise = True
    config.model.fake_score_pred_type = "x0"
    config.model.net.guidance_scale = 3.5
    config.model.student_sample_steps = 4
    config.dataloader_train.batch_size = 2
    return config
