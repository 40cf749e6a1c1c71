"""The exact causal oracle's pieces: AR(1) videos, their closed-form denoiser (checked against brute-force Gaussian
conditioning), the metrics of benchmarks/oracle_causal.py, the loader and the teacher-initialised fake score."""

import torch

from fastgen.datasets.ar1_video import AR1VideoLoader, make_ar1
from fastgen.networks.toy_causal import AR1ResidualVideoNet, AR1VideoDenoiser
from fastgen.utils.ar1_video import gaussian_w2, video_metrics

F64 = torch.float64


def test_denoiser_equals_brute_force_gaussian_conditioning_with_per_frame_times():
    net = AR1VideoDenoiser(dim=2, a=0.7, mean=[0.5, -1.0], std=[1.5, 0.5])
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(3, 2, 4, 1, 1, generator=g, dtype=F64)
    t = torch.rand(3, 4, generator=g, dtype=F64) * 0.9 + 0.05
    got = net(x_t, t)
    # brute force over the flattened video v = vec([D, T]): x0 ~ N(m, S), x_t = A x0 + s eps
    idx = torch.arange(4, dtype=F64)
    k = 0.7 ** (idx[:, None] - idx[None]).abs()
    cov = torch.block_diag(1.5**2 * k, 0.5**2 * k)
    m = torch.tensor([0.5] * 4 + [-1.0] * 4, dtype=F64)
    for b in range(3):
        a = torch.diag((1 - t[b]).repeat(2))  # rf: alpha = 1 - t, sigma = t
        s2 = torch.diag((t[b] ** 2).repeat(2))
        gain = cov @ a @ torch.linalg.inv(a @ cov @ a + s2)
        expected = m + gain @ (x_t[b, :, :, 0, 0].reshape(-1) - a @ m)
        torch.testing.assert_close(got[b, :, :, 0, 0].reshape(-1), expected, atol=1e-10, rtol=0)
    assert torch.allclose(net(x_t, torch.zeros(3, dtype=F64)), x_t)  # t = 0: the clean input itself


def test_ar1_samples_metrics_and_loader():
    process = make_ar1(3, 0.9)
    videos = process.sample(4000, 6, torch.Generator().manual_seed(1))
    z = (videos[..., 0, 0] - process.mean[None, :, None]) / process.std[None, :, None]
    assert abs(float((z[:, :, 1:] * z[:, :, :-1]).mean()) - 0.9) < 0.03
    good = video_metrics(videos, process)
    bad = video_metrics(torch.randn_like(videos), process)
    assert good["marginal_w2"] < 0.1 and good["corr_err"] < 0.08
    assert bad["marginal_w2"] > 1.0 and bad["corr_err"] > 0.8
    eye = torch.eye(2, dtype=F64)
    assert abs(gaussian_w2(torch.zeros(2, dtype=F64), eye, torch.ones(2, dtype=F64), 4 * eye) - (2 + 2) ** 0.5) < 1e-9
    batch = next(iter(AR1VideoLoader(dim=3, num_frames=4, batch_size=5, seed=3)))
    again = next(iter(AR1VideoLoader(dim=3, num_frames=4, batch_size=5, seed=3)))
    assert batch["real"].shape == (5, 3, 4, 1, 1) and torch.equal(batch["real"], again["real"])


def test_residual_fake_score_starts_as_the_exact_teacher():
    fake = AR1ResidualVideoNet(dim=4, hidden_dim=16, num_heads=2, a=0.9)
    teacher = AR1VideoDenoiser(dim=4, a=0.9)
    x_t = torch.randn(2, 4, 6, 1, 1)
    t = torch.full((2,), 0.6, dtype=F64)
    torch.testing.assert_close(fake(x_t, t), teacher(x_t, t), atol=1e-6, rtol=0)
    with torch.no_grad():
        fake.out_proj.weight.normal_()
    assert (fake(x_t, t) - teacher(x_t, t)).abs().max() > 1e-3


def test_vsd_gradient_on_videos_moves_a_shifted_generator_towards_the_teacher():
    """The DMD/VSD gradient for videos [B, D, T, 1, 1] with t [B], with the EXACT fake score of a generator that is
    the AR(1) process shifted by +0.5 in every dimension: the gradient on the shift must point back (it is what the
    oracle diagnosis relies on; benchmarks/oracle_causal_dmd_check.py)."""
    from fastgen.methods.common_loss import variational_score_distillation_loss

    teacher = AR1VideoDenoiser(dim=4, a=0.9).double()
    process = teacher.process
    fake = AR1VideoDenoiser(dim=4, a=0.9, mean=(process.mean + 0.5).tolist(), std=process.std.tolist()).double()
    shift = torch.full((4,), 0.5, dtype=torch.float64, requires_grad=True)
    gen = process.sample(512, 8, torch.Generator().manual_seed(0)) + shift[None, :, None, None, None]
    t = torch.rand(512, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.96 + 0.02
    x_t = teacher.noise_scheduler.forward_process(gen.detach(), torch.randn_like(gen), t)
    variational_score_distillation_loss(gen, teacher(x_t, t, fwd_pred_type="x0"), fake(x_t, t, fwd_pred_type="x0")
                                        ).backward()
    assert (shift.grad > 0).all()  # descent lowers the shift in every dimension
    assert float(shift.grad.min()) > 0.2 * float(shift.grad.max())
