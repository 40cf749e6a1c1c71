"""Settings shared by the Fashion-MNIST demo experiments (teacher SFT and the DMD2 student).

The network is a small class-conditional EDM SongUNet (DDPM++ layout, ~0.71M parameters) at 32x32x1: 16 channels
at 32x32, 32 at 16x16, 64 at 8x8, one residual block per level. It is sized for FLOPs rather than parameters: on a
2-core CPU the 32x32 level dominates the cost, so it stays thin.
"""

import os

from fastgen.configs.callbacks import WANDB_CALLBACK, GradClip_CALLBACK, ParamCount_CALLBACK
from fastgen.configs.methods.common import callbacks_from
from fastgen.utils import LazyCall as L

NUM_CLASSES = 10
INPUT_SHAPE = [1, 32, 32]
# the shipped teacher (trained by scripts/train_demo_teacher.sh through train.py; see fastgen/assets/teachers/)
TEACHER_WEIGHTS_NAME = "fashion_mnist_edm_teacher.safetensors"
# the teacher's discriminator features (EDMPrecond: encoder output after the last block of each resolution level):
# feature i has FEATURE_CHANNELS[i] channels at FEATURE_RESOLUTIONS[i]^2 (model_channels 16 x channel_mult [1, 2, 4])
FEATURE_RESOLUTIONS = [32, 16, 8]
FEATURE_CHANNELS = [16, 32, 64]


def shipped_teacher_path() -> str:
    """Absolute path of the teacher weights shipped in fastgen/assets/teachers/."""
    import fastgen

    return os.path.join(os.path.dirname(os.path.abspath(fastgen.__file__)), "assets", "teachers", TEACHER_WEIGHTS_NAME)


def fashion_mnist_net():
    """Class-conditional EDMPrecond(SongUNet) for 1x32x32 Fashion-MNIST (~0.71M parameters)."""
    return L("fastgen.networks.EDM.network.EDMPrecond")(
        img_resolution=32, img_channels=1, label_dim=NUM_CLASSES, sigma_data=0.5, model_type="SongUNet",
        augment_dim=0, model_channels=16, channel_mult=[1, 2, 4], channel_mult_emb=4, channel_mult_noise=1,
        num_blocks=1, attn_resolutions=[], embedding_type="positional", encoder_type="standard",
        decoder_type="standard", resample_filter=[1, 1], dropout=0.0, label_dropout=0.0, r_timestep=False,
    )


def fashion_mnist_loader(batch_size: int = 64, split: str = "train"):
    """Fashion-MNIST 28x28 padded to 32x32 in [-1, 1] with one-hot labels.

    root=None: $DATA_ROOT_DIR/fashion_mnist, then Debian's /usr/share/datasets/fashion-mnist; otherwise the error
    says how to get it (`apt-get install dataset-fashion-mnist` or `python scripts/download_data.py`).
    """
    return L("fastgen.datasets.idx_loader.FashionMNISTLoader")(
        root=None, split=split, batch_size=batch_size, resolution=32, use_labels=True, seed=0,
        sampler_start_idx=None, max_size=None,
    )


def fashion_mnist_discriminator(feature_indices=(0, 1, 2)):
    """GAN heads on the 16/32/64-channel feature levels (32x32, 16x16, 8x8) of the teacher's architecture, i.e. of
    the frozen teacher (f-distill, LADD) or of DMD2's fake score (same network): one EDM conv head per level, each
    keeping its feature's width, strided 4x4 convs down to 4x4, then one logit (~0.2M parameters for the three heads,
    mostly the 64-channel one; 0.13M for the 8x8 one alone). Features come from the encoder alone
    (`return_features_early`), so a GAN pass costs about half a network pass per sample."""
    return L("fastgen.networks.discriminators.Discriminator_EDM")(
        feature_indices=list(feature_indices), all_res=list(FEATURE_RESOLUTIONS), in_channels=list(FEATURE_CHANNELS),
    )


def use_discriminator(model, feature_indices=(0, 1, 2), lr: float = 2e-4) -> None:
    """`model.discriminator` = `fashion_mnist_discriminator(feature_indices)`, trained by Adam (beta1 = 0) at `lr`
    without warm-up (what every Fashion-MNIST GAN config shares)."""
    model.discriminator = fashion_mnist_discriminator(feature_indices)
    use_adam(model.discriminator_optimizer, lr=lr)
    model.discriminator_scheduler.warm_up_steps = [0]


def use_adam(optimizer, lr: float, betas=(0.0, 0.99)) -> None:
    """Adam without weight decay (beta1 = 0 by default, as the alternating distribution-matching configs use)."""
    optimizer.optim_type, optimizer.weight_decay, optimizer.betas, optimizer.lr = "adam", 0.0, list(betas), lr


def power_ema(gamma: float = 6.94, name: str = "ema"):
    """One EDM2 power-function EMA (gamma 6.94 ~ sigma_rel 0.10): its averaging window scales with the run length,
    so the same config is right for a 300-iteration smoke run and a 6000-iteration teacher."""
    return {name: L("fastgen.callbacks.ema.EMACallback")(type="power", gamma=gamma, ema_name=name)}


def apply_demo_settings(config, name: str, batch_size: int = 64) -> None:
    """CPU-friendly run settings: device auto, grad clipping, parameter count, W&B off, frequent logs/checkpoints."""
    config.model.net = fashion_mnist_net()
    config.model.input_shape = list(INPUT_SHAPE)
    config.model.device = "auto"
    config.dataloader_train = fashion_mnist_loader(batch_size)
    config.trainer.callbacks = callbacks_from(GradClip_CALLBACK, ParamCount_CALLBACK, WANDB_CALLBACK)
    config.trainer.callbacks.grad_clip.grad_norm = 10.0
    config.trainer.logging_iter = 50
    config.trainer.save_ckpt_iter = 250
    config.trainer.validation_iter = 1000000
    config.trainer.tf32_enabled = False
    config.log_config.project = "fastgen"
    config.log_config.group = "fashion_mnist"
    config.log_config.name = name
    config.log_config.wandb_mode = "disabled"


def apply_distillation_settings(config, name: str, batch_size: int = 32, max_iter: int = 1800) -> None:
    """What every Fashion-MNIST student config shares: the demo settings, the shipped teacher as
    `pretrained_model_path` (student initialised from it), a power EMA used at inference, Adam without weight decay
    or warm-up. Method-specific settings come after; they are starting points, not tuned like config_dmd2.py."""
    apply_demo_settings(config, name=name, batch_size=batch_size)
    model = config.model
    model.pretrained_model_path = shipped_teacher_path()
    model.student_sample_steps = 1
    model.net_optimizer.optim_type = "adam"
    model.net_optimizer.weight_decay = 0.0
    model.net_scheduler.warm_up_steps = [0]
    config.trainer.callbacks.update(power_ema())
    model.use_ema = ["ema"]
    config.trainer.max_iter = max_iter
    config.trainer.save_ckpt_iter = 300
