"""Self-Forcing of Wan 2.1 VACE 1.3B (depth-controlled video-to-video): the WanT2V Self-Forcing recipe (4-step causal
student on its own autoregressive rollouts, DMD2 + GAN weight 0.003, lr 5e-6, 5k iterations) with the causal VACE
student (block-causal main and control branches) and the bidirectional VACE teacher (CFG 5.0, depth control as the
student, as in config_dmd2): teacher, student and fake score all see the control latents the student builds from the
depth of each batch video. The student starts from a causal KD checkpoint (`model.pretrained_student_net_path`)."""

from fastgen.configs.experiments.WanT2V.config_sf import apply_wan_self_forcing
from fastgen.configs.experiments.WanV2V._common import DEPTH_MODEL, apply_wan_v2v, causal_v2v_kd_init_path
from fastgen.configs.methods import config_self_forcing
from fastgen.configs.net import VACE_Wan_1_3B_Config


def create_config():
    config = apply_wan_self_forcing(config_self_forcing.create_config(), name="sf")
    apply_wan_v2v(config, name="sf", causal=True)  # the causal VACE student and the wan_v2v data / run group
    config.model.teacher = VACE_Wan_1_3B_Config
    config.model.teacher.control_type = "depth"
    config.model.teacher.depth_model_path = DEPTH_MODEL
    config.model.pretrained_student_net_path = causal_v2v_kd_init_path("1.3b")
    return config
