"""Named constants a loader can put under a batch key for every sample (`presets={"neg_condition": "empty_string"}`).

Text-to-image/video distillation with classifier-free guidance needs a negative condition per sample; when the
shards do not carry one, a preset supplies the same text for all samples (the text encoder turns it into embeddings).
"""

from __future__ import annotations

PRESET_CONSTANTS: dict[str, str] = {
    "empty_string": "",
    # A generic negative prompt for video models: the artefacts a video generator should steer away from.
    "neg_prompt_wan": (
        "overexposed, oversaturated colours, static frame, blurry details, subtitles, captions, watermark, logo, "
        "painting, still image, grey overall tone, worst quality, low quality, JPEG compression artefacts, ugly, "
        "mutilated, extra fingers, badly drawn hands, badly drawn face, deformed, disfigured, malformed limbs, "
        "fused fingers, motionless scene, cluttered background, three legs, crowded background, walking backwards"
    ),
    "neg_prompt_cosmos": (
        "low quality, blurry, distorted geometry, unrealistic physics, flickering, jittery motion, inconsistent "
        "lighting, text overlays, watermark, cartoonish rendering, oversaturated colours, duplicated objects"
    ),
}


def resolve_presets(presets: dict[str, str] | None) -> dict[str, str]:
    """{batch key: preset name} -> {batch key: text}; an unknown name is an error listing the known ones."""
    out = {}
    for key, name in (presets or {}).items():
        if name not in PRESET_CONSTANTS:
            raise ValueError(f"presets[{key!r}]={name!r} is not a known preset; choose one of {sorted(PRESET_CONSTANTS)}")
        out[key] = PRESET_CONSTANTS[name]
    return out
