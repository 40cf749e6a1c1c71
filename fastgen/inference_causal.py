"""Streaming inference with a causal video network (`video_model_inference.py --causal`): chunk-by-chunk generation
through `causal_generate` with the KV cache, each finished chunk decoded (WanStreamDecoder, exact) and appended to
the open mp4 encoders at once. Videos longer than the training length (`--num_frames`) run with a rolling cache
window (default: total_num_frames - chunk_size frames of context, so every chunk sees at most the training length
and rotary distances stay in the trained range).

Image- and video-to-video causal nets take the condition the non-causal path builds (the script's `--image` /
`--control_video`, encoded once for the whole requested video); each autoregressive call uses its chunk's part of it,
as the network defines (CausalWanMixin.frame_condition_keys):
  * CausalVACEWan: the control latents cover every requested frame and chunk k gets the control frames of chunk k
    (the script refuses a control video shorter than --num_frames), so extrapolation follows the control video.
  * CausalWanI2V (Wan 2.1): the first-frame condition (mask + image latents, then "no image" frames) is built by the
    pipeline for the requested frame count (its first frames equal those of a training-length one: the VAE is
    causal), so chunk k gets its frames of it: the mask marks latent frame 0 as the image and every later frame --
    past the training length too -- as "to generate", as in training; the CLIP image tokens reach every chunk
    through cross-attention.
  * CausalWan22I2V (Wan 2.2 TI2V): the first chunk holds the image frame, whose x0 is pinned to the image latent;
    later chunks see it through the cache.
  Past the training length the image frame leaves the rolling window like any frame (no pinned "sink" frame): the
  continuation is conditioned on the last window of generated frames (and, Wan 2.1, on the CLIP image tokens).
"""

from __future__ import annotations

import torch


def setup_causal(config, net, latent_frames: int, num_steps: int | None, sampler_type: str = "auto",
                 guidance_scale: float | None = None) -> tuple[torch.Tensor, float | None, str]:
    """Check the network and frame count, set the rolling window when extrapolating; (t_list, CFG scale,
    description). Every chunk runs the t_list of `num_steps` steps (default model.student_sample_steps); CFG as the
    non-causal path: --guidance_scale, else model.guidance_scale for SFT configs (CausalSFTModel samples so)."""
    from fastgen.cli import UsageError
    from fastgen.inference import sampler_choice, student_t_list
    from fastgen.networks.network import CausalFastGenNetwork

    if not isinstance(net, CausalFastGenNetwork):
        raise UsageError(f"--causal needs a causal video network (e.g. CausalWan); the config's model.net builds "
                         f"{type(net).__name__}: drop --causal or use a causal config")
    try:
        net.check_chunked(latent_frames)
    except ValueError as error:
        raise UsageError(f"--num_frames: {error}") from None
    window = ""
    if latent_frames > net.total_num_frames and net.max_cache_frames is None:
        net.max_cache_frames = max(net.total_num_frames - net.chunk_size, 1)
        window = f", rolling cache window of {net.max_cache_frames} latent frames past the training length"
    steps = int(num_steps if num_steps is not None else config.model.student_sample_steps)
    if steps < 1:
        raise UsageError(f"--num_steps must be >= 1; got {steps}")
    _, scale = sampler_choice(config, sampler_type, guidance_scale)
    cfg = f", CFG {scale}" if scale is not None else ""
    return student_t_list(config, net, steps), scale, (f"streaming {latent_frames // net.chunk_size} chunks of "
                                                       f"{net.chunk_size} latent frames with the KV cache, {steps} "
                                                       f"steps per chunk{cfg}{window}")


@torch.no_grad()
def stream_videos(config, net, noise, condition, t_list, paths: list[str], fps: float, lossless: bool,
                  guidance_scale: float | None = None, generator=None) -> torch.Tensor:
    """Generate noise.shape[0] videos chunk by chunk, appending each finished chunk's frames to paths[i] as it is
    done; returns the decoded videos [B, 3, F, H, W] in [-1, 1]."""
    from fastgen.inference import empty_prompt_negative
    from fastgen.networks.causal_sampling import causal_generate
    from fastgen.networks.hf.stream_decode import WanStreamDecoder
    from fastgen.utils.video import Mp4Writer

    neg = None if guidance_scale is None else empty_prompt_negative(net, condition, noise.shape[0], noise.device)
    decoder, pixels = WanStreamDecoder(net), []
    writers = [Mp4Writer(path, fps=fps, lossless=lossless) for path in paths]
    try:
        def on_chunk(start_frame: int, x0: torch.Tensor) -> None:
            frames = decoder.decode(x0).float().cpu()
            for writer, video in zip(writers, frames):
                writer.write(video, layout="CTHW")
            pixels.append(frames)

        causal_generate(net, noise, condition, t_list=t_list.to(noise.device),
                        context_noise=float(getattr(config.model, "context_noise", 0.0) or 0.0), neg_condition=neg,
                        guidance_scale=guidance_scale, on_chunk=on_chunk, generator=generator)
        for writer in writers:
            writer.close()
    finally:
        for writer in writers:
            writer.abort()
        decoder.close()
    return torch.cat(pixels, dim=2)
