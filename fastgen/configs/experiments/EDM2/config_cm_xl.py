"""ECT of EDM2-XL on class-conditional ImageNet-64 (the EDM2-S recipe with the XL net, dropout 0.5, lr 7e-4)."""

from fastgen.configs.experiments.EDM2 import config_cm_s
from fastgen.configs.experiments.EDM2._common import edm2_teacher_path
from fastgen.configs.net import EDM2_IN64_XL_Config


def create_config():
    config = config_cm_s.create_config()
    config.model.net = EDM2_IN64_XL_Config
    config.model.net.dropout = 0.5
    config.model.pretrained_model_path = edm2_teacher_path("xl")
    config.model.net_optimizer.lr = 7e-4
    config.log_config.name = "cm_xl"
    return config
