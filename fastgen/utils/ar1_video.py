"""Stationary AR(1) "videos": the exact-oracle data distribution for the causal methods.

Frames are D-vectors x_f = mean + std * z_f (per dimension), with z_0 ~ N(0, I) and z_{f+1} = a z_f + sqrt(1 - a^2) e_f.
Every frame's marginal is N(mean, diag(std^2)), the lag-1 cross-covariance of the standardised frames is a * I, and a
whole video [D, T] is jointly Gaussian with per-dimension covariance std_d^2 K, K[f, g] = a^|f - g|. So for
x_t = alpha(t) x0 + sigma(t) eps (alpha, sigma per frame allowed), the ideal bidirectional denoiser is closed form:
    E[x0 | x_t] = mean + std^2 K A (std^2 A K A + S^2)^{-1} (x_t - A mean),   A = diag(alpha_f), S = diag(sigma_f).
Computed in float64 (one T x T solve per sample and dimension). Videos are [B, D, T, 1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def default_mean_std(dim: int) -> tuple[list[float], list[float]]:
    """Distinct per-dimension means and scales (so a wrong marginal is visible in every dimension)."""
    if dim == 1:
        return [0.5], [1.0]
    return ([round(-1.0 + 2.0 * i / (dim - 1), 6) for i in range(dim)],
            [round(0.5 + 1.0 * i / (dim - 1), 6) for i in range(dim)])


@dataclass(frozen=True, eq=False)
class AR1Video:
    """The process above: `a` in (-1, 1), `mean` [D], `std` [D] (> 0)."""

    a: float
    mean: torch.Tensor
    std: torch.Tensor

    def __post_init__(self):
        mean, std = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (self.mean, self.std))
        if not -1.0 < float(self.a) < 1.0 or mean.shape != std.shape or (std <= 0).any():
            raise ValueError(f"AR1Video needs -1 < a < 1, mean and std of one length and std > 0; got a={self.a}, "
                             f"mean {tuple(mean.shape)}, std {tuple(std.shape)}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    num_components = 1  # a single Gaussian (the mixture loader's label count)

    def frame_correlation(self, frames: int, device=None) -> torch.Tensor:
        """K [T, T] = a^|f - g| (float64)."""
        idx = torch.arange(frames, dtype=torch.float64, device=device)
        return float(self.a) ** (idx[:, None] - idx[None]).abs()

    def sample(self, n: int, frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n videos float64 [n, D, T, 1, 1] run as the chain (so sampling costs O(T))."""
        device = generator.device if generator is not None else torch.device("cpu")
        e = torch.randn(n, self.dim, frames, dtype=torch.float64, device=device, generator=generator)
        z = [e[:, :, 0]]
        c = (1.0 - float(self.a) ** 2) ** 0.5
        for f in range(1, frames):
            z.append(float(self.a) * z[-1] + c * e[:, :, f])
        z = torch.stack(z, dim=2)
        return (self.mean.to(device)[None, :, None] + self.std.to(device)[None, :, None] * z)[..., None, None]

    def posterior_mean(self, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_t] for x_t [B, D, T, 1, 1] and per-frame alpha, sigma [B, T] (float64 inside)."""
        x = x_t.to(torch.float64)[..., 0, 0]  # [B, D, T]
        frames = x.shape[2]
        alpha, sigma = alpha.to(torch.float64).to(x.device), sigma.to(torch.float64).to(x.device)
        mean, var = self.mean.to(x.device)[None, :, None], (self.std.to(x.device) ** 2)[:, None, None]  # [1,D,1], [D,1,1]
        k = self.frame_correlation(frames, x.device)
        cov = var[None] * k[None, None]  # [1, D, T, T] prior covariance of each dimension
        a_mat = alpha[:, None, :, None] * alpha[:, None, None, :]  # [B, 1, T, T] = A 1 1^T A entries
        m = cov * a_mat + torch.diag_embed(sigma**2)[:, None]  # Cov(x_t) per dimension
        resid = x - alpha[:, None, :] * mean  # [B, D, T]
        sol = torch.linalg.solve(m, resid[..., None])[..., 0]
        x0 = mean + torch.einsum("bdfg,bdg->bdf", (cov * alpha[:, None, None, :]).expand_as(m), sol)
        return x0[..., None, None].to(x_t.dtype)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0).sqrt()[..., None, :]) @ vecs.transpose(-1, -2)


def gaussian_w2(mean1, cov1, mean2, cov2) -> float:
    """2-Wasserstein distance between N(mean1, cov1) and N(mean2, cov2) (Dowson & Landau 1982)."""
    root2 = _sqrtm_psd(cov2)
    cross = _sqrtm_psd(root2 @ cov1 @ root2)
    w2_sq = ((mean1 - mean2) ** 2).sum() + torch.trace(cov1 + cov2 - 2 * cross)
    return float(w2_sq.clamp_min(0).sqrt())


def video_metrics(videos: torch.Tensor, process: AR1Video, frames: slice | None = None) -> dict[str, float]:
    """How far samples [N, D, T, 1, 1] are from the process, on the frames `frames` (default all):
    marginal_w2 = mean over frames of the Gaussian W2 between the frame's empirical (mean, covariance) and the true
    N(mean, diag(std^2)); corr_err = mean over consecutive frame pairs of || Cov(z_{f+1}, z_f) - a I ||_F / sqrt(D)
    for the frames standardised with the true mean and std (0 for the exact process up to sampling error)."""
    x = videos.to(torch.float64)[..., 0, 0]  # [N, D, T]
    if frames is not None:
        x = x[:, :, frames]
    mean, std = process.mean, process.std
    true_cov = torch.diag(std**2)
    w2 = [gaussian_w2(x[:, :, f].mean(0), torch.cov(x[:, :, f].T), mean, true_cov) for f in range(x.shape[2])]
    z = (x - mean[None, :, None]) / std[None, :, None]
    eye = torch.eye(process.dim, dtype=torch.float64)
    errs = []
    for f in range(x.shape[2] - 1):
        a_, b_ = z[:, :, f + 1], z[:, :, f]
        cross = (a_ - a_.mean(0)).T @ (b_ - b_.mean(0)) / (x.shape[0] - 1)
        errs.append(float(torch.linalg.norm(cross - float(process.a) * eye) / process.dim**0.5))
    return {"marginal_w2": sum(w2) / len(w2), "corr_err": sum(errs) / max(len(errs), 1)}
