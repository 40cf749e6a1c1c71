"""Settings shared by the causal (autoregressive) Wan 2.1 T2V experiments: a CausalWan student (block-causal
attention over chunks of 3 of the 21 latent frames, KV cache; the same weights as Wan) and, for the distillation
methods, the bidirectional Wan teacher with the student initialised from a causal KD checkpoint."""

from fastgen.configs.experiments.WanT2V._common import apply_wan, apply_wan_distill
from fastgen.configs.net import CausalWan_1_3B_Config, CausalWan_14B_Config, Wan21_T2V_14B_Config, Wan_1_3B_Config
from fastgen.utils.env import ckpt_root_dir

CAUSAL_NETS = {"1.3b": CausalWan_1_3B_Config, "14b": CausalWan_14B_Config}
TEACHERS = {"1.3b": Wan_1_3B_Config, "14b": Wan21_T2V_14B_Config}


def causal_kd_init_path(size: str = "1.3b") -> str:
    """Where the causal student's initial weights are expected: the `net` of a causal KD run on teacher ODE pairs (a
    fastgen checkpoint or a state dict, e.g. Self-Forcing's released `ode_init.pt`), under $CKPT_ROOT_DIR."""
    return f"{ckpt_root_dir()}/wan_t2v/causal_kd_{size.replace('.', '_')}/ode_init.pt"


def apply_causal_wan(config, name: str, size: str = "1.3b") -> None:
    """Wan 2.1 T2V data, latent shape and encoders (as the bidirectional experiments) with the causal student."""
    apply_wan(config, name, size)
    config.model.net = CAUSAL_NETS[size]


def apply_causal_wan_distill(config, name: str, size: str = "1.3b") -> None:
    """CausVid / Self-Forcing: causal student from the causal KD checkpoint, bidirectional teacher (and fake score,
    which takes the teacher's architecture), teacher CFG 5.0, the 4-step student t_list run per chunk."""
    apply_causal_wan(config, name, size)
    apply_wan_distill(config)
    config.model.teacher = TEACHERS[size]
    config.model.pretrained_student_net_path = causal_kd_init_path(size)
    config.model.guidance_scale = 5.0
