"""Settings shared by the Cosmos-Predict2 experiments (480p, 93 frames: Wan VAE latents [16, 24, 60, 104], 8x
spatial and 4x temporal compression; flow on rf with t <= 80 / 81, the pipelines' sigma_max) and the 4-step
distillation recipe of the Wan video configs."""

from fastgen.configs.data import VideoLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family, video_loader_size
from fastgen.configs.experiments.WanT2V._common import apply_wan_14b_fsdp, apply_wan_distill
from fastgen.configs.net import CosmosPredict2_2B_Config, CosmosPredict2_14B_Config

COSMOS_INPUT_SHAPE = [16, 24, 60, 104]
COSMOS_MAX_T = 80 / 81  # sigma_max 80 as t = sigma / (1 + sigma): the noisiest input the teacher was trained on
# 4 student steps: the Wan grid (shift 5 of 1, 3/4, 1/2, 1/4) started at Cosmos's largest t
COSMOS_T_LIST_4 = [COSMOS_MAX_T, 0.9375, 0.8333, 0.625, 0.0]


def apply_cosmos(config, name: str, size: str = "2b", video2world: bool = False) -> None:
    """Cosmos-Predict2 (2B or 14B Video2World checkpoint) from the hub, mp4 + caption shards encoded on the fly.
    video2world: the first latent frame of each training video is the clean condition (the network pins it, so its
    loss is zero); text2world: the whole video is generated."""
    net = {"2b": CosmosPredict2_2B_Config, "14b": CosmosPredict2_14B_Config}[size]
    apply_pretrained_family(config, net, COSMOS_INPUT_SHAPE, VideoLoaderConfig, video_loader_size(COSMOS_INPUT_SHAPE),
                            "cosmos_predict2", name)
    config.model.net.is_video2world = video2world
    config.model.net.num_conditioning_frames = 1
    config.dataloader_train.presets = {"neg_condition": "neg_prompt_cosmos"}
    # training t from the shifted distribution (shift 5) of the Wan video recipes; 37k video tokens a sample:
    # the transformer blocks recompute their activations in backward
    config.model.sample_t_cfg.time_dist_type = "shifted"
    config.model.activation_checkpointing = True
    if size == "14b":
        apply_wan_14b_fsdp(config)


def apply_cosmos_distill(config) -> None:
    """The 4-step deterministic (ode) student."""
    apply_wan_distill(config, t_list=COSMOS_T_LIST_4)
