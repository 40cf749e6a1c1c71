"""DMD2 step overhead: DMD2Model's training step versus the bare network work it has to do, on the same batch.

"Bare" is a hand-written loop with the same network calls and nothing else: for a generator step, G forward +
backward through F (no grad), T (features) and D heads + the net optimizer step; for a critic step, G forward (no
grad), F forward + backward (DSM), T features of fake and real, D forward + backward + F/D optimizer steps.
DMD2 runs `single_train_step` + backward + `optimizers_schedulers_step` + `optimizers_zero_grad`, as the trainer does.
A freq-5 cycle (1 generator + 4 critic steps) is timed A/B alternately; medians are compared. Target: ratio ~1.0.

    .venv/bin/python benchmarks/bench_dmd2.py [--size tiny|cifar] [--batch 8] [--cycles 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastgen.configs.methods import config_dmd2  # noqa: E402
from fastgen.methods import DMD2Model  # noqa: E402

SIZES = {
    # (model_channels, channel_mult, resolution, discriminator all_res, in_channels)
    "tiny": (16, [1, 2], 16, [16, 8], [16, 32]),
    "cifar": (128, [2, 2, 2], 32, [32, 16, 8], 256),
}


def build(size: str, device: str) -> DMD2Model:
    channels, mult, res, all_res, in_ch = SIZES[size]
    config = config_dmd2.create_config()
    m = config.model
    m.net.model_channels, m.net.channel_mult, m.net.img_resolution = channels, mult, res
    m.discriminator.all_res, m.discriminator.in_channels = all_res, in_ch
    m.discriminator.feature_indices = list(range(len(all_res)))
    m.input_shape, m.device, m.student_update_freq = [3, res, res], device, 5
    torch.manual_seed(0)
    model = DMD2Model(m)
    model.on_train_begin()
    model.init_optimizers()
    return model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def dmd2_step(model, data, iteration):
    loss_map, _ = model.single_train_step(data, iteration)
    loss_map["total_loss"].backward()
    model.optimizers_schedulers_step(iteration)
    model.optimizers_zero_grad(iteration)


def bare_step(model, data, iteration):
    """The same network work, written directly (weights frozen/unfrozen once, outside the timed loop)."""
    G, T, Fs, D = model.net, model.teacher, model.fake_score, model.discriminator
    real, cond = data["real"], data["condition"]
    n, idx = real.shape[0], D.feature_indices
    t_max = torch.full((n,), 80.0, dtype=torch.float64, device=real.device)
    t = torch.rand(n, dtype=torch.float64, device=real.device) * 5 + 0.01
    sigma = t.to(real.dtype)[:, None, None, None]
    z, eps = torch.randn_like(real), torch.randn_like(real)
    if iteration % 5 == 0:
        gen = G(80.0 * z, t_max, cond, fwd_pred_type="x0")
        x_t = gen + sigma * eps
        with torch.no_grad():
            fake_x0 = Fs(x_t, t, cond, fwd_pred_type="x0")
        teacher_x0, feats = T(x_t, t, cond, feature_indices=idx, fwd_pred_type="x0")
        with torch.no_grad():
            w = 1 / ((gen - teacher_x0).abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
            target = gen - (fake_x0 - teacher_x0) * w
        loss = 0.5 * F.mse_loss(gen, target) + 1e-3 * F.softplus(-D(feats)).mean()
        loss.backward()
        model.optimizers["net"].step()
    else:
        with torch.no_grad():
            gen = G(80.0 * z, t_max, cond, fwd_pred_type="x0")
        x_t = gen + sigma * eps
        loss = F.mse_loss(Fs(x_t, t, cond), gen)
        with torch.no_grad():
            fake_feats = T(x_t, t, cond, feature_indices=idx, return_features_early=True)
            real_feats = T(real + sigma * torch.randn_like(real), t, cond, feature_indices=idx,
                           return_features_early=True)
        loss = loss + F.softplus(D(fake_feats)).mean() + F.softplus(-D(real_feats)).mean()
        loss.backward()
        model.optimizers["fake_score"].step()
        model.optimizers["discriminator"].step()
    for opt in model.optimizers.values():
        opt.zero_grad(set_to_none=True)


def time_cycle(step_fn, model, data, prepare=None) -> float:
    start = time.perf_counter()
    for iteration in range(1, 6):
        if prepare is not None:
            prepare(iteration)
        step_fn(model, data, iteration)
    sync(model.device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = build(args.size, args.device)
    res = SIZES[args.size][2]
    g = torch.Generator().manual_seed(0)
    data = {"real": torch.rand(args.batch, 3, res, res, generator=g).mul(2).sub(1).to(model.device),
            "condition": torch.eye(10)[torch.arange(args.batch) % 10].to(model.device)}
    data["neg_condition"] = torch.zeros_like(data["condition"])

    def bare_prepare(iteration):  # the requires_grad switch the bare loop needs too, kept out of its timing
        model.set_trainable(["net"] if iteration % 5 == 0 else model.critic_names)

    for _ in range(2):  # warm-up (allocator, lazy init)
        time_cycle(dmd2_step, model, data)
        time_cycle(bare_step, model, data, bare_prepare)
    dmd2_times, bare_times = [], []
    for _ in range(args.cycles):
        dmd2_times.append(time_cycle(dmd2_step, model, data))
        bare_times.append(time_cycle(bare_step, model, data, bare_prepare))
    dmd2_t, bare_t = statistics.median(dmd2_times), statistics.median(bare_times)
    print(f"device {model.device}, size {args.size}, batch {args.batch}: per freq-5 cycle (1 G + 4 critic steps)")
    print(f"  DMD2Model  {dmd2_t * 1000:9.1f} ms")
    print(f"  bare nets  {bare_t * 1000:9.1f} ms")
    print(f"  ratio DMD2 / bare = {dmd2_t / bare_t:.3f}")


if __name__ == "__main__":
    main()
