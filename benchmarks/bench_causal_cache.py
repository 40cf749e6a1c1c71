"""Streaming video generation with the KV cache vs recomputing the whole prefix: time per chunk, CausalWan on CPU.

    python benchmarks/bench_causal_cache.py [--chunks 8] [--steps 4] [--repeats 3] [--threads 1] [--out FILE.md]

A small random CausalWan (4 blocks, width 128, 3-frame chunks of 20x20 latents = 300 tokens per chunk: about the
attention-to-MLP work ratio of Wan 1.3B at 480p) generates a video chunk by chunk, `--steps` denoising calls per chunk, two ways that give the same frames (checked, <= 1e-4):
  * cached: each step is an is_ar=True call on the chunk alone against the KV cache, then one store_kv=True pass on
    the finished chunk (as causal_generate does): the work per chunk stays ~constant, the total grows linearly;
  * recompute: no cache; each step runs is_ar=False over all frames so far (the finished frames at t = 0, the chunk
    at its step's t) and keeps the last chunk: the work per chunk grows with the prefix, the total quadratically.
Prints per chunk the median time of each (over --repeats runs), the running totals and their ratio (target at 8
chunks: cached / recompute <= 0.35), with the machine load (`uptime`) before and after, as a markdown table.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _args import benchmark_parser  # noqa: E402

CHUNK, HW = 3, 20
TRANSFORMER = dict(patch_size=[1, 2, 2], num_attention_heads=4, attention_head_dim=32, in_channels=4, out_channels=4,
                   text_dim=32, freq_dim=32, ffn_dim=512, num_layers=4, rope_max_seq_len=64)


def _load() -> str:
    return os.popen("uptime").read().strip()


def build(chunks: int):
    import torch

    from fastgen.networks.hf import CausalWan

    torch.manual_seed(0)
    return CausalWan(model_id="bench/wan", load_pretrained=False, component_configs={"transformer": TRANSFORMER},
                     chunk_size=CHUNK, total_num_frames=CHUNK * chunks, attention_backend="sdpa").eval()


def generate(net, noise, cond, t_list, cached: bool):
    """Few-step chunk-by-chunk generation (x0 prediction re-noised to the next t); returns (video, seconds per chunk)."""
    import torch

    b, frames = noise.shape[0], noise.shape[2]
    done, times = [], []
    net.clear_caches()
    for start in range(0, frames, CHUNK):
        tic = time.perf_counter()
        x = noise[:, :, start:start + CHUNK]
        for i, t in enumerate(t_list[:-1]):
            tt = torch.full((b,), t, dtype=torch.float64)
            if cached:
                flow = net(x, tt, cond, is_ar=True, cur_start_frame=start)
            else:
                prefix = torch.cat([*done, x], dim=2)
                t_frames = torch.cat([torch.zeros(b, start, dtype=torch.float64), tt[:, None].expand(b, CHUNK)], 1)
                flow = net(prefix, t_frames, cond)[:, :, start:]
            x0 = x - float(t) * flow  # rf: x_t = (1 - t) x0 + t eps, flow = eps - x0
            t_next = float(t_list[i + 1])
            x = x0 if t_next == 0 else (1 - t_next) * x0 + t_next * torch.randn_like(x0)
        if cached:
            net(x, torch.zeros(b, dtype=torch.float64), cond, is_ar=True, store_kv=True, cur_start_frame=start)
        done.append(x)
        times.append(time.perf_counter() - tic)
    return torch.cat(done, dim=2), times


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="denoising calls per chunk (the students' 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    load_before = _load()
    net = build(args.chunks)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 4, CHUNK * args.chunks, HW, HW, generator=g)
    cond = {"prompt_embeds": torch.randn(1, 16, 32, generator=g)}
    t_list = torch.linspace(0.999, 0.0, args.steps + 1).tolist()
    runs = {True: [], False: []}
    with torch.no_grad():
        generate(net, noise[:, :, :CHUNK * 2], cond, t_list, True)  # warm-up
        for _ in range(args.repeats):
            for cached in (True, False):
                torch.manual_seed(2)  # the same re-noising draws on both sides
                video, times = generate(net, noise, cond, t_list, cached)
                runs[cached].append((video, times))
    diff = (runs[True][0][0] - runs[False][0][0]).abs().max().item()
    per_chunk = {c: [statistics.median(r[1][k] for r in runs[c]) for k in range(args.chunks)] for c in runs}
    tokens = CHUNK * (HW // 2) ** 2
    lines = [
        f"CausalWan {TRANSFORMER['num_layers']} blocks x width {TRANSFORMER['num_attention_heads'] * TRANSFORMER['attention_head_dim']}, "
        f"{CHUNK}-frame chunks of {tokens} tokens, {args.steps} steps per chunk, batch 1, {args.threads} thread(s), "
        f"median of {args.repeats}; max |cached - recompute| = {diff:.1e}",
        "",
        "| chunk | cached s | recompute s | cached total s | recompute total s | total ratio |",
        "|---|---|---|---|---|---|",
    ]
    tot_c = tot_r = 0.0
    for k in range(args.chunks):
        tot_c += per_chunk[True][k]
        tot_r += per_chunk[False][k]
        lines.append(f"| {k + 1} | {per_chunk[True][k]:.3f} | {per_chunk[False][k]:.3f} | {tot_c:.3f} | {tot_r:.3f} | "
                     f"{tot_c / tot_r:.2f} |")
    lines += ["", f"load before: {load_before}", f"load after:  {_load()}",
              f"ratio of totals at {args.chunks} chunks: {tot_c / tot_r:.2f} (target <= 0.35)"]
    text = "\n".join(lines)
    print(text)
    if diff > 1e-4:
        raise SystemExit(f"cached and recomputed generations differ by {diff:.2e}: the KV cache is wrong")
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
