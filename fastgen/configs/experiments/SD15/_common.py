"""Settings shared by the Stable Diffusion experiments (SD1.5 here; SDXL reuses the DMD2 recipe).

Data: `ImageLoaderConfig` (WebDataset shards of jpg + txt under $DATA_ROOT_DIR/wds/images) with the VAE and text
encoder running on the fly (`model.enable_preprocessors`), or latent/embedding shards with the encoders off.
"""

from fastgen.configs.data import ImageLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family
from fastgen.configs.net import SD15Config

SD15_INPUT_SHAPE = [4, 64, 64]  # 512 px through the VAE (factor 8)


def apply_sd15(config, name: str, img_size: int = 512) -> None:
    """SD1.5 teacher/student from the hub, pixel + caption shards encoded on the fly."""
    apply_pretrained_family(config, SD15Config, SD15_INPUT_SHAPE, ImageLoaderConfig, {"img_size": img_size}, "sd15", name)


def apply_sd_dmd2(config, lr: float, discriminator, gan_loss_weight_gen: float, guidance_scale: float) -> None:
    """The DMD2 recipe for the Stable Diffusion U-Nets (DMD2 / f-distill): bf16 autocast, `lr` for the student,
    fake score and discriminator, an x0-predicting fake score, a GAN on the teacher's features, teacher CFG, one
    generator step per 10 iterations, uniform t in [0.001, 0.999]."""
    config.model.precision_amp = "bfloat16"
    for name in ("net_optimizer", "fake_score_optimizer", "discriminator_optimizer"):
        getattr(config.model, name).lr = lr
    config.model.fake_score_pred_type = "x0"
    config.model.discriminator = discriminator
    config.model.gan_loss_weight_gen = gan_loss_weight_gen
    config.model.guidance_scale = guidance_scale
    config.model.student_update_freq = 10
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type, t_cfg.min_t, t_cfg.max_t = "uniform", 0.001, 0.999
