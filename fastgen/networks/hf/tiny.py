"""Tiny random component configs for every diffusers-backed family (tests and `train.py --smoke` use them).

Each entry maps a component name to the config dict its class builds from (`component_configs` of HFNetwork);
tokenizers map to a small spec for `build_tokenizer` (an in-memory character-level tokenizer of the family's
class, so nothing downloads). Everything builds in milliseconds on a CPU. Latents are 4 channels at 8x8 (VAE factor 2: 16x16 images).
"""

from __future__ import annotations

import copy


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins byte-level BPE vocabularies use for bytes (GPT-2 / CLIP / Qwen convention)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


_BYTES = _byte_chars()


def build_tokenizer(kind: str = "clip", model_max_length: int = 16):
    """A tiny in-memory tokenizer of the class the family ships (so saving and reloading it by that class gives the
    same tokenizer): character-level vocabularies without merges, built without any file or download.

    kind: "clip" (CLIPTokenizer, words end in </w>), "t5" (T5 unigram pieces), "qwen2" (byte-level BPE).
    """
    from transformers import CLIPTokenizer, Qwen2Tokenizer, T5Tokenizer

    if kind == "clip":
        pieces = ["<|startoftext|>", "<|endoftext|>", *_BYTES, *(c + "</w>" for c in _BYTES)]
        tok = CLIPTokenizer(vocab={p: i for i, p in enumerate(pieces)}, merges=[])
    elif kind == "t5":
        pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
        pieces += [(c, -2.0) for c in _BYTES[:200]] + [("\u2581" + c, -1.5) for c in _BYTES[:200]]
        tok = T5Tokenizer(vocab=pieces, extra_ids=0)
    elif kind == "qwen2":
        pieces = [*_BYTES, "<|endoftext|>"]
        tok = Qwen2Tokenizer(vocab={p: i for i, p in enumerate(pieces)}, merges=[])
    else:
        raise ValueError(f"tokenizer kind must be clip, t5 or qwen2; got {kind!r}")
    tok.model_max_length = int(model_max_length)
    return tok


TOKENIZER_VOCAB_SIZE = 2 + 2 * len(_BYTES)  # the largest of the three vocabularies (clip: 514)
_CLIP_TEXT = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, vocab_size=TOKENIZER_VOCAB_SIZE,
    max_position_embeddings=16, projection_dim=32, pad_token_id=1, bos_token_id=0, eos_token_id=1,
)
_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16], layers_per_block=1,
    norm_num_groups=8, sample_size=16, down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2, scaling_factor=0.18215,
)
_SD_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
    set_alpha_to_one=False, clip_sample=False, timestep_spacing="leading", prediction_type="epsilon",
)
_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[16, 32],
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
)

SD15 = {
    "unet": _UNET,
    "vae": _VAE,
    "text_encoder": _CLIP_TEXT,
    "tokenizer": {"kind": "clip", "model_max_length": 16},
    "scheduler": _SD_SCHEDULER,
}

SDXL = {
    "unet": dict(
        _UNET, cross_attention_dim=64, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32, transformer_layers_per_block=1,
    ),
    "vae": dict(_VAE, scaling_factor=0.13025),
    "text_encoder": _CLIP_TEXT,
    "text_encoder_2": _CLIP_TEXT,
    "tokenizer": {"kind": "clip", "model_max_length": 16},
    "tokenizer_2": {"kind": "clip", "model_max_length": 16},
    "scheduler": dict(_SD_SCHEDULER, interpolation_type="linear", use_karras_sigmas=False),
}

_FLOW_SCHEDULER = dict(
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096,
)

FLUX = {
    "transformer": dict(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=[4, 6, 6],
    ),
    "vae": dict(_VAE, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False),
    "text_encoder": _CLIP_TEXT,
    "text_encoder_2": dict(
        d_model=32, d_ff=37, d_kv=16, num_layers=2, num_heads=2, vocab_size=TOKENIZER_VOCAB_SIZE,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
    ),
    "tokenizer": {"kind": "clip", "model_max_length": 16},
    "tokenizer_2": {"kind": "t5", "model_max_length": 512},
    "scheduler": _FLOW_SCHEDULER,
}

QWEN_IMAGE = {
    "transformer": dict(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, axes_dims_rope=[4, 6, 6],
    ),
    "vae": dict(
        base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
        latents_mean=[0.0, 0.1, -0.1, 0.05], latents_std=[1.0, 1.5, 0.8, 1.2],
    ),
    "text_encoder": dict(
        text_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            vocab_size=TOKENIZER_VOCAB_SIZE, max_position_embeddings=512,
            rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]}, rope_parameters={
                "rope_type": "default", "mrope_section": [2, 2, 4], "rope_theta": 10000.0},
        ),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32),
        vocab_size=TOKENIZER_VOCAB_SIZE, bos_token_id=256, eos_token_id=256,
    ),
    "tokenizer": {"kind": "qwen2", "model_max_length": 1024},
    "scheduler": dict(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential",
    ),
}

_T5_TEXT = dict(
    d_model=32, d_ff=37, d_kv=16, num_layers=2, num_heads=2, vocab_size=TOKENIZER_VOCAB_SIZE,
    relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
)

# video latents: 4 channels, 5 frames at 8x8 (VAE: 2x in time and space, so 9 frames at 16x16 pixels)
WAN = {
    "transformer": dict(
        patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=32,
    ),
    "vae": dict(
        base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
        latents_mean=[0.0, 0.1, -0.1, 0.05], latents_std=[1.0, 1.5, 0.8, 1.2], scale_factor_temporal=2,
        scale_factor_spatial=2,
    ),
    "text_encoder": _T5_TEXT,
    "tokenizer": {"kind": "t5", "model_max_length": 512},
    "scheduler": dict(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
        solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=True, final_sigmas_type="zero",
        timestep_spacing="linspace",
    ),
}

# Wan 2.1 I2V: transformer input = 4 noise + 2 mask (the VAE's temporal factor) + 4 image-latent channels
WAN_I2V = {
    **WAN,
    "transformer": dict(WAN["transformer"], in_channels=10, image_dim=32, added_kv_proj_dim=16),
    "image_encoder": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                          image_size=16, patch_size=8),
    "image_processor": dict(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
}

# Wan 2.2 TI2V-5B layout: the residual patchified VAE (12 = 3 x 2 x 2 channels in, 4x space: 16x16 pixels -> 4x4)
WAN22_I2V = {
    **WAN,
    "vae": dict(WAN["vae"], is_residual=True, patch_size=2, in_channels=12, out_channels=12, dim_mult=[2, 2],
                scale_factor_spatial=4),
}

# Wan 2.1 VACE: 2 VACE blocks (hints after main blocks 0 and 1); control = 4 inactive + 4 reactive latent channels +
# 2 x 2 mask channels (the VAE's spatial factor squared). Depth control: a tiny Depth-Anything (DINOv2 backbone, 14 px
# patches) and its DPT processor at 28 px.
VACE_WAN = {
    **WAN,
    "transformer": dict(WAN["transformer"], vace_layers=[0, 1], vace_in_channels=12),
    "depth_model": dict(
        backbone_config=dict(model_type="dinov2", image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=32, out_indices=[1, 2],
                             reshape_hidden_states=False, initializer_range=0.2),
        reassemble_hidden_size=16, reassemble_factors=[2, 1], neck_hidden_sizes=[8, 16], fusion_hidden_size=8,
        head_hidden_size=4, initializer_range=0.2,  # the default 0.02 gives ~1e-8 depths: no structure to normalise
    ),
    "depth_processor": dict(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14),
}

# 2B layout (sin-cos positions); the 5B one is the same with use_rotary_positional_embeddings=True
COGVIDEOX = {
    "transformer": dict(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
        text_embed_dim=32, num_layers=2, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
        temporal_compression_ratio=2, max_text_seq_length=226,
    ),
    "vae": dict(
        block_out_channels=[8, 16], down_block_types=["CogVideoXDownBlock3D"] * 2,
        up_block_types=["CogVideoXUpBlock3D"] * 2, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        temporal_compression_ratio=2, sample_height=16, sample_width=16, scaling_factor=1.15258426,
    ),
    "text_encoder": _T5_TEXT,
    "tokenizer": {"kind": "t5", "model_max_length": 226},
    "scheduler": dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=3.0,
        steps_offset=0, timestep_spacing="trailing", clip_sample=False,
    ),
}

# Cosmos-Predict2 Video2World layout: 4 latent channels + the condition-mask channel in (the padding-mask channel is
# added inside), head dim 12 (the 3-D rotary split needs >= 4 per axis), Wan's tiny VAE and T5
COSMOS_PREDICT2 = {
    "transformer": dict(
        in_channels=5, out_channels=4, num_attention_heads=2, attention_head_dim=12, num_layers=2, mlp_ratio=2.0,
        text_embed_dim=32, adaln_lora_dim=8, max_size=(8, 16, 16), patch_size=(1, 2, 2), rope_scale=(1.0, 2.0, 2.0),
        concat_padding_mask=True, extra_pos_embed_type=None,
    ),
    "vae": WAN["vae"],
    "text_encoder": _T5_TEXT,
    "tokenizer": {"kind": "t5", "model_max_length": 512},
    "scheduler": dict(num_train_timesteps=1000, shift=1.0, use_karras_sigmas=True),
}

FAMILIES = {
    "sd15": SD15, "sdxl": SDXL, "flux": FLUX, "qwen_image": QWEN_IMAGE, "wan": WAN, "wan_i2v": WAN_I2V,
    "wan22_i2v": WAN22_I2V, "vace_wan": VACE_WAN, "cogvideox": COGVIDEOX, "cosmos_predict2": COSMOS_PREDICT2,
}


def tiny_components(family: str) -> dict:
    """A fresh copy of one family's tiny component configs."""
    if family not in FAMILIES:
        raise ValueError(f"no tiny configs for family {family!r}; known: {sorted(FAMILIES)}")
    return copy.deepcopy(FAMILIES[family])
