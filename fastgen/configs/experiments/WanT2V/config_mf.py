"""MeanFlow distillation of Wan 2.1 T2V 1.3B (480p / 81 frames): the student is the teacher plus an r embedding
(a copy of its time embedder with a zero output projection, `r_embedder_init="zero"`, so it starts as the teacher
exactly); the velocity target is the teacher's with CFG 3.0; du/dt by central finite differences (eps 5e-3) in
float32 while the rest runs under bf16 autocast; tangent warm-up over 2000 iterations; a power EMA (`ema_1`); no
gradient clipping. A quarter of the batch has r != t (DiT MeanFlow recipe); sampling in 4 steps on the Wan t_list."""

from fastgen.configs.callbacks import EMA_POWER_CALLBACKS
from fastgen.configs.experiments.WanT2V._common import apply_wan, apply_wan_distill
from fastgen.configs.methods import config_mean_flow
from fastgen.configs.net import Wan_1_3B_Config


def create_config():
    config = config_mean_flow.create_config()
    apply_wan(config, name="mf")
    apply_wan_distill(config)
    config.model.teacher = Wan_1_3B_Config.copy()
    net = config.model.net
    net.r_timestep, net.r_embedder_init, net.time_cond_type = True, "zero", "abs"
    model = config.model
    model.guidance_scale = 3.0
    model.precision_amp = "bfloat16"
    model.precision_amp_jvp = "float32"
    model.sample_t_cfg.r_sample_ratio = 0.25
    loss = model.loss_config
    loss.use_cd = True
    loss.use_jvp_finite_diff = True
    loss.jvp_finite_diff_eps = 5e-3
    loss.tangent_warmup_steps = 2000
    callbacks = config.trainer.callbacks
    del callbacks["grad_clip"], callbacks["ema"]
    callbacks["ema_1"] = EMA_POWER_CALLBACKS["ema_1"]
    model.use_ema = ["ema_1"]
    return config
