"""MeanFlow from scratch on class-conditional ImageNet-256 latents with DiT-B/2 (Geng et al. 2025 recipe): bf16
autocast with the JVP in float32, 10% condition dropout for CFG, guidance mixture 0.5, logit-normal t (-0.4, 1.0),
a quarter of the batch with r != t, adaptive-weighted L2 loss, Adam 1e-4 betas (0.9, 0.95), 1.2M iterations of
global batch 1024."""

from fastgen.configs.experiments.DiT._common import apply_imagenet256
from fastgen.configs.methods import config_mean_flow
from fastgen.configs.net import DiT_IN256_B_Config


def apply_mean_flow_dit(config, net, name: str):
    """The MeanFlow DiT recipe on `net` (a DiT config); shared with config_mf_xl."""
    config.model.net = net
    net = config.model.net
    net.scale_t, net.r_timestep, net.time_cond_type = False, True, "diff"
    apply_imagenet256(config, name)
    config.model.precision_amp = "bfloat16"
    config.model.precision_amp_jvp = "float32"
    config.model.cond_dropout_prob = 0.1
    config.model.guidance_mixture_ratio = 0.5
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type, t_cfg.train_p_mean, t_cfg.train_p_std = "logitnormal", -0.4, 1.0
    t_cfg.min_t, t_cfg.max_t = 0.0, 1.0
    t_cfg.r_sample_ratio = 0.25
    loss = config.model.loss_config
    loss.loss_type, loss.norm_method, loss.norm_const = "l2", "poly_1.0", 1.0
    opt = config.model.net_optimizer
    opt.optim_type, opt.lr, opt.betas = "adam", 1e-4, [0.9, 0.95]
    config.trainer.max_iter = 1_200_000
    config.trainer.batch_size_global = 1024
    return config


def create_config():
    return apply_mean_flow_dit(config_mean_flow.create_config(), DiT_IN256_B_Config, name="mf_b")
