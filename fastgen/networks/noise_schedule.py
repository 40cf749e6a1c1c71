"""Noise schedules: x_t = alpha(t) * x0 + sigma(t) * eps, with time arithmetic in float64.

One small class per formulation (edm, rf, trig, alpha-bar tables for sd/sdxl/cogvideox). Each defines alpha, sigma
and their time derivatives; the base class derives everything else from those four functions, so prediction-type
conversions, the probability-flow velocity and SNR inversion work identically on every schedule.

Prediction types (all defined for every schedule):
  x0   the clean sample;            eps  the noise;
  v    alpha*eps - sigma*x0  (so x0 = (alpha*x - sigma*v) / (alpha^2 + sigma^2); the usual v on VP schedules);
  flow d x_t / d t = alpha'(t)*x0 + sigma'(t)*eps  (rf: eps - x0; trig: equals v).

Time tensors: float64 `t` of shape [] / [B] / [B, T]; [B] broadcasts over all trailing dims of x, and [B, T] over
[B, T, ...] - except for 5-D channels-first video x [B, C, T, H, W], where [B, T] indexes dim 2 (per-frame times).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch

PRED_TYPES = ("x0", "eps", "v", "flow")
TIME_DISTS = ("uniform", "lognormal", "logitnormal", "polynomial", "shifted", "log_t")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _dtype(precision) -> torch.dtype:
    if isinstance(precision, torch.dtype):
        return precision
    if precision not in _DTYPES:
        raise ValueError(f"t_precision must be one of {tuple(_DTYPES)}; got {precision!r}")
    return _DTYPES[precision]


def broadcast_t(t, x: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """t ([], [B] or [B, T]) as a `dtype` tensor on x's device that broadcasts against x (see module docstring)."""
    t = torch.as_tensor(t, dtype=dtype, device=x.device)
    if t.ndim == 0:
        return t
    if t.ndim == 2 and x.ndim == 5:
        if t.shape[1] != x.shape[2]:
            raise ValueError(f"per-frame t {tuple(t.shape)} does not match the {x.shape[2]} frames of video x "
                             f"{tuple(x.shape)} ([B, C, T, H, W]); pass t as [B] or [B, T]")
        return t[:, None, :, None, None]
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


class BaseNoiseSchedule(ABC):
    """Everything shared by the schedules; subclasses give alpha, sigma and their derivatives d/dt."""

    name = "base"
    default_pred_type = "x0"  # what networks on this schedule usually predict (informative only)
    default_time_dist = "uniform"
    supported_time_dists = TIME_DISTS
    t_domain = (0.0, math.inf)  # where alpha/sigma are defined
    t_unit: float | None = None  # length of a finite time domain (logitnormal / shifted act on t / t_unit)

    def __init__(self, min_t, max_t, num_steps=1000, rho=7.0, t_precision="float64", clamp_min=1e-6):
        lo, hi = self.t_domain
        if not (lo <= min_t < max_t <= hi):
            raise ValueError(
                f"{self.name} schedule needs {lo} <= min_t < max_t <= {hi}; got min_t={min_t}, max_t={max_t}"
            )
        self.min_t, self.max_t = float(min_t), float(max_t)
        self.num_steps, self.rho, self.clamp_min = int(num_steps), float(rho), float(clamp_min)
        self.t_precision = _dtype(t_precision)

    # -- the four functions a schedule defines (float64 tensors in, float64 out) --
    @abstractmethod
    def _alpha(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _sigma(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _alpha_prime(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _sigma_prime(self, t: torch.Tensor) -> torch.Tensor: ...

    def _t(self, t) -> torch.Tensor:
        return torch.as_tensor(t, dtype=torch.float64)

    def _out_dtype(self, t) -> torch.dtype:
        """A floating t tensor keeps its dtype (float32 times give float32 coefficients); numbers get t_precision."""
        return t.dtype if isinstance(t, torch.Tensor) and t.is_floating_point() else self.t_precision

    # public coefficients: computed in float64, returned in the caller's time dtype
    def alpha(self, t) -> torch.Tensor:
        return self._alpha(self._t(t)).to(self._out_dtype(t))

    def sigma(self, t) -> torch.Tensor:
        return self._sigma(self._t(t)).to(self._out_dtype(t))

    def alpha_prime(self, t) -> torch.Tensor:
        return self._alpha_prime(self._t(t)).to(self._out_dtype(t))

    def sigma_prime(self, t) -> torch.Tensor:
        return self._sigma_prime(self._t(t)).to(self._out_dtype(t))

    @property
    def max_sigma(self) -> float:
        return float(self.sigma(self.max_t))

    def _coeffs(self, x, t):
        tt = broadcast_t(t, x)
        return self._alpha(tt), self._sigma(tt)

    def _nonzero(self, v: torch.Tensor) -> torch.Tensor:
        return v.clamp_min(self.clamp_min)

    # -- forward process and prediction-type conversions (float64 inside, input dtype out) --
    def forward_process(self, x0, eps, t):
        """x_t = alpha(t) x0 + sigma(t) eps."""
        a, s = self._coeffs(x0, t)
        return (a * x0.to(torch.float64) + s * eps.to(torch.float64)).to(x0.dtype)

    def cond_velocity(self, x0, eps, t):
        """d x_t / dt along the conditional path = alpha'(t) x0 + sigma'(t) eps."""
        tt = broadcast_t(t, x0)
        return (self._alpha_prime(tt) * x0.to(torch.float64) + self._sigma_prime(tt) * eps.to(torch.float64)).to(
            x0.dtype
        )

    def _to_x0(self, x, out, tt, src):
        a, s = self._alpha(tt), self._sigma(tt)
        if src == "x0":
            return out
        if src == "eps":  # x0 = (x - sigma eps) / alpha
            return (x - s * out) / self._nonzero(a)
        if src == "v":  # x0 = (alpha x - sigma v) / (alpha^2 + sigma^2)
            return (a * x - s * out) / (a**2 + s**2)
        # flow: eps = (x - a x0)/s in flow = a' x0 + s' eps  =>  x0 = (s' x - s flow) / (s' a - a' s)
        ap, sp = self._alpha_prime(tt), self._sigma_prime(tt)
        return (sp * x - s * out) / (sp * a - ap * s)

    def _from_x0(self, x, x0, tt, tgt):
        a, s = self._alpha(tt), self._sigma(tt)
        if tgt == "x0":
            return x0
        eps = (x - a * x0) / self._nonzero(s)
        if tgt == "eps":
            return eps
        if tgt == "v":
            return a * eps - s * x0
        return self._alpha_prime(tt) * x0 + self._sigma_prime(tt) * eps

    def convert_model_output(self, x_t, out, t, src_pred_type, target_pred_type):
        """Re-express a prediction of type `src_pred_type` as `target_pred_type` (any of x0|eps|v|flow)."""
        for p in (src_pred_type, target_pred_type):
            if p not in PRED_TYPES:
                raise ValueError(f"prediction type must be one of {PRED_TYPES}; got {p!r}")
        if src_pred_type == target_pred_type:
            return out
        tt, x = broadcast_t(t, x_t), x_t.to(torch.float64)
        x0 = self._to_x0(x, out.to(torch.float64), tt, src_pred_type)
        return self._from_x0(x, x0, tt, target_pred_type).to(out.dtype)

    def x0_to_eps(self, x_t, x0, t):
        return self.convert_model_output(x_t, x0, t, "x0", "eps")

    def eps_to_x0(self, x_t, eps, t):
        return self.convert_model_output(x_t, eps, t, "eps", "x0")

    def x0_to_v(self, x_t, x0, t):
        return self.convert_model_output(x_t, x0, t, "x0", "v")

    def v_to_x0(self, x_t, v, t):
        return self.convert_model_output(x_t, v, t, "v", "x0")

    def x0_to_flow(self, x_t, x0, t):
        return self.convert_model_output(x_t, x0, t, "x0", "flow")

    def flow_to_x0(self, x_t, flow, t):
        return self.convert_model_output(x_t, flow, t, "flow", "x0")

    # -- signal-to-noise ratio --
    def sqrt_snr(self, t) -> torch.Tensor:
        """alpha(t) / sigma(t), decreasing in t."""
        t = self._t(t)
        return self._alpha(t) / self._sigma(t)

    def sqrt_snr_to_t(self, s) -> torch.Tensor:
        """Inverse of sqrt_snr on the schedule's domain; generic version: bisection (60 halvings, float64)."""
        s = self._t(s)
        lo = torch.full_like(s, self.t_domain[0])
        hi = torch.full_like(s, min(self.t_domain[1], 1e6))
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self.sqrt_snr(mid) > s  # still too clean: the answer lies later
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    # -- time sampling --
    def _range(self, min_t, max_t):
        lo = self.min_t if min_t is None else max(float(min_t), self.min_t)
        hi = self.max_t if max_t is None else min(float(max_t), self.max_t)
        if not lo < hi:
            raise ValueError(
                f"requested time range [{min_t}, {max_t}] does not intersect the {self.name} schedule's "
                f"[{self.min_t}, {self.max_t}]"
            )
        return lo, hi

    def sample_t(
        self,
        n,
        time_dist_type=None,
        train_p_mean=-1.1,
        train_p_std=2.0,
        min_t=None,
        max_t=None,
        shift=5.0,
        log_t_df=0.01,
        device="cpu",
        generator=None,
        **ignored,
    ) -> torch.Tensor:
        """n times (float64 [n]) in [min_t, max_t] (intersected with the schedule's range).

        Truncation is exact: each distribution is sampled by inverse CDF restricted to the range. Extra keys of a
        SampleTConfig (t_list, min_r, quantize, ...) are accepted and ignored.
        """
        dist = time_dist_type or self.default_time_dist
        if dist not in self.supported_time_dists:
            raise ValueError(
                f"time_dist_type {dist!r} is not supported by the {self.name} schedule; "
                f"expected one of {self.supported_time_dists}"
            )
        lo, hi = self._range(min_t, max_t)
        gen_device = generator.device if generator is not None else torch.device(device)
        u = torch.rand(n, dtype=torch.float64, device=gen_device, generator=generator)
        if dist == "uniform":
            t = lo + (hi - lo) * u
        elif dist == "lognormal":  # log t ~ N(mean, std) truncated to [log lo, log hi]
            t = torch.exp(_truncated_normal_icdf(u, train_p_mean, train_p_std, _log(lo), math.log(hi)))
        elif dist == "log_t":  # log t ~ mean + std * StudentT(df), truncated
            t = torch.exp(_truncated_student_t_icdf(u, log_t_df, train_p_mean, train_p_std, _log(lo), math.log(hi)))
        elif dist == "polynomial":  # Karras/EDM density: uniform in t^(1/rho)
            a, b = hi ** (1 / self.rho), lo ** (1 / self.rho)
            t = (a + u * (b - a)) ** self.rho
        elif dist == "logitnormal":  # logit(t / t_unit) ~ N(mean, std), truncated
            z_lo, z_hi = _logit(lo / self.t_unit), _logit(hi / self.t_unit)
            t = self.t_unit * torch.sigmoid(_truncated_normal_icdf(u, train_p_mean, train_p_std, z_lo, z_hi))
        else:  # shifted: t/T = s u / (1 + (s - 1) u), u ~ U restricted so that t lands in [lo, hi]
            if shift <= 0:
                raise ValueError(f"shift must be > 0 for time_dist_type 'shifted'; got {shift}")
            u_lo, u_hi = (_unshift(v / self.t_unit, shift) for v in (lo, hi))
            uu = u_lo + (u_hi - u_lo) * u
            t = self.t_unit * shifted_sigmas(uu, shift)
        return t.clamp(lo, hi).to(device=device, dtype=self.t_precision)

    # -- time lists for few-step sampling --
    def get_t_list(self, num_steps, device="cpu") -> torch.Tensor:
        """num_steps+1 times from max_t down to exactly 0 (default: evenly spaced)."""
        return torch.linspace(self.max_t, 0.0, int(num_steps) + 1, dtype=self.t_precision, device=device)

    def sample_from_t_list(self, n, t_list, return_ids=False, generator=None, device=None):
        """Uniformly pick one of t_list[:-1] (never the final 0) per sample."""
        t_list = torch.as_tensor(t_list, dtype=self.t_precision)
        gen_device = generator.device if generator is not None else t_list.device
        ids = torch.randint(0, len(t_list) - 1, (n,), generator=generator, device=gen_device)
        device = device if device is not None else t_list.device
        t = t_list.to(gen_device)[ids].to(device)
        return (t, ids.to(device)) if return_ids else t

    def next_in_t_list(self, t, t_list):
        """The entry that follows each t in t_list (matched to the closest entry)."""
        t_list = torch.as_tensor(t_list, dtype=self.t_precision, device=torch.as_tensor(t).device)
        idx = (torch.as_tensor(t, dtype=self.t_precision)[..., None] - t_list).abs().argmin(-1)
        return t_list[(idx + 1).clamp(max=len(t_list) - 1)]

    def sample_t_inhom(self, n, seq_len, chunk_size, t_list, return_ids=False, generator=None, device=None):
        """Per-chunk times [n, seq_len] drawn from t_list (all entries, including the final clean 0): diffusion
        forcing's independent noise level per chunk, constant within a chunk (chunk_size must divide seq_len)."""
        t_list = torch.as_tensor(t_list, dtype=self.t_precision)
        gen_device = generator.device if generator is not None else t_list.device
        n_chunks = _num_chunks(seq_len, chunk_size)
        ids = torch.randint(0, len(t_list), (n, n_chunks), generator=generator, device=gen_device)
        ids = _expand_chunks(ids, chunk_size)
        device = device if device is not None else t_list.device
        t = t_list.to(gen_device)[ids].to(device)
        return (t, ids.to(device)) if return_ids else t

    def sample_t_inhom_sft(self, n, seq_len, chunk_size, generator=None, device="cpu", **sample_t_kwargs):
        """Per-chunk times [n, seq_len] drawn from `sample_t` (same chunking rule as sample_t_inhom)."""
        n_chunks = _num_chunks(seq_len, chunk_size)
        t = self.sample_t(n * n_chunks, generator=generator, device=device, **sample_t_kwargs).reshape(n, n_chunks)
        return _expand_chunks(t, chunk_size)

    def latents(self, noise, t_init=None):
        """Initial sample at t_init (default max_t): noise * sigma(t_init)."""
        t_init = self.max_t if t_init is None else t_init
        return (noise.to(torch.float64) * broadcast_t(self._sigma(self._t(t_init)), noise)).to(noise.dtype)

    def __repr__(self):
        return f"{type(self).__name__}(min_t={self.min_t}, max_t={self.max_t})"


def _num_chunks(seq_len: int, chunk_size: int) -> int:
    """Chunks in seq_len frames; a remainder is an error (causal nets never see partial chunks)."""
    if chunk_size < 1 or seq_len < 1 or seq_len % chunk_size:
        raise ValueError(f"chunk_size={chunk_size} must divide the {seq_len} frames; pick a chunk size that divides "
                         "the frame count")
    return seq_len // chunk_size


def _expand_chunks(chunk_vals: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """[n, n_chunks] -> [n, n_chunks * chunk_size]: each chunk's value repeated over its frames."""
    return chunk_vals.repeat_interleave(chunk_size, dim=1)


def _log(v: float) -> float:
    return math.log(v) if v > 0 else -math.inf


def _logit(p: float) -> float:
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return math.log(p) - math.log1p(-p)


def _unshift(y: float, s: float) -> float:
    """Inverse of u -> s u / (1 + (s - 1) u) on [0, 1]."""
    return y / (s - (s - 1) * y)


def _truncated_icdf(u, lo, hi, log_cdf, icdf_from_log):
    """Inverse-CDF sampling of a symmetric standard law restricted to [lo, hi], in log-CDF space (scipy, float64).

    The interval is mirrored into the lower tail when both bounds lie above the centre, so that bounds many
    standard deviations out neither underflow nor round to 1.
    """
    if lo > 0:
        return -_truncated_icdf(u, -hi, -lo, log_cdf, icdf_from_log)
    uu = u.detach().cpu().numpy()
    log_hi = float(log_cdf(hi))
    if lo == -math.inf:
        log_c = log_hi + np.log(uu)
    else:
        log_lo = float(log_cdf(lo))
        log_c = log_lo + np.log1p(uu * np.expm1(log_hi - log_lo))  # log(c_lo + u (c_hi - c_lo))
    z = torch.from_numpy(np.asarray(icdf_from_log(log_c), dtype=np.float64)).to(u.device)
    return z.clamp(lo, hi)


def _truncated_normal_icdf(u, mean, std, lo, hi):
    from scipy import special

    return mean + std * _truncated_icdf(u, (lo - mean) / std, (hi - mean) / std, special.log_ndtr, special.ndtri_exp)


def _truncated_student_t_icdf(u, df, mean, std, lo, hi):
    from scipy import stats

    def icdf_from_log(log_c):
        return stats.t.ppf(np.exp(log_c), df)

    z = _truncated_icdf(u, (lo - mean) / std, (hi - mean) / std, lambda v: stats.t.logcdf(v, df), icdf_from_log)
    return mean + std * z


class EDMNoiseSchedule(BaseNoiseSchedule):
    """EDM (Karras et al. 2022): alpha = 1, sigma = t, t in [0.002, 80]; rho-spaced (Karras) time grids."""

    name = "edm"
    default_time_dist = "polynomial"
    supported_time_dists = ("uniform", "lognormal", "polynomial", "log_t")

    def __init__(self, min_t=0.002, max_t=80.0, num_steps=1000, rho=7.0, **kw):
        super().__init__(min_t, max_t, num_steps=num_steps, rho=rho, **kw)

    def _alpha(self, t):
        return torch.ones_like(t)

    def _sigma(self, t):
        return t

    def _alpha_prime(self, t):
        return torch.zeros_like(t)

    def _sigma_prime(self, t):
        return torch.ones_like(t)

    def sqrt_snr_to_t(self, s):
        return 1.0 / self._t(s)

    def karras_sigmas(self, n, device="cpu") -> torch.Tensor:
        """n Karras points from max_t down to min_t: (max^(1/rho) + i/(n-1) (min^(1/rho) - max^(1/rho)))^rho."""
        a, b = self.max_t ** (1 / self.rho), self.min_t ** (1 / self.rho)
        frac = torch.linspace(0, 1, n, dtype=torch.float64, device=device) if n > 1 else torch.zeros(1, device=device)
        return ((a + frac.to(torch.float64) * (b - a)) ** self.rho).to(self.t_precision)

    def get_t_list(self, num_steps, device="cpu"):
        """Karras grid with num_steps+1 points from max_t to min_t, whose last point is replaced by exactly 0."""
        t = self.karras_sigmas(int(num_steps) + 1, device=device)
        t[-1] = 0.0
        return t


class RFNoiseSchedule(BaseNoiseSchedule):
    """Rectified flow: alpha = 1 - t, sigma = t on [0, 0.999] by default (t = 1 is pure noise)."""

    name = "rf"
    default_pred_type = "flow"
    default_time_dist = "logitnormal"
    t_domain = (0.0, 1.0)
    t_unit = 1.0

    def __init__(self, min_t=0.0, max_t=0.999, num_steps=1000, rho=7.0, **kw):
        super().__init__(min_t, max_t, num_steps=num_steps, rho=rho, **kw)

    def _alpha(self, t):
        return 1.0 - t

    def _sigma(self, t):
        return t

    def _alpha_prime(self, t):
        return -torch.ones_like(t)

    def _sigma_prime(self, t):
        return torch.ones_like(t)

    def sqrt_snr_to_t(self, s):
        return 1.0 / (1.0 + self._t(s))


class TrigNoiseSchedule(BaseNoiseSchedule):
    """TrigFlow (sCM): alpha = cos t, sigma = sin t on [0, pi/2]; alpha^2 + sigma^2 = 1 and flow equals v."""

    name = "trig"
    default_time_dist = "uniform"
    t_domain = (0.0, math.pi / 2)
    t_unit = math.pi / 2

    def __init__(self, min_t=0.0, max_t=math.pi / 2, num_steps=1000, rho=7.0, **kw):
        super().__init__(min_t, max_t, num_steps=num_steps, rho=rho, **kw)

    def _alpha(self, t):
        return torch.cos(t)

    def _sigma(self, t):
        return torch.sin(t)

    def _alpha_prime(self, t):
        return -torch.sin(t)

    def _sigma_prime(self, t):
        return torch.cos(t)

    def sqrt_snr_to_t(self, s):
        return torch.atan2(torch.ones_like(self._t(s)), self._t(s))


class AlphasNoiseSchedule(BaseNoiseSchedule):
    """Discrete DDPM schedules given by an alpha-bar table of N entries, made continuous in t.

    alpha-bar(i / N) equals table entry i exactly; between grid points log alpha-bar is linear in t, so alpha,
    sigma and their derivatives exist everywhere (the flow prediction and PF-ODE samplers need them). The domain is
    [0, (N-1)/N] (0.999 for N = 1000). A zero terminal alpha-bar is floored at 2^-24 so that log stays finite.
    """

    name = "alphas"
    default_time_dist = "logitnormal"
    t_unit = 1.0
    abar_floor = 2.0**-24  # smallest alpha-bar kept (log alpha-bar must stay finite); subclasses may lower it

    def __init__(self, alphas_cumprod, min_t=0.0, max_t=None, **kw):
        # on the CPU explicitly: a network built under `torch.device("meta")` (fsdp_meta_init) still needs the table
        table = torch.as_tensor(alphas_cumprod, dtype=torch.float64, device="cpu").clamp(self.abar_floor, 1.0)
        if table.ndim != 1 or len(table) < 2 or (table[1:] > table[:-1]).any():
            raise ValueError("alphas_cumprod must be a 1-D non-increasing table with at least 2 entries")
        self.alphas_cumprod = table
        self.log_abar = table.log()
        n = len(table)
        self.t_domain = (0.0, (n - 1) / n)
        kw.setdefault("num_steps", n)
        super().__init__(min_t, self.t_domain[1] if max_t is None else max_t, **kw)

    def _segment(self, t):
        n = len(self.log_abar)
        table = self.log_abar.to(t.device)
        u = (t * n).clamp(0, n - 1)
        i = u.floor().clamp(max=n - 2).long()
        slope = (table[i + 1] - table[i]) * n  # d log alpha-bar / dt on this segment
        return table[i] + (u - i) * (table[i + 1] - table[i]), slope

    def _alpha(self, t):
        return torch.exp(0.5 * self._segment(t)[0])

    def _sigma(self, t):
        return torch.sqrt(-torch.expm1(self._segment(t)[0]))

    def _alpha_prime(self, t):
        log_abar, slope = self._segment(t)
        return 0.5 * torch.exp(0.5 * log_abar) * slope

    def _sigma_prime(self, t):
        log_abar, slope = self._segment(t)
        return -torch.exp(log_abar) * slope / (2 * self._nonzero(torch.sqrt(-torch.expm1(log_abar))))


def scaled_linear_alphas_cumprod(beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000) -> torch.Tensor:
    """Stable Diffusion's betas: linear in sqrt(beta) from beta_start to beta_end; alpha-bar = cumprod(1 - beta)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64, device="cpu") ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024: shift and scale sqrt(alpha-bar) so the last entry is 0 and the first is unchanged."""
    s = alphas_cumprod.sqrt()
    s0, s_last = s[0].clone(), s[-1].clone()
    s = (s - s_last) * s0 / (s0 - s_last)
    return s**2


def shifted_sigmas(sigmas, shift: float):
    """Fixed flow-matching time shift (SD3, Wan, Cosmos): sigma -> s sigma / (1 + (s - 1) sigma).

    Maps [0, 1] onto itself with both ends fixed; s > 1 spends more of a uniform grid at high noise. Works on floats,
    numpy arrays and tensors alike (the arithmetic is elementwise). diffusers' resolution-dependent "exponential"
    shift (Flux, Qwen-Image) e^mu / (e^mu + 1/sigma - 1) is this same map with s = e^mu.
    """
    if shift <= 0:
        raise ValueError(f"flow shift must be > 0; got {shift}")
    return shift * sigmas / (1 + (shift - 1) * sigmas)


FLOW_T_LIST_KINDS = ("euler", "unipc")


def flow_shift_t_list(num_steps: int, shift: float, kind="unipc", num_train_timesteps=1000, device="cpu"):
    """The rf-schedule time list (t = sigma) of diffusers' fixed-shift flow samplers, num_steps + 1 points ending in 0.

    kind "unipc": UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift), Wan's sampler: the shift of
    linspace(1, 1/N, num_steps + 1)[:-1], its first point 1 lowered by 1e-6 as diffusers does (keeps log alpha finite
    in its multistep update). kind "euler": FlowMatchEulerDiscreteScheduler(shift=shift): the shift applied to
    linspace(1, shift(1/N), num_steps), i.e. twice at the low end, exactly as that scheduler's set_timesteps does.
    The network timesteps are N * t[:-1] (UniPC truncates them to integers).
    """
    if kind not in FLOW_T_LIST_KINDS:
        raise ValueError(f"flow t-list kind must be one of {FLOW_T_LIST_KINDS}; got {kind!r}")
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps}")
    n, big_n = int(num_steps), int(num_train_timesteps)
    if kind == "unipc":
        t = shifted_sigmas(torch.linspace(1.0, 1.0 / big_n, n + 1, dtype=torch.float64)[:-1], shift)
        if abs(float(t[0]) - 1.0) < 1e-6:
            t[0] -= 1e-6
    else:
        t = shifted_sigmas(torch.linspace(1.0, shifted_sigmas(1.0 / big_n, shift), n, dtype=torch.float64), shift)
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)]).to(device)


class SDNoiseSchedule(AlphasNoiseSchedule):
    """Stable Diffusion 1.x/2.x and SDXL: scaled-linear betas 0.00085 -> 0.012 over 1000 steps (eps prediction)."""

    name = "sd"
    default_pred_type = "eps"

    def __init__(self, beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000, **kw):
        super().__init__(scaled_linear_alphas_cumprod(beta_start, beta_end, num_train_timesteps), **kw)


class DDPMLinearNoiseSchedule(AlphasNoiseSchedule):
    """DDPM's linear betas 1e-4 -> 0.02 over 1000 steps (the schedule DiT was trained with; eps prediction)."""

    name = "ddpm_linear"
    default_pred_type = "eps"

    def __init__(self, beta_start=1e-4, beta_end=0.02, num_train_timesteps=1000, **kw):
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
        super().__init__(torch.cumprod(1.0 - betas, dim=0), **kw)


class CogVideoXNoiseSchedule(AlphasNoiseSchedule):
    """CogVideoX: scaled-linear betas, SNR divided by `snr_shift_scale`, then the zero-terminal-SNR rescale.

    The order is diffusers' CogVideoXDPMScheduler / CogVideoXDDIMScheduler (the shipped configs set
    rescale_betas_zero_snr=True): alpha-bar' = alpha-bar / (s + (1 - s) alpha-bar), i.e. SNR' = SNR / s (3.0 for the
    2B model, 1.0 for 5B), and only then the rescale, so the table equals the scheduler's alphas_cumprod (float64).
    The terminal alpha-bar is exactly 0 there; here it is floored at 1e-20 (alpha 1e-10) so that log alpha-bar stays
    finite while alpha and sigma still agree with diffusers to far below 1e-6. Native prediction type: v.
    """

    name = "cogvideox"
    default_pred_type = "v"
    abar_floor = 1e-20

    def __init__(self, snr_shift_scale=3.0, beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000, **kw):
        abar = scaled_linear_alphas_cumprod(beta_start, beta_end, num_train_timesteps)
        abar = rescale_zero_terminal_snr(abar / (snr_shift_scale + (1 - snr_shift_scale) * abar))
        self.snr_shift_scale = float(snr_shift_scale)
        super().__init__(abar, **kw)


_SCHEDULES = {
    "edm": EDMNoiseSchedule,
    "rf": RFNoiseSchedule,
    "rectified_flow": RFNoiseSchedule,
    "trig": TrigNoiseSchedule,
    "alphas": AlphasNoiseSchedule,
    "sd": SDNoiseSchedule,
    "sdxl": SDNoiseSchedule,
    "ddpm_linear": DDPMLinearNoiseSchedule,
    "cogvideox": CogVideoXNoiseSchedule,
}


def get_noise_schedule(schedule_type: str = "edm", **kwargs) -> BaseNoiseSchedule:
    """Build a schedule by name; kwargs go to its constructor (min_t, max_t, num_steps, rho, t_precision, ...)."""
    if schedule_type not in _SCHEDULES:
        raise ValueError(f"unknown schedule_type {schedule_type!r}; expected one of {tuple(_SCHEDULES)}")
    schedule = _SCHEDULES[schedule_type](**kwargs)
    if schedule_type == "sdxl":
        schedule.name = "sdxl"
    return schedule
