"""TCM stage 2 of EDM2-XL on class-conditional ImageNet-64 (the EDM2-S TCM recipe with the XL net, dropout 0.5,
lr 2.5e-4). Stage 1: EDM2/config_cm_xl, passed with `trainer.checkpointer.pretrained_ckpt_path=...`."""

from fastgen.configs.experiments.EDM2 import config_tcm_s
from fastgen.configs.experiments.EDM2._common import edm2_teacher_path
from fastgen.configs.net import EDM2_IN64_XL_Config


def create_config():
    config = config_tcm_s.create_config()
    config.model.net = EDM2_IN64_XL_Config
    config.model.net.dropout = 0.5
    config.model.pretrained_model_path = edm2_teacher_path("xl")
    config.model.net_optimizer.lr = 2.5e-4
    config.log_config.name = "tcm_xl"
    return config
