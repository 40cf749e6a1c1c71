"""Self-Forcing: the toy causal student trained on its own AR rollouts (KV cache, gradient at one exit step per
chunk) against the exact AR(1) teacher (CPU, about a minute).

    python train.py --config=fastgen/configs/experiments/Toy/config_self_forcing.py

Same networks as Toy/config_causvid.py; the generator sample is the rollout from pure noise, the exit step drawn
on rank 0 and shared by all chunks (`same_step_across_blocks`), cached context at t = `context_noise`.
"""

from fastgen.configs.experiments.Toy.config_causvid import apply_toy_causal_dmd
from fastgen.configs.methods import config_self_forcing


def create_config():
    config = config_self_forcing.create_config()
    apply_toy_causal_dmd(config, name="self_forcing_ar1")
    config.model.use_ema = False
    config.trainer.callbacks.pop("ema", None)
    return config
