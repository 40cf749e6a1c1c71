"""Sample videos from a trained (or distilled) video model: one mp4 per (prompt, seed) and a contact sheet PNG
(a row per video, evenly spaced frames).

    python scripts/inference/video_model_inference.py --config=CFG --ckpt_path=CKPT \\
        --prompts=scripts/inference/prompts/t2i.txt --seeds=0-1 [--num_steps=N] [--guidance_scale=G] [--fps=16] \\
        [--num_frames=81 --height=480 --width=832] [- key=value ...]

Text-to-video (Wan, CogVideoX), image-to-video (`--image PATH` with a WanI2V network: the image is resized to the
video size and becomes the first frame's condition) and video-to-video (`--control_video PATH` with a VACEWan
network: the first --num_frames frames of the video, resized to the video size, become the control video -- or, with
the network's control_type="depth", the video its depth maps are computed from). VACE's other uses, as in diffusers'
WanVACEPipeline: inpainting / outpainting with `--control_mask PATH` (a mask video read like the control video, or one
image for every frame; white = generate, black = keep the control video's pixels) and subject references with
`--reference_image PATH` (repeatable: each fitted onto a white canvas of the video size, aspect kept; they become
extra leading latent frames that are sampled along and dropped before decoding). The network and its sampler come
as in image_model_inference.py (shared code in fastgen/inference.py): the few-step student sampler for distilled
students, the network's own (shipped-scheduler) sampling for SFT configs. Frames and size default to the config's
latent `model.input_shape` [C, T, H, W] times the VAE factors; a frame count must be (T-1)*f+1 (f: the VAE's temporal
factor) and the size a multiple of VAE factor x patch size, checked before anything is sampled or written.
Outputs: `<out_dir>/videos/<prompt index>_<prompt words>_s<seed>.mp4` and `<out_dir>/contact_sheet.png`.
`--causal` (causal networks: CausalWan, CausalWanI2V / CausalWan22I2V with --image, CausalVACEWan with
--control_video [--control_mask]; --reference_image is refused there, see check_inputs): streaming generation chunk
by chunk with the KV cache, each chunk generated with its part of the condition above and its frames written to the
mp4 as soon as it is done; `--num_frames` past the training length uses a rolling cache window
(fastgen/inference_causal.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

SCRIPT_USAGE = ("python scripts/inference/video_model_inference.py --config=PATH [--ckpt_path=PATH] "
                "(--prompt=TEXT | --prompts=FILE) [--image=PATH | --control_video=PATH [--control_mask=PATH] "
                "[--reference_image=PATH ...]] [options] - key=value ...")


def build_parser() -> argparse.ArgumentParser:
    from fastgen.cli import _Parser

    parser = _Parser(description="Sample a text-to-video (or image-/video-to-video) model: one mp4 per prompt and "
                                 "seed, and a contact sheet. Config overrides follow a '-' (Hydra grammar, as in "
                                 "train.py).",
                     usage=SCRIPT_USAGE)
    parser.add_argument("--config", required=True, help="experiment config .py with create_config()")
    parser.add_argument("--ckpt_path", default=None,
                        help="a fastgen checkpoint (.pth) or state dict; default model.pretrained_model_path, or the "
                             "hub weights of a network with load_pretrained")
    parser.add_argument("--net_key", default="auto", help="network inside a fastgen checkpoint (auto: first EMA)")
    parser.add_argument("--prompt", default=None, help="one prompt")
    parser.add_argument("--prompts", default=None, help="a text file with one prompt per line")
    parser.add_argument("--image", default=None, help="image-to-video: the first frame (WanI2V networks)")
    parser.add_argument("--control_video", default=None,
                        help="video-to-video: the control video, or the video to take depth from (VACEWan networks)")
    parser.add_argument("--control_mask", default=None,
                        help="VACE inpainting: a mask video (its first --num_frames frames) or one image for every "
                             "frame, resized to the video size; grey level / 255 is the mask (WanVACEPipeline's "
                             "convention): white (1) = generate, black (0) = keep the --control_video pixels")
    parser.add_argument("--reference_image", action="append", default=None, metavar="PATH",
                        help="VACE reference image (repeatable): e.g. the subject to put into the video; fitted onto "
                             "a white canvas of the video size (aspect kept), as WanVACEPipeline does; not with "
                             "--causal")
    parser.add_argument("--seeds", default=None, help="noise seeds, e.g. '0,5,7' or '0-3' (default: --seed)")
    parser.add_argument("--seed", type=int, default=0, help="the seed when --seeds is not given")
    parser.add_argument("--num_steps", type=int, default=None, help="default model.student_sample_steps")
    parser.add_argument("--sampler_type", default="auto", choices=("auto", "student", "teacher"),
                        help="auto: the network's own sampling for SFT configs (with --causal: CFG at "
                             "model.guidance_scale), the few-step student otherwise")
    parser.add_argument("--guidance_scale", type=float, default=None, help="classifier-free guidance")
    parser.add_argument("--causal", action="store_true",
                        help="stream chunk by chunk through a causal network's KV cache (frames written per chunk)")
    parser.add_argument("--num_frames", type=int, default=None, help="pixel frames (default from model.input_shape)")
    parser.add_argument("--height", type=int, default=None, help="pixels (default from model.input_shape)")
    parser.add_argument("--width", type=int, default=None, help="pixels (default from model.input_shape)")
    parser.add_argument("--fps", type=float, default=16.0, help="frame rate of the mp4s (default 16)")
    parser.add_argument("--lossless", action="store_true",
                        help="write lossless RGB h264 (bit-exact; fewer players) instead of yuv420p crf 18")
    parser.add_argument("--out_dir", default=None, help="default: <run folder of the config>/inference")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument("--log_level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="'-' then key=value config overrides")
    return parser


def vae_factors(net) -> tuple[int, int]:
    """(temporal, spatial) compression of the network's video VAE (Wan's config names them; else the Wan defaults)."""
    vae = net.encoders["vae"].config
    temporal = vae.get("scale_factor_temporal") or vae.get("temporal_compression_ratio") or 4
    spatial = net.adapter.vae_scale_factor(net) if hasattr(net.adapter, "vae_scale_factor") else 8
    return int(temporal), int(spatial)


def video_geometry(args: argparse.Namespace, config, net) -> tuple[tuple[int, ...], int, int, int]:
    """The latent noise shape [C, T, h, w] and the pixel (frames, height, width), checked against the VAE and patch
    size (fastgen.utils.video checks: one line naming valid values)."""
    from fastgen.cli import UsageError
    from fastgen.utils.video import VideoError, check_num_frames, check_resolution

    shape = [int(s) for s in config.model.input_shape]
    if len(shape) != 4:
        raise UsageError(f"video_model_inference.py needs video latents model.input_shape=[C, T, H, W]; this config "
                         f"has {shape}: pass a video experiment's config (images: image_model_inference.py)")
    temporal, spatial = vae_factors(net)
    patch = net.adapter.patch_size(net)
    frames = args.num_frames or (shape[1] - 1) * temporal + 1
    height, width = args.height or shape[2] * spatial, args.width or shape[3] * spatial
    try:
        latent_frames = check_num_frames(frames, temporal)
        check_resolution(height, width, spatial * max(int(p) for p in patch[1:]))
    except VideoError as error:
        raise UsageError(str(error)) from None
    if latent_frames % int(patch[0]):
        raise UsageError(f"{frames} frames give {latent_frames} latent frames, not divisible by the temporal patch "
                         f"{patch[0]}")
    return (shape[0], latent_frames, height // spatial, width // spatial), frames, height, width


def open_image(path: str, flag: str = "--image"):
    """The image file as an RGB PIL image, or one line naming the flag and the file."""
    from PIL import Image, UnidentifiedImageError

    from fastgen.cli import UsageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise UsageError(f"{flag} {path} is not a readable image ({error.__class__.__name__}); pass a PNG/JPEG "
                         "file") from None


def resize_frames(frames, height: int, width: int, mode: str = "RGB"):
    """uint8 frames [F, h, w, 3] -> float32 [F, H, W, channels of mode] in [0, 255], each resized (bicubic)."""
    import numpy as np
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).convert(mode).resize((width, height), Image.BICUBIC),
                                dtype=np.float32).reshape(height, width, -1) for f in frames])


def read_image(path: str, height: int, width: int):
    """The --image file as [1, 3, H, W] in [-1, 1], resized to the video size."""
    import numpy as np
    import torch

    pixels = resize_frames(np.asarray(open_image(path))[None], height, width)[0]
    return torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1


def read_frames(path: str, num_frames: int, flag: str):
    """The first num_frames frames of a video file, uint8 [F, h, w, 3] (one line naming the flag if it cannot)."""
    from fastgen.cli import UsageError
    from fastgen.utils.video import VideoError, read_video

    try:
        frames = read_video(path).frames
    except VideoError as error:
        mask = flag == "--control_mask"
        noun, hint = ("image or video", "a PNG/JPEG or mp4 file") if mask else ("video", "an mp4 file")
        raise UsageError(f"{flag} {path} is not a readable {noun} ({error}); pass {hint}") from None
    if len(frames) < num_frames:
        raise UsageError(f"{flag} {path} has {len(frames)} frames, fewer than the {num_frames} asked: pass a longer "
                         f"video or --num_frames of at most {len(frames)}")
    return frames[:num_frames]


def read_control_video(path: str, num_frames: int, height: int, width: int):
    """The first num_frames frames of the --control_video file as [1, 3, F, H, W] in [-1, 1], each resized to the
    video size (as --image)."""
    import torch

    resized = resize_frames(read_frames(path, num_frames, "--control_video"), height, width)
    return torch.from_numpy(resized).permute(3, 0, 1, 2)[None] / 127.5 - 1


def read_control_mask(path: str, num_frames: int, height: int, width: int):
    """The --control_mask file as [1, 1, F, H, W] in [0, 1]: a video read like --control_video, or one still image
    repeated over the frames; the grey level (PIL's luma of RGB) / 255, so white (1) = generate and black (0) = keep
    the control video, WanVACEPipeline's convention (it binarises at 0.5 for the control latents and folds the raw
    values into the mask channels; encode_control does the same)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:  # a still image (one frame): the same mask for every frame
        with Image.open(path) as image:
            still = np.asarray(image.convert("RGB"))[None] if getattr(image, "n_frames", 1) == 1 else None
    except (OSError, UnidentifiedImageError):
        still = None
    if still is not None:
        mask = np.repeat(resize_frames(still, height, width, mode="L"), num_frames, axis=0)
    else:
        mask = resize_frames(read_frames(path, num_frames, "--control_mask"), height, width, mode="L")
    return torch.from_numpy(mask).permute(3, 0, 1, 2)[None] / 255


def read_reference_images(paths: list[str], net, height: int, width: int):
    """The --reference_image files as [1, R, 3, H, W] in [-1, 1], fitted to the video size by the network
    (VACEWan.fit_reference_images: the pipeline's white canvas)."""
    return net.fit_reference_images([open_image(path, "--reference_image") for path in paths], height, width)


def check_inputs(args: argparse.Namespace, net) -> None:
    """Refuse conditioning the network cannot take (before anything is built on disk)."""
    from fastgen.cli import UsageError

    v2v = callable(getattr(net, "encode_control", None))
    if v2v and args.control_video is None:
        raise UsageError(f"{type(net).__name__} is a video-to-video network: pass --control_video PATH")
    if not v2v and args.control_video is not None:
        raise UsageError(f"--control_video (video-to-video) needs a VACE network (VACEWan); {type(net).__name__} "
                         "takes no control video: drop --control_video")
    for flag, given in (("--control_mask", args.control_mask), ("--reference_image", args.reference_image)):
        if given is not None and not v2v:
            raise UsageError(f"{flag} needs a VACE network (VACEWan); {type(net).__name__} takes no control: drop "
                             f"{flag}")
    if args.reference_image is not None and args.causal:
        # references are extra leading latent frames sampled along with the video: in the chunked stream they would
        # shift the chunk grid the causal student was trained on (without references) and be decoded as frames
        raise UsageError("--reference_image is not supported with --causal (the causal students are trained and "
                         "chunked without reference frames): drop --causal or the reference images")
    # a CosmosPredict2 network says per instance (video2world takes --image, text2world does not)
    i2v = bool(getattr(net, "is_image_to_video", callable(getattr(net, "encode_image_condition", None))))
    if i2v and args.image is None:
        raise UsageError(f"{type(net).__name__} is an image-to-video network: pass --image PATH (the first frame)")
    if not i2v and args.image is not None:
        raise UsageError(f"--image needs an image-to-video network (WanI2V); {type(net).__name__} is text-to-video")
    if args.image is not None and not os.path.isfile(args.image):
        raise UsageError(f"--image {args.image} does not exist")
    if not callable(getattr(net, "encode_text", None)):
        raise UsageError(f"{type(net).__name__} is not a text-conditioned video network")


def main(argv: list[str] | None = None) -> int:
    import torch
    from loguru import logger
    from tqdm import tqdm

    from fastgen.cli import UsageError, check_opts, resolve_config
    from fastgen.inference import load_network, make_text_sampler, parse_seeds, read_prompts, slug
    from fastgen.methods.model import resolve_device
    from fastgen.utils.logging import setup_logging
    from fastgen.utils.video import save_contact_sheet, write_video

    args = build_parser().parse_args(argv)
    args.opts = check_opts(args.opts)
    setup_logging(args.log_level)
    if args.fps <= 0:
        raise UsageError(f"--fps must be > 0; got {args.fps}")
    prompts = read_prompts(args)
    if prompts is None:
        raise UsageError("pass --prompt TEXT or --prompts FILE")
    seeds = parse_seeds(args.seeds, args.seed, 1)
    config = resolve_config(args)
    device = resolve_device(args.device)
    ckpt_path = args.ckpt_path or config.model.pretrained_model_path
    net, source = load_network(config, ckpt_path, args.net_key)
    check_inputs(args, net)
    shape, frames, height, width = video_geometry(args, config, net)
    image = read_image(args.image, height, width) if args.image is not None else None
    control = None if args.control_video is None else read_control_video(args.control_video, frames, height, width)
    mask = None if args.control_mask is None else read_control_mask(args.control_mask, frames, height, width)
    refs = None if args.reference_image is None else read_reference_images(args.reference_image, net, height, width)
    # VACE references: leading latent frames the noise carries too (as the pipeline draws it), dropped after sampling
    num_refs = 0 if refs is None else refs.shape[1]
    net.to(device)
    if getattr(net, "encoders", None) is not None:
        net.encoders.to(device)
    if args.causal:
        from fastgen.inference_causal import setup_causal, stream_videos

        t_list, guidance, description = setup_causal(config, net, shape[1], args.num_steps, args.sampler_type,
                                                     args.guidance_scale)
    else:
        sample_fn, description = make_text_sampler(config, net, args.sampler_type, args.num_steps, args.guidance_scale)
    # the condition parts beside the prompt, shared by every seed: the I2V first frame or the V2V control latents
    extra_cond = None if image is None else net.encode_image_condition(image.to(device), frames)
    if control is not None:
        extra_cond = {"control_hidden_states": net.encode_control(
            control.to(device), None if mask is None else mask.to(device), None if refs is None else refs.to(device))}
    out_dir = args.out_dir or os.path.join(config.log_config.save_path, "inference")
    logger.info(f"{ckpt_path or 'model_id'} ({source}); {len(prompts)} prompt(s) x {len(seeds)} seed(s), {frames} "
                f"frames {height}x{width} at {args.fps:g} fps -> {out_dir}; {description}")
    tic, videos = time.perf_counter(), []
    for p, prompt in enumerate(tqdm(prompts, desc="prompts", unit="prompt")):
        noise = torch.stack([torch.randn((shape[0], shape[1] + num_refs, *shape[2:]),
                                         generator=torch.Generator().manual_seed(s)) for s in seeds])
        condition = net.encode_text([prompt] * len(seeds), device=device)
        if extra_cond is not None:
            condition.update({k: v.expand(len(seeds), *v.shape[1:]) for k, v in extra_cond.items()})
        generator = torch.Generator(device=device).manual_seed(args.seed + p)
        if args.causal:
            paths = [os.path.join(out_dir, "videos", f"{p:03d}_{slug(prompt)}_s{s}.mp4") for s in seeds]
            videos.append(stream_videos(config, net, noise.to(device), condition, t_list, paths, args.fps,
                                        args.lossless, guidance, generator))
            continue
        latents = sample_fn(noise.to(device), condition, generator=generator)[:, :, num_refs:]
        decoded = net.decode_latents(latents).clamp(-1, 1).float().cpu()
        for s, video in zip(seeds, decoded):
            write_video(os.path.join(out_dir, "videos", f"{p:03d}_{slug(prompt)}_s{s}.mp4"), video, fps=args.fps,
                        layout="CTHW", lossless=args.lossless)
        videos.append(decoded)
    seconds = time.perf_counter() - tic
    sheet = save_contact_sheet(torch.cat(videos), os.path.join(out_dir, "contact_sheet.png"))
    count = len(prompts) * len(seeds)
    logger.info(f"wrote {count} videos in {seconds:.1f} s ({count / max(seconds, 1e-9):.2f} videos/s) and {sheet}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from fastgen.cli import run_cli

    sys.exit(run_cli(main))
