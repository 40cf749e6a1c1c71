"""Defaults shared by the method configs' create_config()."""

import copy

from omegaconf import DictConfig

from fastgen.configs.callbacks import STANDARD_CALLBACKS


def callbacks_from(*sets: dict) -> DictConfig:
    """A fresh DictConfig of callbacks merged from the given named sets (later sets win)."""
    merged: dict = {}
    for callback_set in sets:
        merged.update(copy.deepcopy(callback_set))
    return DictConfig(merged, flags={"allow_objects": True})


def apply_standard_training(config, batch_size: int = 256) -> None:
    """Standard callbacks, per-GPU batch size, and no LR warm-up (constant schedule) for every scheduler."""
    config.trainer.callbacks = callbacks_from(STANDARD_CALLBACKS)
    config.dataloader_train.batch_size = batch_size
    for name in ("net_scheduler", "fake_score_scheduler", "discriminator_scheduler"):
        scheduler = getattr(config.model, name, None)
        if scheduler is not None:
            scheduler.warm_up_steps = [0]


def make_unconditional(config) -> None:
    """Unconditional training: no class labels in the net or the data."""
    config.model.net.label_dim = 0
    config.dataloader_train.use_labels = False
