"""Loss math of the consistency-model family as small pure functions of tensors (no module state).

Conventions: times are float64 tensors [B]; per-sample quantities are [B]; tensors x are [B, ...]. Everything that
reduces over a sample is computed in float64 so that small differences of large outputs keep their precision.
"""

from __future__ import annotations

import torch

CM_WEIGHTINGS = ("default", "c_out", "c_out_sq", "sigma_sq", "sqrt", "one")
MF_LOSS_TYPES = ("opt_grad", "l2")


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample [B] values broadcast over x's trailing dims (float64)."""
    return v.to(device=x.device, dtype=torch.float64).reshape(v.shape[0], *([1] * (x.ndim - 1)))


def per_sample_sq_norm(x: torch.Tensor, mean_over_dims: bool = False) -> torch.Tensor:
    """||x_i||^2 per sample (float64 [B]); divided by the number of elements per sample when mean_over_dims."""
    sq = x.to(torch.float64).flatten(1).square().sum(1)
    return sq / x[0].numel() if mean_over_dims else sq


# --------------------------------------------------------------------------------------------------------------
# Consistency models (Song et al. 2023; ECT, Geng et al. 2024)
# --------------------------------------------------------------------------------------------------------------
def ect_r_from_t(t: torch.Tensor, ratio: float, min_r: float = 0.0) -> torch.Tensor:
    """ECT's pair mapping (Geng et al. 2024, eq. 8 with k = 8, b = 1): r = t - t (1 - ratio) (1 + 8 sigmoid(-t)),
    clamped to >= min_r. ratio -> 1 shrinks t - r to 0 (the continuous-time limit); a clamped r = 0 is the exact
    boundary f(x, 0) = x."""
    r = t - t * (1.0 - ratio) * (1.0 + 8.0 * torch.sigmoid(-t))
    return r.clamp(min=min_r)


def quantize_to_grid(t: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Each t snapped to the nearest entry of `grid` (e.g. the Karras sigma grid of discrete-time CMs)."""
    grid = grid.to(device=t.device, dtype=t.dtype)
    return grid[(t[:, None] - grid[None]).abs().argmin(1)]


def cm_distance(d_t: torch.Tensor, d_r: torch.Tensor, huber_const: float = 1e-8,
                use_squared_l2: bool = False) -> torch.Tensor:
    """Per-sample distance between the two consistency outputs (float64 [B]), d = ||D_t - D_r||_2:
    pseudo-Huber sqrt(d^2 + c^2) - c (iCT, Song & Dhariwal 2023, eq. 6) when c > 0; else d^2 (use_squared_l2) or d."""
    sq = per_sample_sq_norm(d_t - d_r)
    if huber_const > 0:
        return torch.sqrt(sq + huber_const**2) - huber_const
    return sq if use_squared_l2 else torch.sqrt(sq)


def edm_c_out(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM's output scale c_out = sigma sd / sqrt(sigma^2 + sd^2) (Karras et al. 2022, Table 1)."""
    return sigma * sigma_data / torch.sqrt(sigma**2 + sigma_data**2)


def cm_weight(weighting_type: str, t: torch.Tensor, r: torch.Tensor, sigma_t: torch.Tensor,
              sigma_data: float = 0.5) -> torch.Tensor:
    """Per-sample weight lambda(t, r) of the CM loss (float64 [B]):
    default 1/(t - r) (ECT); c_out 1/c_out(sigma); c_out_sq 1/c_out(sigma)^2; sigma_sq 1/sigma^2; sqrt 1/sqrt(t - r);
    one 1. sigma_t is the EDM noise level sigma/alpha of t; the c_out / sigma weights undo the scale of the network
    output D - c_skip x = c_out F, so every noise level contributes on the raw network's scale."""
    t, r, sigma_t = (v.to(torch.float64) for v in (t, r, sigma_t))
    if weighting_type == "default":
        return 1.0 / (t - r)
    if weighting_type == "c_out":
        return 1.0 / edm_c_out(sigma_t, sigma_data)
    if weighting_type == "c_out_sq":
        return 1.0 / edm_c_out(sigma_t, sigma_data) ** 2
    if weighting_type == "sigma_sq":
        return 1.0 / sigma_t**2
    if weighting_type == "sqrt":
        return 1.0 / torch.sqrt(t - r)
    if weighting_type == "one":
        return torch.ones_like(t)
    raise ValueError(f"loss_config.weighting_ct_loss={weighting_type!r} is not supported; "
                     f"expected one of {CM_WEIGHTINGS}")


# --------------------------------------------------------------------------------------------------------------
# sCM (Lu & Song 2024): TrigFlow x = cos(s) x0 + sin(s) z, z ~ N(0, sd^2 I); f = cos(s) x - sin(s) sd F(x, s)
# --------------------------------------------------------------------------------------------------------------
def trigflow_time(sigma_edm: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """TrigFlow time s = arctan(sigma / sd) of an EDM noise level sigma (same signal-to-noise ratio)."""
    return torch.atan2(sigma_edm.to(torch.float64), torch.full_like(sigma_edm, sigma_data, dtype=torch.float64))


def trigflow_velocity_ct(x0: torch.Tensor, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """dx_s/ds along the conditional path (consistency training): -sin(s) x0 + cos(s) z."""
    out = -_col(torch.sin(s), x0) * x0.to(torch.float64) + _col(torch.cos(s), x0) * z.to(torch.float64)
    return out.to(x0.dtype)


def scm_tangent(f_minus: torch.Tensor, dx_ds: torch.Tensor, x_s: torch.Tensor, jvp_scaled: torch.Tensor,
                s: torch.Tensor, sigma_data: float, warmup_weight: float = 1.0) -> torch.Tensor:
    """sCM training direction g (Lu & Song 2024, eq. 8 / Alg. 1, times cos(s)):
    g = -cos^2(s) (sd F^- - dx/ds) - w_r (cos(s) sin(s) x_s + sd cos(s) sin(s) dF^-/ds),
    where `jvp_scaled` = cos(s) sin(s) dF^-/ds is the JVP along (cos sin dx/ds, cos sin) and w_r the tangent warm-up."""
    cos, sin = _col(torch.cos(s), x_s), _col(torch.sin(s), x_s)
    f_minus, dx_ds, x_s, jvp_scaled = (v.to(torch.float64) for v in (f_minus, dx_ds, x_s, jvp_scaled))
    g = -cos**2 * (sigma_data * f_minus - dx_ds) - warmup_weight * (cos * sin * x_s + sigma_data * jvp_scaled)
    return g


def normalize_tangent(g: torch.Tensor, const: float = 0.1, spatial_invariance: bool = True) -> torch.Tensor:
    """Tangent normalisation (Lu & Song 2024, Sec. 4.2): g / (||g|| + c); with spatial_invariance the norm is the
    per-element RMS ||g|| / sqrt(D), so the constant means the same at every resolution."""
    norm = torch.sqrt(per_sample_sq_norm(g, mean_over_dims=spatial_invariance))
    return g / (_col(norm, g) + const)


def scm_loss(f_theta: torch.Tensor, f_minus: torch.Tensor, g: torch.Tensor, logvar: torch.Tensor | None,
             prior_weight: torch.Tensor | None = None, divide_by_dim: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-weighted sCM loss (Lu & Song 2024, eq. 9), per sample:
    (prior / e^{logvar}) ||F_theta - F^- - g||^2 / D + logvar  (D = elements per sample, when divide_by_dim).
    Returns (loss [B], unweighted ||F_theta - F^- - g||^2 (/D) [B])."""
    diff = f_theta.to(torch.float64) - (f_minus.to(torch.float64) + g.to(torch.float64)).detach()
    unweighted = per_sample_sq_norm(diff, mean_over_dims=divide_by_dim)
    weight = torch.ones_like(unweighted) if prior_weight is None else prior_weight.to(torch.float64)
    if logvar is None:
        return weight * unweighted, unweighted
    logvar = logvar.to(torch.float64).reshape(-1)
    return weight * torch.exp(-logvar) * unweighted + logvar, unweighted


# --------------------------------------------------------------------------------------------------------------
# MeanFlow (Geng et al. 2025): u(x_t, t, r) = average velocity over [r, t]
# --------------------------------------------------------------------------------------------------------------
def meanflow_target(v: torch.Tensor, du_dt: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                    warmup_weight: float = 1.0) -> torch.Tensor:
    """MeanFlow identity (Geng et al. 2025, eq. 6/10): u_tgt = v - w (t - r) du/dt, du/dt = v . d_x u + d_t u."""
    return (v.to(torch.float64) - warmup_weight * _col(t - r, v) * du_dt.to(torch.float64)).to(v.dtype)


def parse_norm_method(norm_method: str) -> tuple[str, tuple[float, ...]]:
    """'poly_<p>' -> ('poly', (p,)); 'exp_<a>' or 'exp_<a>_<b>' -> ('exp', (a, b)) with b = 1 by default."""
    kind, *params = str(norm_method).split("_")
    try:
        values = tuple(float(p) for p in params)
    except ValueError:
        values = ()
    if kind == "poly" and len(values) == 1:
        return kind, values
    if kind == "exp" and len(values) in (1, 2):
        return kind, values if len(values) == 2 else (values[0], 1.0)
    raise ValueError(f"loss_config.norm_method={norm_method!r} is not supported; expected 'poly_<p>' "
                     "(e.g. poly_1.0) or 'exp_<a>[_<b>]' (e.g. exp_1.0)")


def adaptive_weight(loss: torch.Tensor, norm_method: str = "poly_1.0", const: float = 0.1) -> torch.Tensor:
    """Stop-gradient adaptive loss weight (Geng et al. 2025, Sec. 4.3 / ECT), per sample:
    poly_p: w = 1 / (loss + c)^p  (p = 0.5 ~ pseudo-Huber, p = 1 ~ log loss);
    exp_a_b: w = exp(-a loss^b)  (Welsch-type robust loss: large residuals are down-weighted exponentially)."""
    kind, params = parse_norm_method(norm_method)
    loss = loss.detach().to(torch.float64)
    if kind == "poly":
        return 1.0 / (loss + const) ** params[0]
    a, b = params
    return torch.exp(-a * loss**b)


def meanflow_l2_loss(u: torch.Tensor, u_tgt: torch.Tensor, norm_method: str = "poly_1.0", const: float = 0.1,
                     spatial_invariance: bool = False, adaptive: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """'l2': per sample w * ||u - sg(u_tgt)||^2 with w = adaptive_weight(||.||^2) (or 1 when not adaptive).
    Returns (loss [B], weight [B])."""
    sq = per_sample_sq_norm(u.to(torch.float64) - u_tgt.detach().to(torch.float64), spatial_invariance)
    weight = adaptive_weight(sq, norm_method, const) if adaptive else torch.ones_like(sq)
    return weight * sq, weight


def meanflow_opt_grad_loss(u: torch.Tensor, u_minus: torch.Tensor, u_tgt: torch.Tensor, norm_method: str = "poly_1.0",
                           const: float = 0.1, spatial_invariance: bool = False,
                           adaptive: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """'opt_grad': the update direction itself is normalised, as sCM's tangent normalisation:
    tangent = u_tgt - u^-, loss = ||u - sg(u^- + tangent / (||tangent|| + c)^p)||^2 (poly_p; exp_a_b scales the
    tangent by exp(-a ||tangent||^b)). Its gradient is -2 * normalised tangent . du/dtheta.
    Returns (loss [B], tangent scale [B], ||tangent|| [B])."""
    tangent = u_tgt.detach().to(torch.float64) - u_minus.detach().to(torch.float64)
    norm = torch.sqrt(per_sample_sq_norm(tangent, spatial_invariance))
    scale = adaptive_weight(norm, norm_method, const) if adaptive else torch.ones_like(norm)
    target = u_minus.detach().to(torch.float64) + _col(scale, tangent) * tangent
    loss = per_sample_sq_norm(u.to(torch.float64) - target, spatial_invariance)
    return loss, scale, norm


def trigflow_sigma(s: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM noise level of TrigFlow time s: sigma = sd tan(s) (inverse of trigflow_time)."""
    return sigma_data * torch.tan(s.to(torch.float64))

