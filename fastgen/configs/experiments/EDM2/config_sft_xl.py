"""Fine-tune EDM2-XL on ImageNet-64 with DSM: the EDM2-S recipe with the XL net and the EDM2 paper's XL values for
ImageNet-64 (lr 7e-3, dropout 0.1)."""

from fastgen.configs.experiments.EDM2 import config_sft_s
from fastgen.configs.experiments.EDM2._common import edm2_teacher_path
from fastgen.configs.net import EDM2_IN64_XL_Config


def create_config():
    config = config_sft_s.create_config()
    config.model.net = EDM2_IN64_XL_Config
    config.model.net.dropout = 0.1
    config.model.pretrained_model_path = edm2_teacher_path("xl")
    config.model.net_optimizer.lr = 7e-3
    config.log_config.name = "sft_xl"
    return config
