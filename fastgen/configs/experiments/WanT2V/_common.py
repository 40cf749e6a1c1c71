"""Settings shared by the Wan 2.1 text-to-video experiments (480p, 81 frames: VAE latents [16, 21, 60, 104], 8x
spatial and 4x temporal compression) and the 4-step distillation recipe."""

from fastgen.configs.data import VideoLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family, video_loader_size
from fastgen.configs.net import Wan21_T2V_14B_Config, Wan_1_3B_Config

WAN_INPUT_SHAPE = [16, 21, 60, 104]
# Student time lists (t = sigma on the rf schedule): 4 and 2 steps, high t first, ending at 0.
WAN_T_LIST_4 = [0.999, 0.937, 0.833, 0.624, 0.0]
WAN_T_LIST_2 = [0.999, 0.833, 0.0]


def apply_wan(config, name: str, size: str = "1.3b") -> None:
    """Wan 2.1 T2V (1.3B or 14B) from the hub, mp4 + caption shards encoded on the fly."""
    net = {"1.3b": Wan_1_3B_Config, "14b": Wan21_T2V_14B_Config}[size]
    apply_pretrained_family(config, net, WAN_INPUT_SHAPE, VideoLoaderConfig, video_loader_size(WAN_INPUT_SHAPE),
                            "wan_t2v", name)
    # training t from the shifted distribution (shift 5, the SampleTConfig default) the Wan teacher was trained on
    config.model.sample_t_cfg.time_dist_type = "shifted"


def apply_wan_distill(config, t_list=WAN_T_LIST_4) -> None:
    """The few-step student: deterministic (ode) sampling on a fixed time list."""
    config.model.student_sample_steps = len(t_list) - 1
    config.model.student_sample_type = "ode"
    config.model.sample_t_cfg.t_list = list(t_list)


def apply_wan_14b_fsdp(config) -> None:
    """14B parameters: FSDP2 with meta-device init (rank 0 loads, the others receive), bf16 weights with float32
    gradient reduction, each transformer block's activations recomputed in backward (inside its FSDP unit)."""
    config.trainer.fsdp = True
    config.model.activation_checkpointing = True
    config.model.fsdp_meta_init = True
    config.model.precision = "bfloat16"
    config.model.precision_fsdp = "float32"
