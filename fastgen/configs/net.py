"""Network configs (LazyCalls by dotted path: loading a config imports no network code).

CKPT_ROOT_DIR is $CKPT_ROOT_DIR, default $FASTGEN_OUTPUT_ROOT/MODEL (read when this module is imported; experiment
configs call `fastgen.utils.env.ckpt_root_dir()` to read it afresh).
"""

import copy

from fastgen.utils import LazyCall as L
from fastgen.utils.env import ckpt_root_dir

CKPT_ROOT_DIR = ckpt_root_dir()

_EDM = "fastgen.networks.EDM.network.EDMPrecond"
_EDM2 = "fastgen.networks.EDM2.network.EDM2Precond"
_DIT = "fastgen.networks.DiT.network.DiT"

# EDM DDPM++ (SongUNet), class-conditional CIFAR-10
EDM_CIFAR10_Config = L(_EDM)(
    img_resolution=32, img_channels=3, label_dim=10, sigma_data=0.5, model_type="SongUNet", augment_dim=9,
    model_channels=128, channel_mult=[2, 2, 2], channel_mult_noise=1, embedding_type="positional",
    encoder_type="standard", decoder_type="standard", resample_filter=[1, 1], dropout=0.0, label_dropout=0.0,
    r_timestep=False,
)
# EDM ADM (DhariwalUNet), class-conditional ImageNet-64
EDM_ImageNet64_Config = L(_EDM)(
    img_resolution=64, img_channels=3, label_dim=1000, sigma_data=0.5, model_type="DhariwalUNet", augment_dim=0,
    model_channels=192, channel_mult=[1, 2, 3, 4], channel_mult_emb=4, num_blocks=3, attn_resolutions=[32, 16, 8],
    dropout=0.0, label_dropout=0.0, r_timestep=False,
)


def _edm2(model_channels: int):
    return L(_EDM2)(
        img_resolution=64, img_channels=3, label_dim=1000, sigma_data=0.5, logvar_channels=128,
        model_channels=model_channels, channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[16, 8],
        label_balance=0.5, concat_balance=0.5, dropout=0.0,
    )


EDM2_IN64_S_Config = _edm2(192)
EDM2_IN64_M_Config = _edm2(256)
EDM2_IN64_L_Config = _edm2(320)
EDM2_IN64_XL_Config = _edm2(384)


def _dit(hidden_size: int, depth: int, num_heads: int):
    return L(_DIT)(
        input_size=32, patch_size=2, in_channels=4, hidden_size=hidden_size, depth=depth, num_heads=num_heads,
        class_dropout_prob=0.1, enable_class_dropout=False, num_classes=1000, learn_sigma=False, scale_t=True,
    )


DiT_IN256_S_Config = _dit(384, 12, 6)
DiT_IN256_B_Config = _dit(768, 12, 12)
DiT_IN256_L_Config = _dit(1024, 24, 16)
DiT_IN256_XL_Config = _dit(1152, 28, 16)

# toy 2-D problems: a small MLP student and the exact Gaussian-mixture denoiser (a perfect teacher)
Toy_MLP_Config = L("fastgen.networks.toy.ToyMLP")(
    dim=2, hidden_dim=128, num_layers=3, label_dim=0, net_pred_type="x0", schedule_type="edm"
)
GMM_Oracle_Config = L("fastgen.networks.toy.GMMDenoiser")(gmm_name="ring8", dim=2, schedule_type="edm")

# Large text-to-image families (diffusers-backed; fastgen/networks/hf). model_id: hub id or local folder.
_HF = "fastgen.networks.hf."
SD15Config = L(_HF + "SD15")(
    model_id="runwayml/stable-diffusion-v1-5", load_pretrained=True, net_pred_type="eps", schedule_type="sd"
)
SDXLConfig = L(_HF + "SDXL")(
    model_id="stabilityai/stable-diffusion-xl-base-1.0", load_pretrained=True, net_pred_type="eps",
    schedule_type="sdxl",
)
# guidance_scale: FLUX.1-dev's distilled guidance (an input of the transformer, not CFG)
FluxConfig = L(_HF + "Flux")(
    model_id="black-forest-labs/FLUX.1-dev", load_pretrained=True, net_pred_type="flow", schedule_type="rf",
    guidance_scale=3.5,
)
QwenImageConfig = L(_HF + "QwenImage")(
    model_id="Qwen/Qwen-Image", load_pretrained=True, net_pred_type="flow", schedule_type="rf"
)

# Video families (diffusers-backed; latents [B, C, T, H, W]). Wan 2.1 T2V: flow on rf, timestep = 1000 sigma.
Wan_1_3B_Config = L(_HF + "Wan")(
    model_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", load_pretrained=True, net_pred_type="flow", schedule_type="rf"
)
# Wan 2.2 TI2V-5B: 48-channel VAE (16x spatial, its config says), one timestep per video token (expand_timesteps)
Wan22_T2V_5B_Config = L(_HF + "Wan")(
    model_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers", load_pretrained=True, net_pred_type="flow", schedule_type="rf",
    expand_timesteps=True,
)
Wan21_T2V_14B_Config = L(_HF + "Wan")(
    model_id="Wan-AI/Wan2.1-T2V-14B-Diffusers", load_pretrained=True, net_pred_type="flow", schedule_type="rf"
)
# Wan 2.1 I2V: + CLIP image encoder; condition keys prompt_embeds, image_embeds, first_frame_cond
Wan21_I2V_14B_480P_Config = L(_HF + "WanI2V")(
    model_id="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", load_pretrained=True, net_pred_type="flow", schedule_type="rf"
)
Wan21_I2V_14B_720P_Config = L(_HF + "WanI2V")(
    model_id="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", load_pretrained=True, net_pred_type="flow", schedule_type="rf"
)
# Wan 2.2 TI2V-5B image-to-video: no CLIP encoder; the clean image latent replaces the first latent frame, whose
# tokens get time 0 (condition keys prompt_embeds, first_frame_cond = the image latent [B, 48, 1, h, w])
Wan22_I2V_5B_Config = L(_HF + "Wan22I2V")(
    model_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers", load_pretrained=True, net_pred_type="flow", schedule_type="rf",
    expand_timesteps=True,
)
# Wan 2.1 VACE (video-to-video): condition keys prompt_embeds, control_hidden_states (control video + mask latents).
# control_type "video" takes the control video as given; "depth" computes it with the Depth-Anything model at
# depth_model_path (a hub id or local folder; None: depth-anything/Depth-Anything-V2-Large-hf)
VACE_Wan_1_3B_Config = L(_HF + "VACEWan")(
    model_id="Wan-AI/Wan2.1-VACE-1.3B-diffusers", load_pretrained=True, net_pred_type="flow", schedule_type="rf",
    context_scale=1.0, control_type="video", depth_model_path=None,
)
VACE_Wan_14B_Config = L(_HF + "VACEWan")(
    model_id="Wan-AI/Wan2.1-VACE-14B-diffusers", load_pretrained=True, net_pred_type="flow", schedule_type="rf",
    context_scale=1.0, control_type="video", depth_model_path=None,
)
# CogVideoX: v on the cogvideox schedule (its SNR shift read from the model's scheduler config: 3.0 for 2B, 1.0 for
# 5B); latents [B, C, T, H, W] (the adapter permutes to the transformer's frames-first layout)
CogVideoXConfig = L(_HF + "CogVideoX")(
    model_id="THUDM/CogVideoX-2b", load_pretrained=True, net_pred_type="v", schedule_type="cogvideox"
)
CogVideoX5BConfig = L(_HF + "CogVideoX")(
    model_id="THUDM/CogVideoX-5b", load_pretrained=True, net_pred_type="v", schedule_type="cogvideox"
)


def _causal(bidirectional, cls_name: str, chunk_size: int = 3, total_num_frames: int = 21):
    """The causal student of a Wan-family net config: the same fields (hub id, weights: a bidirectional checkpoint
    loads as is) under the causal class, plus the chunking (chunks of 3 of the 21 latent frames, as the reference)."""
    config = copy.deepcopy(bidirectional)
    config._target_ = _HF + cls_name
    config.chunk_size, config.total_num_frames = chunk_size, total_num_frames
    return config


# Causal Wan 2.1 T2V (autoregressive students): block-causal attention over chunks of latent frames, KV cache;
# max_cache_frames=None keeps every frame (set it to extrapolate past 21).
CausalWan_1_3B_Config = _causal(Wan_1_3B_Config, "CausalWan")
CausalWan_14B_Config = _causal(Wan21_T2V_14B_Config, "CausalWan")
# Causal image-to-video: in an autoregressive rollout the first chunk holds the image frame (2.2) / each chunk takes
# its frames of the first-frame condition (2.1)
CausalWan22_I2V_5B_Config = _causal(Wan22_I2V_5B_Config, "CausalWan22I2V")
CausalWan21_I2V_14B_480P_Config = _causal(Wan21_I2V_14B_480P_Config, "CausalWanI2V")
CausalWan21_I2V_14B_720P_Config = _causal(Wan21_I2V_14B_720P_Config, "CausalWanI2V")
# Causal VACE: the control branch is block-causal too (chunk k never sees later control frames)
CausalVACE_Wan_1_3B_Config = _causal(VACE_Wan_1_3B_Config, "CausalVACEWan")
CausalVACE_Wan_14B_Config = _causal(VACE_Wan_14B_Config, "CausalVACEWan")

# Toy video nets for the causal methods (videos [B, dim, T, 1, 1]; fastgen/networks/toy_causal.py): the block-causal
# student with a KV cache (rolling window of 6 frames), its bidirectional twin (fake score) and the exact AR(1) teacher
Toy_Causal_Video_Config = L("fastgen.networks.toy_causal.ToyCausalVideoNet")(
    dim=4, hidden_dim=64, num_layers=2, num_heads=4, chunk_size=2, total_num_frames=8, max_cache_frames=6,
    net_pred_type="x0", schedule_type="rf",
)
Toy_Video_Config = L("fastgen.networks.toy_causal.ToyVideoNet")(
    dim=4, hidden_dim=64, num_layers=2, num_heads=4, net_pred_type="x0", schedule_type="rf",
)
AR1_Oracle_Config = L("fastgen.networks.toy_causal.AR1VideoDenoiser")(dim=4, a=0.9, schedule_type="rf")
# DMD fake score for the exact AR(1) teacher: the exact denoiser plus a trainable zero-initialised residual
AR1_Fake_Score_Config = L("fastgen.networks.toy_causal.AR1ResidualVideoNet")(
    a=0.9, dim=4, hidden_dim=64, num_layers=2, num_heads=4, net_pred_type="x0", schedule_type="rf",
)
# Cosmos-Predict2 (Video2World checkpoints; fastgen/networks/hf/cosmos.py): flow on rf with timestep t = s / (1 + s)
# of the pipelines' EDM sigma s (t <= 80 / 81); is_video2world conditions on the first num_conditioning_frames
# latent frames (text2world: none); fps scales the rotary time positions (the model's base is 24). The reference's
# _Aggressive variants (its own selective activation checkpointing) have no counterpart here: model-level
# `activation_checkpointing` checkpoints the transformer blocks of any network.
CosmosPredict2_2B_Config = L(_HF + "CosmosPredict2")(
    model_id="nvidia/Cosmos-Predict2-2B-Video2World", load_pretrained=True, net_pred_type="flow", schedule_type="rf",
    is_video2world=False, num_conditioning_frames=1, fps=24,
)
CosmosPredict2_14B_Config = L(_HF + "CosmosPredict2")(
    model_id="nvidia/Cosmos-Predict2-14B-Video2World", load_pretrained=True, net_pred_type="flow", schedule_type="rf",
    is_video2world=False, num_conditioning_frames=1, fps=24,
)
