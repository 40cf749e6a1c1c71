"""Gaussian mixtures: the exact-oracle data distribution for toy experiments and tests.

For x0 ~ sum_k pi_k N(m_k, s_k^2 I) and x_t = alpha*x0 + sigma*eps, the noisy marginal is again a mixture
(components N(alpha*m_k, (alpha^2 s_k^2 + sigma^2) I)), so the ideal denoiser E[x0 | x_t], the score and the
log-density are closed form. That gives a perfect teacher and exact answers to check distillation methods against.
Everything is computed in float64 (log-weights through logsumexp) and cast back to the input dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

GMM_NAMES = ("ring8", "grid25", "gauss1")


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Isotropic Gaussian mixture: `means` [K, D], `stds` [K], `weights` [K] (summing to 1), all float64."""

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self):
        means, stds, weights = (torch.as_tensor(v, dtype=torch.float64) for v in (self.means, self.stds, self.weights))
        if means.ndim != 2 or stds.shape != (means.shape[0],) or weights.shape != (means.shape[0],):
            raise ValueError(
                f"GaussianMixture expects means [K, D], stds [K], weights [K]; got {tuple(means.shape)}, "
                f"{tuple(stds.shape)}, {tuple(weights.shape)}"
            )
        if (stds <= 0).any() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("GaussianMixture needs stds > 0 and non-negative weights with a positive sum")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "stds", stds)
        object.__setattr__(self, "weights", weights / weights.sum())

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x float64 [n, D], labels int64 [n]) drawn on CPU (or the generator's device)."""
        device = generator.device if generator is not None else torch.device("cpu")
        labels = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, dtype=torch.float64, device=device, generator=generator)
        x = self.means.to(device)[labels] + self.stds.to(device)[labels, None] * noise
        return x, labels

    def _noisy_component_log_probs(self, x_t, alpha, sigma):
        """log pi_k + log N(x_t; alpha m_k, v_k I) per component -> [B, K], and v_k = alpha^2 s_k^2 + sigma^2."""
        x = x_t.to(torch.float64).flatten(1)
        alpha, sigma = _as_column(alpha, x), _as_column(sigma, x)
        means, stds, weights = (v.to(x.device) for v in (self.means, self.stds, self.weights))
        var = alpha**2 * stds[None] ** 2 + sigma**2  # [B, K]
        sq_dist = ((x[:, None, :] - alpha[:, :, None] * means[None]) ** 2).sum(-1)  # [B, K]
        log_norm = -0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.log(weights)[None] + log_norm - 0.5 * sq_dist / var, var, alpha, means, x

    def posterior_weights(self, x_t, alpha=1.0, sigma=0.0, labels=None) -> torch.Tensor:
        """p(k | x_t) [B, K] in float64. `labels`: int [B] (fixes the component) or float [B, K] prior weights."""
        log_p, *_ = self._noisy_component_log_probs(x_t, alpha, sigma)
        log_p = log_p + _label_log_prior(labels, log_p, self.weights)
        return torch.softmax(log_p, dim=-1)

    def posterior_mean(self, x_t, alpha=1.0, sigma=0.0, labels=None) -> torch.Tensor:
        """E[x0 | x_t] (Tweedie, exact) = sum_k p(k|x_t) (m_k + alpha s_k^2 / v_k (x_t - alpha m_k))."""
        log_p, var, alpha_c, means, x = self._noisy_component_log_probs(x_t, alpha, sigma)
        post = torch.softmax(log_p + _label_log_prior(labels, log_p, self.weights), dim=-1)  # [B, K]
        gain = alpha_c * self.stds.to(x.device)[None] ** 2 / var  # [B, K]
        comp_mean = means[None] + gain[:, :, None] * (x[:, None, :] - alpha_c[:, :, None] * means[None])
        return (post[:, :, None] * comp_mean).sum(1).reshape(x_t.shape).to(_float_dtype(x_t))

    def log_prob(self, x, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """log p_t(x) [B] of the noisy marginal (alpha=1, sigma=0: the data density)."""
        log_p, *_ = self._noisy_component_log_probs(x, alpha, sigma)
        return torch.logsumexp(log_p, dim=-1)

    def score(self, x, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """grad_x log p_t(x) = sum_k p(k|x) (alpha m_k - x) / v_k."""
        log_p, var, alpha_c, means, xf = self._noisy_component_log_probs(x, alpha, sigma)
        post = torch.softmax(log_p, dim=-1)
        comp = (alpha_c[:, :, None] * means[None] - xf[:, None, :]) / var[:, :, None]
        return (post[:, :, None] * comp).sum(1).reshape(x.shape).to(_float_dtype(x))


def _float_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float64


def _as_column(v, x: torch.Tensor) -> torch.Tensor:
    """alpha / sigma given as a float, a 0-d tensor, [B] or [B, 1, ...] -> float64 [B, 1]."""
    v = torch.as_tensor(v, dtype=torch.float64, device=x.device)
    if v.ndim == 0:
        return v.expand(x.shape[0], 1)
    return v.reshape(v.shape[0], -1)[:, :1].expand(x.shape[0], 1)


def _label_log_prior(labels, log_p: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Replace the mixture prior by the label's: int labels pick one component; float rows re-weight components.

    A float row of zeros (the "unconditional" negative condition) keeps the mixture's own weights.
    """
    if labels is None:
        return torch.zeros_like(log_p)
    labels = torch.as_tensor(labels, device=log_p.device)
    if not labels.is_floating_point():
        onehot = torch.nn.functional.one_hot(labels.long(), log_p.shape[-1]).to(torch.float64)
    else:
        if labels.shape != log_p.shape:
            raise ValueError(f"label weights must be [B, K] = {tuple(log_p.shape)}; got {tuple(labels.shape)}")
        onehot = labels.to(torch.float64)
    unconditional = onehot.sum(-1, keepdim=True) <= 0
    target = torch.where(unconditional, weights.to(log_p.device)[None].expand_as(onehot), onehot)
    # new prior / old prior, in log space; log(0) = -inf removes a component exactly.
    return torch.log(target) - torch.log(weights.to(log_p.device))[None]


def make_gmm(name: str = "ring8", dim: int = 2) -> GaussianMixture:
    """Named mixtures, scaled to about unit variance per coordinate (modes live in the first two coordinates).

    ring8: 8 equal modes on a circle of radius 2, std 0.1; grid25: 5x5 grid on {-2..2}^2, std 0.05;
    gauss1: one Gaussian with mean 0.5 in every coordinate and std 0.8 (closed-form PF-ODE, for sampler tests).
    """
    if name == "gauss1":
        f64 = torch.float64
        return GaussianMixture(
            torch.full((1, dim), 0.5, dtype=f64), torch.tensor([0.8], dtype=f64), torch.ones(1, dtype=f64)
        )
    if dim < 2:
        raise ValueError(f"make_gmm({name!r}) needs dim >= 2; got dim={dim}")
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        centers, std = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1), 0.1
    elif name == "grid25":
        axis = torch.arange(-2, 3, dtype=torch.float64)
        centers, std = torch.cartesian_prod(axis, axis), 0.05
    else:
        raise ValueError(f"unknown gmm_name {name!r}; expected one of {GMM_NAMES}")
    scale = 1.0 / math.sqrt(float((centers**2).mean()) + std**2)
    means = torch.zeros(centers.shape[0], dim, dtype=torch.float64)
    means[:, :2] = centers * scale
    k = centers.shape[0]
    stds = torch.full((k,), std * scale, dtype=torch.float64)
    return GaussianMixture(means, stds, torch.ones(k, dtype=torch.float64))


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, num_projections: int = 256, generator=None) -> float:
    """Sliced 2-Wasserstein distance: sqrt(mean over random directions of W2^2 between 1-D projections).

    Sample sets may differ in size: the smaller one's quantiles are compared at matched quantile levels.
    """
    x, y = x.detach().to(torch.float64).flatten(1).cpu(), y.detach().to(torch.float64).flatten(1).cpu()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"sliced_wasserstein needs equal dimensions; got {x.shape[1]} and {y.shape[1]}")
    dirs = torch.randn(x.shape[1], num_projections, dtype=torch.float64, generator=_cpu_gen(generator))
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    px, py = (x @ dirs).sort(0).values, (y @ dirs).sort(0).values
    n = min(px.shape[0], py.shape[0])
    levels = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    qx, qy = _quantiles(px, levels), _quantiles(py, levels)
    return float(((qx - qy) ** 2).mean().sqrt())


def _cpu_gen(generator):
    return generator if generator is None or generator.device.type == "cpu" else None


def _quantiles(sorted_vals: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Empirical quantiles (linear interpolation between order statistics) of each column."""
    m = sorted_vals.shape[0]
    pos = (levels * m - 0.5).clamp(0, m - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=m - 1)
    frac = (pos - lo)[:, None]
    return sorted_vals[lo] * (1 - frac) + sorted_vals[hi] * frac


def mode_coverage(samples: torch.Tensor, gmm: GaussianMixture, radius_in_stds: float = 3.0, min_share: float = 0.1):
    """How well samples cover the mixture's modes.

    A sample is "near" its closest mode when within `radius_in_stds` of that mode's std. A mode is covered when it
    receives at least `min_share` of the near samples it would get under the true weights.
    Returns {"mode_coverage": fraction of modes covered, "near_mode_fraction": fraction of samples near a mode,
    "mode_counts": list of near-sample counts per mode}.
    """
    x = samples.detach().to(torch.float64).flatten(1).cpu()
    dist = torch.cdist(x, gmm.means) / gmm.stds[None]  # [N, K] in units of each mode's std
    nearest = dist.argmin(dim=1)
    near = dist.gather(1, nearest[:, None]).squeeze(1) <= radius_in_stds
    counts = torch.bincount(nearest[near], minlength=gmm.num_components)
    covered = counts.to(torch.float64) >= min_share * gmm.weights * x.shape[0]
    return {
        "mode_coverage": float(covered.to(torch.float64).mean()),
        "near_mode_fraction": float(near.to(torch.float64).mean()),
        "mode_counts": counts.tolist(),
    }
