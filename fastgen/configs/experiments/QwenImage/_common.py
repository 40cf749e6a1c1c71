"""Settings shared by the Qwen-Image experiments (512 px: latents [16, 64, 64]; true CFG).

Data: the generic `ImageLoaderConfig` (jpg + txt shards). The reference's configs import a loader config that does
not exist (`HiDreamG5_JourneyDB_Loader_Config`); point `dataloader_train.datatags` at your shards instead.
"""

from fastgen.configs.data import ImageLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family
from fastgen.configs.net import QwenImageConfig

QWEN_IMAGE_INPUT_SHAPE = [16, 64, 64]


def apply_qwen_image(config, name: str) -> None:
    apply_pretrained_family(config, QwenImageConfig, QWEN_IMAGE_INPUT_SHAPE, ImageLoaderConfig, {"img_size": 512},
                            "qwen_image", name)


def apply_large_model_fsdp(config) -> None:
    """~20B parameters: FSDP2 with meta-device init (rank 0 loads, the others receive), bf16 weights with float32
    gradient reduction, parameters offloaded to CPU between uses."""
    config.trainer.fsdp = True
    config.trainer.fsdp_cpu_offload = True
    config.model.fsdp_meta_init = True
    config.model.precision = "bfloat16"
    config.model.precision_fsdp = "float32"
