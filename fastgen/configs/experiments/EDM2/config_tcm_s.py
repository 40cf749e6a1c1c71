"""TCM stage 2 of EDM2-S on class-conditional ImageNet-64 (stage 1: EDM2/config_cm_s).

Give the stage-1 checkpoint with `trainer.checkpointer.pretrained_ckpt_path=...`; its `net` initialises the
student, the power EMAs and the frozen boundary model `cm_teacher`.
"""

from fastgen.configs.experiments.EDM2._common import apply_edm2
from fastgen.configs.methods import config_tcm


def create_config():
    config = config_tcm.create_config()
    apply_edm2(config, lr=5e-4, decay_steps=2000)
    config.model.net.dropout = 0.4
    config.model.loss_config.huber_const = 0.06
    config.model.loss_config.weighting_ct_loss = "c_out_sq"
    key_map = {"cm_teacher": "net", "net": "net"}
    key_map.update({name: "net" for name in config.model.use_ema})
    config.trainer.checkpointer.pretrained_ckpt_key_map = key_map
    ct = config.trainer.callbacks.ct_schedule
    ct.q, ct.ratio_limit = 4.0, 0.9961
    config.trainer.max_iter = 100000
    config.trainer.batch_size_global = 1024
    config.log_config.name = "tcm_s"
    return config
