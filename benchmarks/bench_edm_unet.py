"""Forward+backward throughput of EDMPrecond (SongUNet) on CPU: a tiny test-size net vs the real CIFAR-10 net.

    python benchmarks/bench_edm_unet.py [--threads N] [--cifar-iters 3] [--tiny-iters 20]

Prints samples/s for both and their ratio (how much cheaper the tiny configuration the tests use is). Runs in well
under two minutes on a 2-core CPU: the CIFAR-10 size (32x32, 128 channels, mult [2, 2, 2], 4 blocks, attention at
16x16, ~56M parameters) gets only a few iterations.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from fastgen.networks.EDM.network import EDMPrecond  # noqa: E402

CIFAR10 = dict(img_resolution=32, img_channels=3, label_dim=10, augment_dim=9, model_type="SongUNet",
               model_channels=128, channel_mult=[2, 2, 2], channel_mult_noise=1, embedding_type="positional",
               encoder_type="standard", decoder_type="standard", resample_filter=[1, 1], dropout=0.0,
               num_blocks=4, attn_resolutions=[16])  # fmt: skip
TINY = dict(img_resolution=16, img_channels=3, label_dim=10, augment_dim=9, model_type="SongUNet", model_channels=16,
            channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8], dropout=0.0)  # fmt: skip


def train_step_throughput(net_kwargs: dict, batch: int, iters: int, warmup: int = 1) -> tuple[float, int]:
    """(samples per second of forward + backward, parameter count)."""
    torch.manual_seed(0)
    net = EDMPrecond(**net_kwargs).train()
    res = net_kwargs["img_resolution"]
    x = torch.randn(batch, 3, res, res)
    t = torch.exp(torch.randn(batch, dtype=torch.float64) * 1.2 - 1.2)
    cond = {"orig_condition": F.one_hot(torch.arange(batch) % 10, 10).float(), "aug_condition": torch.zeros(batch, 9)}
    for i in range(warmup + iters):
        if i == warmup:
            start = time.perf_counter()
        loss = (net(x, t, cond) - x).square().mean()
        loss.backward()
        net.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    return batch * iters / elapsed, sum(p.numel() for p in net.parameters())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--tiny-iters", type=int, default=20)
    parser.add_argument("--cifar-iters", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [
        ("tiny 16x16 ch16 [1,2] x1", *train_step_throughput(TINY, batch=8, iters=args.tiny_iters)),
        ("CIFAR-10 32x32 ch128 [2,2,2] x4", *train_step_throughput(CIFAR10, batch=2, iters=args.cifar_iters)),
    ]
    print(f"EDMPrecond(SongUNet) forward+backward on CPU, {torch.get_num_threads()} thread(s)")
    print(f"{'config':<34}{'params':>12}{'samples/s':>12}")
    for name, rate, params in rows:
        print(f"{name:<34}{params:>12,}{rate:>12.2f}")
    print(f"ratio tiny / CIFAR-10: {rows[0][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
