"""Settings shared by the CogVideoX experiments (480x720, 49 frames: VAE latents [16, 13, 60, 90], 8x spatial and
4x temporal compression; v prediction on the CogVideoX alpha-bar schedule, t in [0, 0.999])."""

from fastgen.configs.data import VideoLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family, video_loader_size
from fastgen.configs.net import CogVideoX5BConfig, CogVideoXConfig

COGVIDEOX_INPUT_SHAPE = [16, 13, 60, 90]


def apply_cogvideox(config, name: str, size: str = "2b") -> None:
    """CogVideoX (2B or 5B) from the hub, mp4 + caption shards encoded on the fly."""
    net = {"2b": CogVideoXConfig, "5b": CogVideoX5BConfig}[size]
    apply_pretrained_family(config, net, COGVIDEOX_INPUT_SHAPE, VideoLoaderConfig,
                            video_loader_size(COGVIDEOX_INPUT_SHAPE), "cogvideox", name)
    # CFG against the empty prompt, as the CogVideoX pipeline does without a negative prompt
    config.dataloader_train.presets = {"neg_condition": "empty_string"}
