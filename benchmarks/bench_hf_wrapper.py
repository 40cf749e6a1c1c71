"""Overhead of the diffusers wrapper (fastgen.networks.hf): forward+backward time and saved-activation memory of
`HFNetwork` over the bare diffusers denoiser called on pre-packed inputs, per family (image families and Wan video),
at the tiny test size and a mid size that fits a CPU.

    python benchmarks/bench_hf_wrapper.py [--families sd15 flux wan ...] [--sizes tiny mid] [--repeats 5] [--iters 3]

Prints, per family and size, the median over `--repeats` of the time ratio (target <= 1.03) and the memory ratio
(target <= 1.05): bytes of tensors saved for backward (the activation memory a training step holds), plus CUDA peak
memory when run on a GPU. Both sides use the same weights and inputs; the wrapper does its own packing, time mapping
and output unpacking inside the timed region, the bare side gets its inputs prepared once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

FAMILIES = ("sd15", "sdxl", "flux", "qwen_image", "wan")
# mid Wan: 6 blocks of inner dim 384 (6 heads x 64); latents [B, 16, 3, 32, 32] = 768 tokens per video
WAN_MID = dict(num_layers=6, num_attention_heads=6, attention_head_dim=64, in_channels=16, out_channels=16,
               text_dim=128, freq_dim=256, ffn_dim=1024, rope_max_seq_len=1024)
WAN_MID_FRAMES, TEXT_TOKENS = 3, 16


def mid_components(family: str) -> dict:
    """The tiny configs scaled up (wider, deeper) to a size a CPU still runs in well under a second per step."""
    from fastgen.networks.hf.tiny import tiny_components

    comps = tiny_components(family)
    den = comps["unet" if family in ("sd15", "sdxl") else "transformer"]
    if family in ("sd15", "sdxl"):
        den.update(block_out_channels=[64, 128, 128], layers_per_block=2, attention_head_dim=8,
                   down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                   up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], norm_num_groups=32)
    elif family == "wan":
        den.update(WAN_MID)
    elif family == "flux":
        den.update(num_layers=2, num_single_layers=4, num_attention_heads=4, attention_head_dim=32,
                   axes_dims_rope=[8, 12, 12])
    else:
        den.update(num_layers=4, num_attention_heads=4, attention_head_dim=32, axes_dims_rope=[8, 12, 12])
    return comps


def _saved_bytes(fn) -> int:
    import torch

    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total[0], out


def build_net(family: str, size: str, device: str):
    """The family's network with seeded random weights at the tiny or mid size, in train mode on `device`."""
    import torch

    from fastgen.networks.hf import network_class
    from fastgen.networks.hf.tiny import tiny_components

    cls = network_class(family)
    comps = tiny_components(family) if size == "tiny" else mid_components(family)
    torch.manual_seed(0)
    return cls(model_id=f"bench/{family}", load_pretrained=False, component_configs=comps).to(device).train()


def bench_inputs(net, family: str, size: str, device: str, batch: int = 2):
    """Seeded (latents, t, condition): 8x8 (tiny) or 32x32 (mid) latents, video ones with 2 or WAN_MID_FRAMES frames."""
    import torch

    hw = 8 if size == "tiny" else 32
    g = torch.Generator().manual_seed(1)
    c = net.adapter.latent_channels(net)
    frames = (2 if size == "tiny" else WAN_MID_FRAMES,) if net.adapter.latent_ndim == 5 else ()
    x = torch.randn(batch, c, *frames, hw, hw, generator=g).to(device)
    t = torch.linspace(0.3, 0.7, batch, dtype=torch.float64, device=device)
    return x, t, _condition(net, family, g, device, batch)


def measure(family: str, size: str, repeats: int, iters: int, device: str, batch: int = 2, clock=time.perf_counter):
    """Ratios wrapper / bare; `clock` times the steps (wall time by default; bench_video_memory.py passes the process
    CPU time, which a loaded shared CPU disturbs less)."""
    import torch

    net = build_net(family, size, device)
    x, t, cond = bench_inputs(net, family, size, device, batch)
    bare_inputs = net.adapter.model_inputs(net, x, t, cond)

    def wrapper_step():
        return net(x, t, cond)

    def bare_step():
        return net.denoiser(**bare_inputs, return_dict=False)[0]

    def run(step):
        for _ in range(iters):
            step().square().mean().backward()
        net.zero_grad(set_to_none=True)

    def timed(step):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = clock()
        run(step)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return clock() - start

    run(wrapper_step), run(bare_step)  # warm-up
    ratios = []
    for i in range(repeats):  # interleaved (ABBA), so load changes and ordering effects hit both sides alike
        if i % 2:
            wrapped, bare = timed(wrapper_step), timed(bare_step)
        else:
            bare, wrapped = timed(bare_step), timed(wrapper_step)
        ratios.append(wrapped / bare)
    mem_wrapped, out_w = _saved_bytes(wrapper_step)
    mem_bare, out_b = _saved_bytes(bare_step)
    del out_w, out_b
    row = {"time": statistics.median(ratios), "saved_mem": mem_wrapped / mem_bare,
           "params_M": sum(p.numel() for p in net.parameters()) / 1e6}
    if device.startswith("cuda"):
        peaks = []
        for step in (bare_step, wrapper_step):
            torch.cuda.reset_peak_memory_stats()
            run(step)
            peaks.append(torch.cuda.max_memory_allocated())
        row["cuda_peak"] = peaks[1] / peaks[0]
    return row


def _condition(net, family, g, device, b=2):
    import torch

    den, n = net.denoiser.config, TEXT_TOKENS
    if family == "sd15":
        return {"prompt_embeds": torch.randn(b, n, den.cross_attention_dim, generator=g).to(device)}
    if family == "sdxl":
        return {"prompt_embeds": torch.randn(b, n, den.cross_attention_dim, generator=g).to(device),
                "pooled_prompt_embeds": torch.randn(b, 32, generator=g).to(device)}
    if family == "flux":
        return {"prompt_embeds": torch.randn(b, n, den.joint_attention_dim, generator=g).to(device),
                "pooled_prompt_embeds": torch.randn(b, den.pooled_projection_dim, generator=g).to(device)}
    if family == "wan":
        return {"prompt_embeds": torch.randn(b, n, den.text_dim, generator=g).to(device)}
    return {"prompt_embeds": torch.randn(b, n, den.joint_attention_dim, generator=g).to(device),
            "prompt_embeds_mask": torch.ones(b, n, dtype=torch.long, device=device)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mid"], choices=["tiny", "mid"])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is printed)")
    parser.add_argument("--iters", type=int, default=3, help="forward+backward passes per timed repeat")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    torch.set_num_threads(args.threads)
    print(f"{'family':<11} {'size':<5} {'params':>8} {'time ratio':>11} {'saved-mem ratio':>16}"
          + ("  cuda-peak ratio" if args.device.startswith("cuda") else ""))
    for family in args.families:
        for size in args.sizes:
            row = measure(family, size, args.repeats, args.iters, args.device, args.batch)
            line = f"{family:<11} {size:<5} {row['params_M']:>7.2f}M {row['time']:>11.3f} {row['saved_mem']:>16.3f}"
            if "cuda_peak" in row:
                line += f"  {row['cuda_peak']:>15.3f}"
            print(line, flush=True)
    print("targets: time ratio <= 1.03, memory ratio <= 1.05 (medians of --repeats, same weights and inputs)")


if __name__ == "__main__":
    main()
