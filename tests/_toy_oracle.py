"""Shared harness: train a toy config with the real Trainer against the exact ring8 teacher, measure the 1-step
student's sliced Wasserstein distance to the data before and after, and its mode coverage."""

import torch

from fastgen.trainer import Trainer
from fastgen.utils import instantiate
from fastgen.utils.gmm import make_gmm, mode_coverage, sliced_wasserstein


def train_and_measure(config, num_samples=2000):
    """Returns (model, swd_before, swd_after, coverage dict) for `config` (callbacks removed: bare training)."""
    config.trainer.callbacks = {}
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    noise = torch.randn(num_samples, 2, generator=torch.Generator().manual_seed(3))
    data, _ = make_gmm("ring8").sample(num_samples, torch.Generator().manual_seed(4))

    def swd():
        samples = model.generator_fn(model.net, noise)
        return sliced_wasserstein(samples, data, generator=torch.Generator().manual_seed(5))

    before = swd()
    Trainer(config).run(model)
    after = swd()
    coverage = mode_coverage(model.generator_fn(model.net, noise), make_gmm("ring8"))
    print(f"{type(model).__name__} toy 1-step sliced W2 {before:.4f} -> {after:.4f}, {coverage}")
    return model, before, after, coverage
