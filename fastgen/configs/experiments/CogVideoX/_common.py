"""Settings shared by the CogVideoX experiments (480x720, 49 frames: VAE latents [16, 13, 60, 90], 8x spatial and
4x temporal compression; v prediction on the CogVideoX alpha-bar schedule, t in [0, 0.999])."""

from fastgen.configs.data import VideoLoaderConfig
from fastgen.configs.experiments.WanT2V._common import video_loader_size
from fastgen.configs.net import CogVideoX5BConfig, CogVideoXConfig

COGVIDEOX_INPUT_SHAPE = [16, 13, 60, 90]


def apply_cogvideox(config, name: str, size: str = "2b") -> None:
    """CogVideoX (2B or 5B) from the hub, mp4 + caption shards encoded on the fly."""
    config.model.net = {"2b": CogVideoXConfig, "5b": CogVideoX5BConfig}[size]
    config.model.input_shape = list(COGVIDEOX_INPUT_SHAPE)
    config.model.enable_preprocessors = True
    config.dataloader_train = VideoLoaderConfig
    for key, value in video_loader_size(COGVIDEOX_INPUT_SHAPE).items():
        setattr(config.dataloader_train, key, value)
    # CFG against the empty prompt, as the CogVideoX pipeline does without a negative prompt
    config.dataloader_train.presets = {"neg_condition": "empty_string"}
    config.log_config.group = "cogvideox"
    config.log_config.name = name
