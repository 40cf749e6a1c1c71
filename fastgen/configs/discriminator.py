"""Discriminator configs (heads on teacher features, used by DMD2/f-distill/LADD GAN losses)."""

from fastgen.utils import LazyCall as L

_D = "fastgen.networks.discriminators"

Discriminator_EDM_CIFAR10_Config = L(f"{_D}.Discriminator_EDM")(
    feature_indices=[0, 1, 2], all_res=[32, 16, 8], in_channels=256
)
Discriminator_EDM_ImageNet64_Config = L(f"{_D}.Discriminator_EDM")(
    feature_indices=None, all_res=[64, 32, 16, 8], in_channels=768
)
# Stable Diffusion U-Nets: heads on down-block / mid-block features (default: the mid block), sized for the pixel
# resolution the experiment trains at (SD1.5 512 px; SDXL 512 or 1024 px)
Discriminator_SD15_Res512_Config = L(f"{_D}.Discriminator_SD15")(feature_indices=None, resolution=512)
Discriminator_SDXL_Res512_Config = L(f"{_D}.Discriminator_SDXL")(feature_indices=None, resolution=512)
Discriminator_SDXL_Res1024_Config = L(f"{_D}.Discriminator_SDXL")(feature_indices=None, resolution=1024)
Discriminator_ImageDiT_Flux_Config = L(f"{_D}.Discriminator_ImageDiT")(
    feature_indices=None, num_blocks=57, inner_dim=3072
)
Discriminator_ImageDiT_QwenImage_Config = L(f"{_D}.Discriminator_ImageDiT")(
    feature_indices=None, num_blocks=60, inner_dim=3072
)


_DV = "fastgen.networks.discriminators_video"


def _video(num_blocks: int, inner_dim: int, feature_indices=None, disc_type="conv3d_down_mlp_efficient"):
    return L(f"{_DV}.Discriminator_VideoDiT")(
        feature_indices=feature_indices, num_blocks=num_blocks, disc_type=disc_type, inner_dim=inner_dim
    )


# Per family: number of transformer blocks and the channel width of the features the teacher hands over
# ([B, inner_dim, T, H, W]; for Wan/CogVideoX the reference uses the transformer width / 4). Defaults as the
# reference's discriminator configs: the middle block, conv3d_down_mlp_efficient heads.
Discriminator_CogVideoX_2B_Config = _video(30, 1920 // 4)
Discriminator_CogVideoX_5B_Config = _video(42, 3072 // 4)
Discriminator_Wan_1_3B_Config = _video(30, 1536 // 4)
Discriminator_Wan_14B_Config = _video(40, 5120 // 4)
Discriminator_Wan22_5B_Config = _video(30, 3072 // 4)
Discriminator_CosmosPredict2_2B_Config = _video(28, 2048)
Discriminator_CosmosPredict2_14B_Config = _video(36, 5120)

# What the reference's video distillation experiments use: multiscale_down_mlp_large heads on three blocks at about
# 50 / 75 / 100 % depth. Indices from the reference experiments: Wan 1.3B [15, 22, 29], CogVideoX 5B [21, 31, 41],
# Cosmos 2B [13, 20, 27]; the others by the same rule [n // 2, 3n // 4, n - 1].
_LARGE = "multiscale_down_mlp_large"
Discriminator_CogVideoX_2B_Multiscale_Config = _video(30, 1920 // 4, [15, 22, 29], _LARGE)
Discriminator_CogVideoX_5B_Multiscale_Config = _video(42, 3072 // 4, [21, 31, 41], _LARGE)
Discriminator_Wan_1_3B_Multiscale_Config = _video(30, 1536 // 4, [15, 22, 29], _LARGE)
Discriminator_Wan_14B_Multiscale_Config = _video(40, 5120 // 4, [20, 30, 39], _LARGE)
Discriminator_Wan22_5B_Multiscale_Config = _video(30, 3072 // 4, [15, 22, 29], _LARGE)
Discriminator_CosmosPredict2_2B_Multiscale_Config = _video(28, 2048, [13, 20, 27], _LARGE)
Discriminator_CosmosPredict2_14B_Multiscale_Config = _video(36, 5120, [18, 27, 35], _LARGE)
