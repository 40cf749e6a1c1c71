"""Settings shared by the CIFAR-10 / ImageNet-64 EDM experiments."""

from fastgen.configs.callbacks import EMA_CONST_CALLBACKS, EMA_POWER_CALLBACKS
from fastgen.utils import LazyCall as L
from fastgen.utils.env import ckpt_root_dir

# EDM's CIFAR-10 augmentation (9 augment labels), used with net.augment_dim = 9
EDM_AUGMENT_PIPE = L("fastgen.datasets.augment.AugmentPipe")(
    p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1
)


def cond_teacher_path() -> str:
    return f"{ckpt_root_dir()}/cifar10/edm-cifar10-32x32-cond-vp.pth"


def uncond_teacher_path() -> str:
    return f"{ckpt_root_dir()}/cifar10/edm-cifar10-32x32-uncond-vp.pth"


def in64_teacher_path() -> str:
    return f"{ckpt_root_dir()}/imagenet-64/edm-imagenet-64x64-cond-adm.pth"


def use_ema_set(config, ema_callbacks: dict) -> None:
    """Replace any EMA callbacks by `ema_callbacks` and make the model keep one EMA copy per callback."""
    for name in [k for k in config.trainer.callbacks if str(k).startswith("ema")]:
        del config.trainer.callbacks[name]
    config.trainer.callbacks.update(ema_callbacks)
    config.model.use_ema = list(ema_callbacks)


def use_const_emas(config) -> None:
    use_ema_set(config, EMA_CONST_CALLBACKS)


def use_power_emas(config) -> None:
    use_ema_set(config, EMA_POWER_CALLBACKS)
