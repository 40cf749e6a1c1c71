"""Settings shared by the EDM2 ImageNet-64 experiments."""

from fastgen.configs.callbacks import EMA_POWER_CALLBACKS, ForcedWeightNorm_CALLBACK
from fastgen.configs.data import ImageNet64_EDMV2_Loader_Config
from fastgen.configs.net import EDM2_IN64_S_Config
from fastgen.configs.opt import InverseSquareRootSchedulerConfig
from fastgen.utils.env import ckpt_root_dir


def edm2_teacher_path(size: str) -> str:
    return f"{ckpt_root_dir()}/imagenet-64/edm2-img64-{size}-fid.pth"


def apply_edm2(config, lr: float, decay_steps: int) -> None:
    """EDM2-S net + data, forced weight normalisation, power EMAs, Adam with the inverse-sqrt schedule."""
    config.model.net = EDM2_IN64_S_Config
    config.model.input_shape = [3, 64, 64]
    config.model.pretrained_model_path = edm2_teacher_path("s")
    config.dataloader_train = ImageNet64_EDMV2_Loader_Config
    config.dataloader_train.use_labels = True
    callbacks = config.trainer.callbacks
    for name in [k for k in callbacks if str(k).startswith("ema")]:
        del callbacks[name]
    callbacks.update(ForcedWeightNorm_CALLBACK)
    callbacks.update(EMA_POWER_CALLBACKS)
    config.model.use_ema = list(EMA_POWER_CALLBACKS)
    opt = config.model.net_optimizer
    opt.optim_type, opt.lr, opt.betas, opt.weight_decay, opt.eps = "adam", lr, [0.9, 0.99], 0.0, 1e-8
    config.model.net_scheduler = InverseSquareRootSchedulerConfig
    config.model.net_scheduler.decay_steps = decay_steps
    config.log_config.group = "imagenet64_edm2"
