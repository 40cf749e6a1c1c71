"""Settings shared by the Wan image-to-video experiments: Wan 2.1 I2V 14B 480P (CLIP image embeddings + first-frame
latents with a mask on the channels; latents [16, 21, 60, 104] at 480x832, 81 frames) and Wan 2.2 TI2V-5B (the
clean image latent in the first latent frame at time 0; [48, 21, 44, 80] at 704x1280, 81 frames).

The image condition is each training video's own first frame: the network builds it from the decoded pixels while
encoding the batch (`complete_batch`), so the data are the T2V mp4 + caption shards. Both sizes train under FSDP2
with meta init and bf16 weights."""

from fastgen.configs.experiments.WanT2V._common import (
    WAN22_INPUT_SHAPE,
    WAN22_SPATIAL,
    WAN_INPUT_SHAPE,
    apply_wan_14b_fsdp,
    apply_wan_family,
)
from fastgen.configs.net import (
    CausalWan21_I2V_14B_480P_Config,
    CausalWan22_I2V_5B_Config,
    Wan21_I2V_14B_480P_Config,
    Wan22_I2V_5B_Config,
)

# size -> (net config, latent shape, VAE spatial factor)
WAN_I2V_NETS = {
    "14b": (Wan21_I2V_14B_480P_Config, WAN_INPUT_SHAPE, 8),
    "wan22_5b": (Wan22_I2V_5B_Config, WAN22_INPUT_SHAPE, WAN22_SPATIAL),
}
# the causal students (chunks of 3 of the 21 latent frames, KV cache; the same weights as the nets above)
CAUSAL_WAN_I2V_NETS = {"14b": CausalWan21_I2V_14B_480P_Config, "wan22_5b": CausalWan22_I2V_5B_Config}


def apply_wan_i2v(config, name: str, size: str) -> None:
    """Wan I2V ("14b": 2.1 I2V 14B 480P, "wan22_5b": 2.2 TI2V-5B) from the hub, encoded on the fly, FSDP2."""
    net, shape, spatial = WAN_I2V_NETS[size]
    apply_wan_family(config, net, shape, spatial, "wan_i2v", name)
    apply_wan_14b_fsdp(config)


def apply_causal_wan_i2v(config, name: str, size: str) -> None:
    """apply_wan_i2v with the causal network of that size."""
    apply_wan_i2v(config, name, size)
    config.model.net = CAUSAL_WAN_I2V_NETS[size]
