"""Fast ECT on unconditional CIFAR-10: a fixed, already-tight pair ratio (1 - 1/256) from the first step, a short
8k-iteration run at global batch 128 and a faster EMA (beta 0.9993)."""

from fastgen.configs.experiments.EDM import config_cm_cifar10


def create_config():
    config = config_cm_cifar10.create_config()
    ct = config.trainer.callbacks.ct_schedule
    ct.q, ct.kimg_per_stage = 256.0, 512000  # one stage for the whole run: ratio = 1 - 1/256
    config.trainer.callbacks.ema.beta = 0.9993
    config.trainer.max_iter = 8000
    config.trainer.batch_size_global = 128
    config.dataloader_train.batch_size = 128
    config.log_config.name = "cm_cifar10_fast"
    return config
