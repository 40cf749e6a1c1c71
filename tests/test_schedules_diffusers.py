"""Video schedules equal the diffusers schedulers the model families ship with (built offline from their configs).

CogVideoX: CogVideoXDPMScheduler / CogVideoXDDIMScheduler (scaled-linear betas, SNR shift, zero-terminal-SNR
rescale, trailing spacing); Wan / Cosmos: fixed-shift flow sigmas of UniPCMultistepScheduler and
FlowMatchEulerDiscreteScheduler on the rf schedule.
"""

import pytest
import torch
from diffusers import (
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from fastgen.networks.noise_schedule import flow_shift_t_list, get_noise_schedule, shifted_sigmas

F64 = torch.float64


def _cogvideox_config(snr_shift_scale):
    """The scheduler_config.json of THUDM/CogVideoX-2b (shift 3.0) and -5b (shift 1.0), written out here."""
    return {
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
        "clip_sample": False, "clip_sample_range": 1.0, "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True, "sample_max_value": 1.0, "set_alpha_to_one": True, "steps_offset": 0,
        "timestep_spacing": "trailing", "snr_shift_scale": snr_shift_scale,
    }


@pytest.mark.parametrize("snr_shift_scale", [3.0, 1.0])
@pytest.mark.parametrize("scheduler_cls", [CogVideoXDPMScheduler, CogVideoXDDIMScheduler])
def test_cogvideox_schedule_equals_diffusers(scheduler_cls, snr_shift_scale):
    ref = scheduler_cls(**_cogvideox_config(snr_shift_scale))
    ours = get_noise_schedule("cogvideox", snr_shift_scale=snr_shift_scale)
    abar = ref.alphas_cumprod.to(F64)
    steps = torch.arange(1000, dtype=F64)
    # every training step i sits at t = i / 1000
    torch.testing.assert_close(ours.alpha(steps / 1000), abar.sqrt(), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.sigma(steps / 1000), (1 - abar).sqrt(), atol=1e-6, rtol=0)
    assert abar[-1].item() == 0.0 and ours.alpha(0.999).item() < 1e-9  # zero terminal SNR kept
    # the sampling grid diffusers uses (trailing spacing), read as our times
    for n in (1, 2, 4, 50):
        ref.set_timesteps(n)
        t = ref.timesteps.to(F64) / 1000
        torch.testing.assert_close(ours.alpha(t), abar[ref.timesteps].sqrt(), atol=1e-6, rtol=0)
        torch.testing.assert_close(ours.sigma(t), (1 - abar[ref.timesteps]).sqrt(), atol=1e-6, rtol=0)
    # the reference's CogVideoX few-step t_list lands on training steps 999, 937, 833, 624
    t_list = torch.tensor([0.999, 0.937, 0.833, 0.624], dtype=F64)
    torch.testing.assert_close(ours.alpha(t_list), abar[[999, 937, 833, 624]].sqrt(), atol=1e-6, rtol=0)


def test_old_cogvideox_order_was_off_by_more_than_1e_3():
    """Guards the test itself: rescaling before the SNR shift (the previous code) is visibly different."""
    from fastgen.networks.noise_schedule import rescale_zero_terminal_snr, scaled_linear_alphas_cumprod

    base = rescale_zero_terminal_snr(scaled_linear_alphas_cumprod())
    wrong = base / (3.0 + (1 - 3.0) * base)
    ref = CogVideoXDPMScheduler(**_cogvideox_config(3.0)).alphas_cumprod.to(F64)
    assert (wrong - ref).abs().max().item() > 1e-3


def test_shifted_sigmas_values():
    s = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=F64)
    torch.testing.assert_close(shifted_sigmas(s, 5.0), torch.tensor([0.0, 1.25 / 2, 2.5 / 3, 3.75 / 4, 1.0], dtype=F64))
    torch.testing.assert_close(shifted_sigmas(s, 1.0), s)
    assert shifted_sigmas(0.5, 3.0) == 0.75
    # diffusers' exponential (resolution-dependent) shift is the same map with s = e^mu
    ref = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    sig = torch.linspace(0.05, 1.0, 20, dtype=F64)
    torch.testing.assert_close(shifted_sigmas(sig, torch.tensor(0.8, dtype=F64).exp()), ref.time_shift(0.8, 1.0, sig))
    with pytest.raises(ValueError, match="flow shift must be > 0"):
        shifted_sigmas(s, 0.0)


@pytest.mark.parametrize("shift", [5.0, 3.0])
@pytest.mark.parametrize("num_steps", [1, 2, 4, 50])
def test_wan_unipc_flow_sigmas_equal_rf_t_list(shift, num_steps):
    ref = UniPCMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
        solver_order=2, final_sigmas_type="zero",
    )
    ref.set_timesteps(num_steps)
    rf = get_noise_schedule("rf", max_t=1.0)
    t = flow_shift_t_list(num_steps, shift, kind="unipc")
    assert len(t) == num_steps + 1 and t[-1].item() == 0.0
    torch.testing.assert_close(rf.sigma(t), ref.sigmas.to(F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(rf.alpha(t), 1 - ref.sigmas.to(F64), atol=1e-6, rtol=0)
    # UniPC hands the network integer timesteps: trunc(1000 * sigma)
    assert torch.equal((t[:-1] * 1000).to(torch.int64), ref.timesteps)


@pytest.mark.parametrize("shift", [5.0, 3.0])
@pytest.mark.parametrize("num_steps", [1, 2, 4, 50])
def test_flow_match_euler_sigmas_equal_rf_t_list(shift, num_steps):
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    ref.set_timesteps(num_steps)
    t = flow_shift_t_list(num_steps, shift, kind="euler")
    rf = get_noise_schedule("rf", max_t=1.0)
    torch.testing.assert_close(rf.sigma(t), ref.sigmas.to(F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(t[:-1], ref.timesteps.to(F64) / 1000, atol=1e-6, rtol=0)


def test_flow_shift_t_list_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        flow_shift_t_list(4, 5.0, kind="ddim")
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        flow_shift_t_list(0, 5.0)
