"""What every experiment on a pretrained diffusers family sets the same way: the network, the latent shape, the
encoders running on the fly over pixel/video + caption shards, the loader's size, and the run's group/name.

Families differ only in the values (and a few extras each `_common.py` adds after this call).
"""

from __future__ import annotations

from typing import Any


def video_loader_size(input_shape, spatial: int = 8) -> dict:
    """Pixel size for the video loader from a latent shape [C, T, H, W]: (width, height) = `spatial` x the latent (8;
    Wan 2.2 TI2V-5B's VAE: 16) and (T - 1) * 4 + 1 frames, the causal VAE's first frame being encoded alone."""
    _, t, h, w = input_shape
    return {"img_size": (w * spatial, h * spatial), "sequence_length": (t - 1) * 4 + 1}


def apply_pretrained_family(config, net, input_shape, loader, loader_fields: dict[str, Any], group: str,
                            name: str) -> None:
    """`net` from the hub with its encoders built (`enable_preprocessors`), `loader` (a WebDataset loader config)
    with `loader_fields` set, output under `group`/`name`."""
    config.model.net = net
    config.model.input_shape = list(input_shape)
    config.model.enable_preprocessors = True
    config.dataloader_train = loader
    for key, value in loader_fields.items():
        setattr(config.dataloader_train, key, value)
    config.log_config.group = group
    config.log_config.name = name
