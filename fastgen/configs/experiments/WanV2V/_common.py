"""Settings shared by the Wan 2.1 VACE video-to-video experiments with depth control (480p, 81 frames: latents
[16, 21, 60, 104], as WanT2V): each training video is reconstructed from its own per-frame depth maps, which the
frozen Depth-Anything-V2 model computes on the fly from the batch's `real` video (mp4 + caption shards, encoded on
the fly like WanT2V's)."""

from fastgen.configs.data import VideoLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family, video_loader_size
from fastgen.configs.experiments.WanT2V._common import WAN_INPUT_SHAPE
from fastgen.configs.net import (
    CausalVACE_Wan_1_3B_Config,
    CausalVACE_Wan_14B_Config,
    VACE_Wan_1_3B_Config,
    VACE_Wan_14B_Config,
)
from fastgen.utils.env import ckpt_root_dir

# the transformers port of the reference's annotator (Depth-Anything-V2 ViT-L); a local folder works too
DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Large-hf"


NETS = {"1.3b": VACE_Wan_1_3B_Config, "14b": VACE_Wan_14B_Config}
# the causal students (chunks of 3 of the 21 latent frames, block-causal control branch, KV cache; same weights)
CAUSAL_NETS = {"1.3b": CausalVACE_Wan_1_3B_Config, "14b": CausalVACE_Wan_14B_Config}


def apply_wan_v2v(config, name: str, size: str = "1.3b", causal: bool = False) -> None:
    """Wan 2.1 VACE (1.3B or 14B; causal: its causal variant) from the hub with depth control, mp4 + caption shards
    encoded on the fly."""
    net = (CAUSAL_NETS if causal else NETS)[size]
    apply_pretrained_family(config, net, WAN_INPUT_SHAPE, VideoLoaderConfig, video_loader_size(WAN_INPUT_SHAPE),
                            "wan_v2v", name)
    config.model.net.control_type = "depth"
    config.model.net.depth_model_path = DEPTH_MODEL
    # training t from the shifted distribution (shift 5) the Wan teacher was trained on
    config.model.sample_t_cfg.time_dist_type = "shifted"


def causal_v2v_kd_init_path(size: str = "1.3b") -> str:
    """Where a causal VACE student's initial weights are expected (the `net` of a causal KD run, or a state dict),
    under $CKPT_ROOT_DIR."""
    return f"{ckpt_root_dir()}/wan_v2v/causal_kd_{size.replace('.', '_')}/ode_init.pt"
