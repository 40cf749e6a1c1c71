"""Diagnostics of the DMD-family causal methods on the exact AR(1) oracle (see results/oracle_causal.md).

The learned fake score F of CausVid / Self-Forcing is replaced by a near-exact one: the generator's training samples
are close to Gaussian (the student starts from CausalKD), so F(x_t, t) = E[x0 | x_t] of a Gaussian N(mu, Sigma) fitted
(full 32 x 32 video covariance) to 8192 generator samples drawn right before each generator step, with the same exit
step (Self-Forcing) as that step. Every iteration is then a generator step. If the method improves its KD init
with this F, the DMD gradient code is right and the learned F is what fails; `--fake-diag` measures that directly
(the learned F trained on a frozen KD generator vs the Gaussian F, per t).

    python benchmarks/oracle_causal_dmd_check.py self_forcing --iters 100
    python benchmarks/oracle_causal_dmd_check.py causvid --iters 60 [--chunk-t-order nondecreasing]
    python benchmarks/oracle_causal_dmd_check.py causvid --iters 60 --set backward_simulation=True
    python benchmarks/oracle_causal_dmd_check.py self_forcing --fake-diag --iters 400
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _args import benchmark_parser  # noqa: E402

FIT_SAMPLES = 8192


def gaussian_fake_score(schedule):
    """An nn.Module F(x_t, t) = E[x0 | x_t] under N(mu, Sigma) over whole videos; `fit(videos)` sets mu, Sigma."""
    import torch
    from torch import nn

    class GaussianFake(nn.Module):
        def fit(self, x):
            flat = x.double()[..., 0, 0].flatten(1)
            self.mu, self.cov = flat.mean(0), torch.cov(flat.T)

        def forward(self, x_t, t, condition=None, fwd_pred_type="x0", **kwargs):
            b, d, frames = x_t.shape[:3]
            t = torch.as_tensor(t, dtype=torch.float64)
            t = t[:, None].expand(b, frames) if t.ndim == 1 else t
            alpha = schedule.alpha(t)[:, None, :].expand(b, d, frames).flatten(1)
            sigma = schedule.sigma(t)[:, None, :].expand(b, d, frames).flatten(1)
            x = x_t.double()[..., 0, 0].flatten(1)
            m = alpha[:, :, None] * self.cov[None] * alpha[:, None, :] + torch.diag_embed(sigma**2)
            sol = torch.linalg.solve(m, (x - alpha * self.mu)[..., None])[..., 0]
            x0 = self.mu + (alpha * sol) @ self.cov
            return x0.reshape(b, d, frames, 1, 1).to(x_t.dtype)

    return GaussianFake()


def build(method: str, seed: int, iters: int, kd_path: str, freq: int, overrides: dict):
    import oracle_causal as oc
    import torch

    from fastgen.utils import instantiate

    config = oc.build_config(method, seed, iters, kd_path, overrides)
    config.model.student_update_freq = freq
    torch.manual_seed(seed)
    model = instantiate(config.model_class, config=config.model)
    model.on_train_begin()
    model.init_optimizers()
    return model, iter(instantiate(config.dataloader_train))


def step(model, data_iter, iteration: int) -> None:
    import torch

    data = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in next(data_iter).items()}
    loss_map, _ = model.single_train_step(data, iteration)
    loss_map["total_loss"].backward()
    for optimizer in model.optimizers.values():  # the toy configs' grad_clip callback (10)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 10.0)
    model.optimizers_schedulers_step(iteration)
    model.optimizers_zero_grad(iteration)


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("method", choices=("causvid", "self_forcing"))
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-t-order", default=None, help="CausVid: model.chunk_t_order (default: the config's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config.model overrides, e.g. backward_simulation=True net_optimizer.lr=1e-5")
    parser.add_argument("--fake-diag", action="store_true", help="measure the learned fake score instead")
    args = parser.parse_args(argv)

    import random

    import oracle_causal as oc
    import torch
    from _oracle_common import quiet_logs

    import fastgen.methods.causal.self_forcing as sf
    from fastgen.datasets.ar1_video import make_ar1

    quiet_logs()
    process = make_ar1(4, 0.9)
    exit_step = {"k": 3}
    sf.draw_exit_steps = lambda chunks, steps, same, last: [exit_step["k"]] * chunks  # one k, known to the fit
    rng = random.Random(args.seed)
    fit_real = process.sample(FIT_SAMPLES, oc.FRAMES, torch.Generator().manual_seed(123)).float()

    def report(model, iteration):
        scores = oc.evaluate(oc.student_videos(model), process)
        print(f"{iteration:5d} " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()), flush=True)

    with tempfile.TemporaryDirectory() as workdir:
        os.environ["DATA_ROOT_DIR"] = os.path.join(workdir, "data")
        kd_path = os.path.join(workdir, "kd.pth")
        torch.save(oc.train(oc.build_config("kd_causal", args.seed, None, None),
                            os.path.join(workdir, "kd")).net.state_dict(), kd_path)
        os.environ["FASTGEN_OUTPUT_ROOT"] = workdir
        overrides = {} if args.chunk_t_order is None else {"chunk_t_order": args.chunk_t_order}
        overrides.update(oc.parse_overrides(args.set))
        model, data_iter = build(args.method, args.seed, args.iters, kd_path, 10**9 if args.fake_diag else 1,
                                 overrides)
        gaussian = gaussian_fake_score(model.schedule)
        with torch.no_grad():
            model.set_trainable([])
            fit_gen = model.generate(fit_real, None)[0]
        if args.fake_diag:  # learned F on the frozen KD generator vs the Gaussian F of that generator
            gaussian.fit(fit_gen)
            x = fit_gen[:2048]
            for iteration in range(args.iters + 1):
                if iteration % args.every == 0:
                    with torch.no_grad():
                        cells = []
                        for tv in (0.1, 0.3, 0.5, 0.8):
                            t = torch.full((x.shape[0],), tv, dtype=torch.float64)
                            x_t = model.schedule.forward_process(x, torch.randn_like(x), t)
                            teacher = model.teacher(x_t, t, fwd_pred_type="x0")
                            exact, learned = gaussian(x_t, t) - teacher, model.fake_score(x_t, t, fwd_pred_type="x0") - teacher
                            cos = torch.nn.functional.cosine_similarity(learned.flatten(), exact.flatten(), 0)
                            cells.append(f"t={tv}: err/signal={float((learned - exact).norm() / exact.norm()):.2f} "
                                         f"cos={float(cos):.2f}")
                    print(f"{iteration:5d} " + "  ".join(cells), flush=True)
                if iteration < args.iters:
                    step(model, data_iter, iteration + 1)
            return
        model.fake_score = gaussian
        report(model, 0)
        for iteration in range(1, args.iters + 1):
            exit_step["k"] = rng.randrange(int(model.config.student_sample_steps))
            with torch.no_grad():
                model.set_trainable([])
                gaussian.fit(model.generate(fit_real, None)[0])
            step(model, data_iter, iteration)
            if iteration % args.every == 0:
                report(model, iteration)


if __name__ == "__main__":
    main()
