"""sCT (continuous-time consistency training in TrigFlow) of a small MLP on the 8-mode ring Gaussian mixture.

    python train.py --config=fastgen/configs/experiments/Toy/config_scm.py
    python train.py --config=fastgen/configs/experiments/Toy/config_scm.py - model.loss_config.use_cd=true

`use_cd=true` gives sCD from the exact Gaussian-mixture denoiser. The ToyMLP's `logvar_linear` head provides the
adaptive weighting; JVPs go through torch.func.jvp (`loss_config.use_jvp_finite_diff=true` for central differences).
"""

from fastgen.configs.experiments.Toy.config_cm import apply_toy_consistency_settings, use_trigflow_time
from fastgen.configs.methods import config_scm


def create_config():
    config = config_scm.create_config()
    apply_toy_consistency_settings(config, name="scm_ring8", max_iter=600)
    config.model.loss_config.tangent_warmup_steps = 100
    # a wider noise-level distribution than CIFAR-10's (std 1.4) reaches the sigma = 80 of 1-step sampling
    config.model.sample_t_cfg.train_p_std = 2.0
    config.trainer.callbacks.ema.beta = 0.95
    # the TrigFlow time input (see use_trigflow_time); its low-frequency features also keep the JVP in s smooth
    # (FourierTimeEmbedding in fastgen/networks/toy.py). Measured: fastgen/methods/consistency_model/README.md.
    use_trigflow_time(config)
    config.model.student_sample_steps = 1
    return config
