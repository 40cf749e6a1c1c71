"""TCM stage 2 on unconditional CIFAR-10.

Give the stage-1 CM checkpoint with `trainer.checkpointer.pretrained_ckpt_path=...` (its `net` initialises the
student, the boundary teacher and the EMA).
"""

from fastgen.configs.experiments.EDM._cifar10 import uncond_teacher_path
from fastgen.configs.methods import config_tcm


def create_config():
    config = config_tcm.create_config()
    config.model.pretrained_model_path = uncond_teacher_path()
    config.trainer.checkpointer.pretrained_ckpt_key_map = {"cm_teacher": "net", "net": "net", "ema": "net"}
    config.trainer.max_iter = 300000
    config.trainer.batch_size_global = 1024
    config.log_config.name = "tcm_cifar10"
    return config
