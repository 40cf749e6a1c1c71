"""Fine-tune the EDM ADM denoiser on class-conditional ImageNet-64 with DSM: the EDM recipe of the CIFAR-10 config
(without CIFAR's augmentation) in float16 autocast with a gradient scaler."""

from fastgen.configs.data import ImageNet64_Loader_Config
from fastgen.configs.experiments.EDM._cifar10 import in64_teacher_path
from fastgen.configs.experiments.EDM.config_sft_edm_cifar10 import apply_edm_sft
from fastgen.configs.methods import config_sft
from fastgen.configs.net import EDM_ImageNet64_Config


def create_config():
    config = apply_edm_sft(config_sft.create_config())
    config.model.net = EDM_ImageNet64_Config
    config.model.input_shape = [3, 64, 64]
    config.model.pretrained_model_path = in64_teacher_path()
    config.model.precision_amp = "float16"
    config.model.grad_scaler_enabled = True
    config.dataloader_train = ImageNet64_Loader_Config
    config.log_config.group = "imagenet64"
    config.log_config.name = "sft_edm_in64"
    return config
