"""Noise schedules: identities, float64 conversions, SNR inversion, time sampling, t lists, per-chunk times."""

import itertools
import math

import pytest
import torch
from scipy import stats

from fastgen.networks.noise_schedule import (
    PRED_TYPES,
    get_noise_schedule,
    rescale_zero_terminal_snr,
    scaled_linear_alphas_cumprod,
)

F64 = torch.float64
SCHEDULES = ["edm", "rf", "trig", "sd", "sdxl", "cogvideox"]
# interior time ranges (away from the ends where alpha or sigma vanish)
INTERIOR = {"edm": (0.01, 50.0), "rf": (0.02, 0.98), "trig": (0.02, 1.5), "sd": (0.02, 0.98),
            "sdxl": (0.02, 0.98), "cogvideox": (0.02, 0.95)}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _interior_t(name, n=64):
    lo, hi = INTERIOR[name]
    return torch.linspace(lo, hi, n, dtype=F64)


def test_known_values():
    edm, rf, trig = get_noise_schedule("edm"), get_noise_schedule("rectified_flow"), get_noise_schedule("trig")
    assert (edm.min_t, edm.max_t, edm.max_sigma) == (0.002, 80.0, 80.0)
    assert edm.alpha(3.0).item() == 1.0 and edm.sigma(3.0).item() == 3.0
    assert rf.alpha(0.25).item() == 0.75 and rf.sigma(0.25).item() == 0.25 and rf.max_t == 0.999
    assert rf.max_sigma == 0.999
    assert abs(trig.alpha(math.pi / 3).item() - 0.5) < 1e-15
    assert abs(trig.sigma(math.pi / 3).item() - math.sqrt(3) / 2) < 1e-15
    assert trig.max_t == math.pi / 2 and edm.t_precision == F64


def test_sd_table_matches_scaled_linear_betas_at_grid_points():
    sd = get_noise_schedule("sd")
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=F64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    i = torch.tensor([0, 1, 10, 500, 998, 999])
    torch.testing.assert_close(sd.alpha(i.double() / 1000) ** 2, abar[i], atol=1e-13, rtol=0)
    assert abs(abar[0].item() - (1 - 0.00085)) < 1e-15 and abs(abar[-1].item() - 0.004660) < 1e-6
    assert sd.max_t == 0.999 and get_noise_schedule("sdxl").name == "sdxl"


def test_cogvideox_zero_terminal_snr_and_shift():
    abar = rescale_zero_terminal_snr(scaled_linear_alphas_cumprod())
    base = scaled_linear_alphas_cumprod()
    assert abar[-1].item() == 0.0 and abs(abar[0].item() - base[0].item()) < 1e-15
    s1, s3 = get_noise_schedule("cogvideox", snr_shift_scale=1.0), get_noise_schedule("cogvideox")
    # SNR / 3 first, then the rescale (diffusers' order): the first entry keeps the shifted SNR, the last is 0
    snr0 = base[0] / (1 - base[0])
    assert abs((s3.sqrt_snr(0.0) ** 2).item() - snr0.item() / 3.0) < 1e-9 * snr0.item()
    assert abs((s1.sqrt_snr(0.0) ** 2).item() - snr0.item()) < 1e-9 * snr0.item()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    assert (s3.sqrt_snr(t) < s1.sqrt_snr(t)).all()
    # terminal alpha-bar (0 after the rescale) floored at 1e-20 so log alpha-bar stays finite
    assert abs(s1.alpha(0.999).item() - 1e-10) < 1e-20 and abs(s3.alpha(0.999).item() - 1e-10) < 1e-20
    assert get_noise_schedule("sd").alpha(0.999).item() ** 2 > 1e-3  # sd: no rescale


def test_alphas_schedule_from_a_table_interpolates_log_alpha_bar():
    table = torch.tensor([0.99, 0.9, 0.5, 0.1], dtype=F64)
    s = get_noise_schedule("alphas", alphas_cumprod=table)
    assert s.max_t == 0.75 and s.name == "alphas"
    torch.testing.assert_close(s.alpha(torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=F64)) ** 2, table)
    mid = s.alpha(0.375) ** 2  # halfway between entries 1 and 2: geometric mean of alpha-bar
    assert abs(mid.item() - math.sqrt(0.9 * 0.5)) < 1e-12
    with pytest.raises(ValueError, match="non-increasing"):
        get_noise_schedule("alphas", alphas_cumprod=[0.5, 0.9])


@pytest.mark.parametrize("name", ["trig", "sd", "sdxl", "cogvideox"])
def test_variance_preserving(name):
    s = get_noise_schedule(name)
    t = torch.linspace(0, s.max_t, 513, dtype=F64)
    torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", SCHEDULES)
def test_snr_monotone_and_invertible(name):
    s = get_noise_schedule(name)
    t = torch.linspace(max(s.min_t, 1e-3), s.max_t, 2001, dtype=F64)
    snr = s.sqrt_snr(t)
    assert (snr[1:] < snr[:-1]).all()
    t_in = _interior_t(name)
    torch.testing.assert_close(s.sqrt_snr_to_t(s.sqrt_snr(t_in)), t_in, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", SCHEDULES)
def test_derivatives_match_finite_differences(name):
    s = get_noise_schedule(name)
    # for tables, stay inside one linear segment of log alpha-bar: t = (i + 0.5) / 1000
    t = (torch.tensor([20, 300, 700, 900], dtype=F64) + 0.5) / 1000 if name in ("sd", "sdxl", "cogvideox") \
        else _interior_t(name, 8)
    h = 1e-7
    for f, fp in ((s.alpha, s.alpha_prime), (s.sigma, s.sigma_prime)):
        fd = (f(t + h) - f(t - h)) / (2 * h)
        torch.testing.assert_close(fp(t), fd, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", SCHEDULES)
def test_conversion_round_trips_float64(name):
    s = get_noise_schedule(name)
    g = _gen()
    t = _interior_t(name, 16)
    x0, eps = torch.randn(16, 3, 4, generator=g, dtype=F64), torch.randn(16, 3, 4, generator=g, dtype=F64)
    x_t = s.forward_process(x0, eps, t)
    truth = {
        "x0": x0,
        "eps": eps,
        "v": s.alpha(t)[:, None, None] * eps - s.sigma(t)[:, None, None] * x0,
        "flow": s.cond_velocity(x0, eps, t),
    }
    for src, tgt in itertools.product(PRED_TYPES, PRED_TYPES):
        out = s.convert_model_output(x_t, truth[src], t, src, tgt)
        torch.testing.assert_close(out, truth[tgt], atol=1e-10, rtol=1e-10, msg=f"{name}: {src} -> {tgt}")
        back = s.convert_model_output(x_t, out, t, tgt, src)
        torch.testing.assert_close(back, truth[src], atol=1e-10, rtol=1e-10, msg=f"{name}: {src} <-> {tgt}")
    torch.testing.assert_close(s.x0_to_eps(x_t, x0, t), eps, atol=1e-10, rtol=0)
    torch.testing.assert_close(s.flow_to_x0(x_t, truth["flow"], t), x0, atol=1e-10, rtol=0)


def test_flow_and_v_closed_forms():
    rf, trig, edm = get_noise_schedule("rf"), get_noise_schedule("trig"), get_noise_schedule("edm")
    x0, eps = torch.randn(4, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=F64)
    torch.testing.assert_close(rf.cond_velocity(x0, eps, t), eps - x0)
    x_t = trig.forward_process(x0, eps, t)
    torch.testing.assert_close(trig.x0_to_flow(x_t, x0, t), trig.x0_to_v(x_t, x0, t))
    torch.testing.assert_close(edm.x0_to_flow(edm.forward_process(x0, eps, t), x0, t), eps)


def test_dtype_and_video_time_broadcast():
    s = get_noise_schedule("rf")
    x0 = torch.randn(2, 4, 3, 5, 5)  # [B, C, T, H, W]
    eps = torch.randn_like(x0)
    t = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.3, 0.4]], dtype=F64)  # per-frame
    x_t = s.forward_process(x0, eps, t)
    assert x_t.dtype == torch.float32
    expected = (1 - t[1, 2]) * x0[1, :, 2].double() + t[1, 2] * eps[1, :, 2].double()
    torch.testing.assert_close(x_t[1, :, 2].double(), expected, atol=1e-6, rtol=0)
    out = s.convert_model_output(x_t, x0, t, "x0", "eps")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, eps, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="does not match the 3 frames"):  # never broadcast onto the channels
        s.forward_process(x0, eps, t[:, :2])



@pytest.mark.parametrize("name", SCHEDULES)
def test_coefficients_keep_the_time_dtype(name):
    # computed in float64 inside, returned in the dtype of t: float32 times give float32 coefficients
    s = get_noise_schedule(name)
    t64 = s.sample_t(5, generator=torch.Generator().manual_seed(0))
    t32 = t64.float()
    for fn in (s.alpha, s.sigma, s.alpha_prime, s.sigma_prime):
        out32, out64 = fn(t32), fn(t64)
        assert out32.dtype == torch.float32 and out64.dtype == F64
        torch.testing.assert_close(out32, fn(t32.double()).float(), atol=0, rtol=0)  # float64 math, then cast
    assert s.sigma(0.5).dtype == s.t_precision == F64

@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("dist", ["uniform", "lognormal", "logitnormal", "polynomial", "shifted", "log_t"])
def test_sampled_times_inside_bounds(name, dist):
    s = get_noise_schedule(name)
    if dist not in s.supported_time_dists:
        with pytest.raises(ValueError) as err:
            s.sample_t(10, dist)
        msg = str(err.value)
        assert dist in msg and s.name in msg and "polynomial" in msg
        return
    lo, hi = (0.05, 10.0) if name == "edm" else (0.05, 0.9)
    t = s.sample_t(4000, dist, min_t=lo, max_t=hi, generator=_gen())
    assert t.dtype == F64 and t.shape == (4000,)
    assert t.min() >= lo and t.max() <= hi and t.std() > 0


def test_requested_range_is_intersected_with_the_schedule():
    rf = get_noise_schedule("rf")
    t = rf.sample_t(1000, "uniform", min_t=0.002, max_t=80.0, generator=_gen())
    assert t.max() <= 0.999 and t.min() >= 0.002
    with pytest.raises(ValueError, match="does not intersect"):
        rf.sample_t(10, min_t=2.0, max_t=80.0)


def test_lognormal_moments_with_wide_bounds():
    s = get_noise_schedule("edm", min_t=1e-12, max_t=1e12)
    log_t = s.sample_t(200_000, "lognormal", train_p_mean=-1.1, train_p_std=2.0, generator=_gen()).log()
    assert abs(log_t.mean().item() + 1.1) < 0.02 and abs(log_t.std().item() - 2.0) < 0.02


def test_lognormal_truncation_is_exact_not_clamped():
    s = get_noise_schedule("edm")
    t = s.sample_t(100_000, "lognormal", train_p_mean=-1.1, train_p_std=2.0, min_t=1.0, max_t=2.0, generator=_gen())
    a, b = (0 + 1.1) / 2.0, (math.log(2.0) + 1.1) / 2.0
    expected_mean = -1.1 + 2.0 * stats.truncnorm.mean(a, b)
    assert abs(t.log().mean().item() - expected_mean) < 0.003
    assert (t == 1.0).sum() == 0 and (t == 2.0).sum() == 0  # no mass piled on the bounds
    # far in the upper tail: mirrored inverse CDF keeps precision
    far = s.sample_t(1000, "lognormal", train_p_mean=-5.0, train_p_std=0.5, min_t=10.0, max_t=20.0, generator=_gen())
    assert far.min() >= 10.0 and far.max() <= 20.0 and far.median() < 11.0


def test_logitnormal_polynomial_shifted_log_t_distributions():
    rf = get_noise_schedule("rf", min_t=0.0, max_t=1.0)
    t = rf.sample_t(100_000, "logitnormal", train_p_mean=0.3, train_p_std=1.2, generator=_gen())
    z = torch.log(t) - torch.log1p(-t)
    assert abs(z.mean().item() - 0.3) < 0.02 and abs(z.std().item() - 1.2) < 0.02
    trig = get_noise_schedule("trig")  # logit-normal of t / (pi/2)
    tt = trig.sample_t(100_000, "logitnormal", train_p_mean=0.0, train_p_std=1.0, generator=_gen()) / (math.pi / 2)
    assert abs(tt.median().item() - 0.5) < 0.01
    shifted = rf.sample_t(100_000, "shifted", shift=5.0, generator=_gen())
    assert abs(shifted.median().item() - 5 / 6) < 0.005  # u = 1/2 -> 5 * 0.5 / (1 + 4 * 0.5)
    edm = get_noise_schedule("edm")
    poly = edm.sample_t(100_000, "polynomial", generator=_gen())
    root = poly ** (1 / 7)  # uniform between min^(1/7) and max^(1/7)
    assert abs(root.mean().item() - (80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) < 0.005
    wide = get_noise_schedule("edm", min_t=math.exp(-1.1 - 5), max_t=math.exp(-1.1 + 5))
    lt = wide.sample_t(50_000, "log_t", log_t_df=0.01, generator=_gen()).log()
    assert abs(lt.median().item() + 1.1) < 0.05
    # the truncated log-Student-t CDF: P(|log t + 1.1| < 2 std) vs scipy's exact value
    z = (lt + 1.1) / 2.0
    p_inner = (stats.t.cdf(2, 0.01) - stats.t.cdf(-2, 0.01)) / (stats.t.cdf(2.5, 0.01) - stats.t.cdf(-2.5, 0.01))
    assert abs((z.abs() < 2).double().mean().item() - p_inner) < 0.01


def test_sample_t_generator_determinism_and_ignored_keys():
    s = get_noise_schedule("edm")
    kw = dict(time_dist_type="lognormal", t_list=None, min_r=0.0, quantize=False, sigma_data=0.5)
    a, b = s.sample_t(64, generator=_gen(3), **kw), s.sample_t(64, generator=_gen(3), **kw)
    c = s.sample_t(64, generator=_gen(4), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert get_noise_schedule("rf").default_time_dist == "logitnormal" and s.default_time_dist == "polynomial"


def test_unknown_schedule_and_bad_ranges():
    with pytest.raises(ValueError, match="edm"):
        get_noise_schedule("ddpm")
    with pytest.raises(ValueError, match="min_t"):
        get_noise_schedule("rf", max_t=1.5)


def test_t_lists():
    edm = get_noise_schedule("edm")
    tl = edm.get_t_list(4)
    assert tl.dtype == F64 and len(tl) == 5 and tl[0].item() == 80.0 and tl[-1].item() == 0.0
    roots = tl[:-1] ** (1 / 7)
    step = (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 4
    torch.testing.assert_close(roots[1:] - roots[:-1], torch.full((3,), step, dtype=F64), atol=1e-12, rtol=0)
    assert torch.equal(edm.get_t_list(1), torch.tensor([80.0, 0.0], dtype=F64))
    rf = get_noise_schedule("rf")
    torch.testing.assert_close(rf.get_t_list(3), torch.tensor([0.999, 0.666, 0.333, 0.0], dtype=F64))


def test_sample_from_t_list():
    rf = get_noise_schedule("rf")
    t_list = torch.tensor([0.999, 0.75, 0.5, 0.0], dtype=F64)
    t, ids = rf.sample_from_t_list(3000, t_list, return_ids=True, generator=_gen())
    assert torch.equal(t, t_list[ids]) and (t > 0).all()
    freq = torch.bincount(ids, minlength=4).double() / 3000
    assert freq[3] == 0 and (freq[:3] - 1 / 3).abs().max() < 0.04
    assert torch.equal(rf.next_in_t_list(torch.tensor([0.999, 0.5]), t_list), torch.tensor([0.75, 0.0], dtype=F64))


def test_sample_t_inhom_chunks():
    rf = get_noise_schedule("rf")
    t_list = torch.tensor([0.999, 0.75, 0.5, 0.0], dtype=F64)
    t, ids = rf.sample_t_inhom(400, 6, 3, t_list, return_ids=True, generator=_gen())
    assert t.shape == (400, 6) and t.dtype == F64 and torch.equal(t, t_list[ids])
    # chunks: frames [0, 3) and [3, 6), independent of each other
    assert (t[:, :3] == t[:, :1]).all() and (t[:, 3:] == t[:, 3:4]).all()
    assert (t[:, 0] != t[:, 3]).any()
    assert set(ids.unique().tolist()) == {0, 1, 2, 3}  # includes the clean t = 0
    with pytest.raises(ValueError, match="chunk_size=3 must divide the 7 frames"):  # no remainder chunk
        rf.sample_t_inhom(4, 7, 3, t_list)
    with pytest.raises(ValueError, match="chunk_size=3 must divide the 7 frames"):
        rf.sample_t_inhom_sft(4, 7, 3)
    sft = rf.sample_t_inhom_sft(300, 8, 4, time_dist_type="uniform", min_t=0.1, max_t=0.2, generator=_gen())
    assert sft.shape == (300, 8) and (sft[:, :4] == sft[:, :1]).all() and (sft[:, 4:] == sft[:, 4:5]).all()
    assert sft.min() >= 0.1 and sft.max() <= 0.2 and (sft[:, 0] != sft[:, 4]).all()


def test_latents():
    edm, rf = get_noise_schedule("edm"), get_noise_schedule("rf")
    noise = torch.randn(3, 2)
    torch.testing.assert_close(edm.latents(noise), noise * 80.0)
    torch.testing.assert_close(rf.latents(noise, 0.5), noise * 0.5)
    assert edm.latents(noise).dtype == torch.float32


def test_ddpm_linear_schedule_is_dits_table():
    """DiT's DDPM linear betas (1e-4 -> 0.02): alpha-bar at the grid equals the cumulative product exactly."""
    from fastgen.networks.DiT.convert import dit_alphas_cumprod

    schedule = get_noise_schedule("ddpm_linear")
    table = torch.tensor(dit_alphas_cumprod(), dtype=torch.float64)
    t = torch.arange(1000, dtype=torch.float64) / 1000
    torch.testing.assert_close(schedule.alpha(t) ** 2, table, rtol=1e-12, atol=1e-15)
    assert abs(float(table[-1]) - 4.0358e-5) < 1e-8
