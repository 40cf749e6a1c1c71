"""Preconditioning and input plumbing shared by EDMPrecond and EDM2Precond.

EDM (Karras et al. 2022, Table 1 / eq. 7) writes the denoiser as D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)
so that the raw network F sees unit-variance inputs and predicts a unit-variance target at every noise level.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

DROP_PRECOND_TYPES = (None, "input", "output", "both")
# smallest sigma used for the log noise label: t = 0 then gives c_skip = 1, c_out ~ 0, i.e. D(x) = x (the exact limit)
MIN_SIGMA = 1e-20
# time -> noise-label scale for schedules other than edm (DDPM's convention: t in [0, 1] -> [0, 1000])
NON_EDM_TIME_SCALE = 1000.0


def edm_precond_coefficients(sigma: torch.Tensor, sigma_data: float):
    """EDM preconditioning (Karras et al. 2022, Table 1): returns (c_skip, c_out, c_in, c_noise).

    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sd^2 + sigma^2),
    c_noise = log(sigma) / 4.
    """
    sd2 = sigma_data**2
    c_skip = sd2 / (sigma**2 + sd2)
    c_out = sigma * sigma_data / (sigma**2 + sd2).sqrt()
    c_in = 1.0 / (sd2 + sigma**2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def check_drop_precond(drop_precond, schedule_type: str):
    """Validate drop_precond; EDM's coefficients assume alpha = 1, sigma = t, so other schedules must drop both."""
    if drop_precond not in DROP_PRECOND_TYPES:
        raise ValueError(f"drop_precond must be one of {DROP_PRECOND_TYPES}; got {drop_precond!r}")
    if schedule_type != "edm" and drop_precond != "both":
        raise ValueError(
            f"EDM preconditioning is defined for schedule_type='edm' only; got schedule_type={schedule_type!r} with "
            f"drop_precond={drop_precond!r}. Set drop_precond='both' to use the raw UNet output as the prediction."
        )


def noise_labels(time: torch.Tensor, schedule_type: str) -> torch.Tensor:
    """Float64 noise label fed to the time embedding: log(t)/4 on edm (c_noise), NON_EDM_TIME_SCALE * t otherwise."""
    time = time.to(torch.float64)
    if schedule_type == "edm":
        return time.clamp(min=MIN_SIGMA).log() / 4
    return time * NON_EDM_TIME_SCALE


def flatten_time(t, x: torch.Tensor, name: str = "t") -> torch.Tensor:
    """t as a float64 tensor of shape [B] (a scalar is repeated; [B, 1, 1, 1] is flattened)."""
    t = torch.as_tensor(t, device=x.device)
    t = t.to(torch.float64)
    if t.ndim == 0:
        return t.expand(x.shape[0])
    if t.numel() != x.shape[0]:
        raise ValueError(f"{name} must hold one time per sample ({x.shape[0]}); got shape {tuple(t.shape)}")
    return t.reshape(x.shape[0])


def split_condition(condition):
    """(class condition, augment labels) from a tensor / None or the augment pipe's {orig_condition, aug_condition}."""
    if isinstance(condition, Mapping):
        missing = {"orig_condition", "aug_condition"} - set(condition)
        if missing:
            raise ValueError(
                f"a dict condition needs keys 'orig_condition' and 'aug_condition'; missing {sorted(missing)}"
            )
        return condition["orig_condition"], condition["aug_condition"]
    return condition, None


def class_labels(condition, label_dim: int, batch: int, device, dtype=torch.float32) -> torch.Tensor | None:
    """[B, label_dim] (in `dtype`) one-hot / class weights; None or [B, 0] means unconditional (a zero row).

    Unconditional networks (label_dim = 0) ignore any condition (a labelled data set may feed one).
    """
    if label_dim == 0:
        return None
    if condition is None or (condition.ndim == 2 and condition.shape[1] == 0):
        return torch.zeros(batch, label_dim, device=device, dtype=dtype)
    if condition.ndim != 2 or condition.shape[1] != label_dim or condition.shape[0] not in (1, batch):
        raise ValueError(
            f"condition must be a [B, label_dim] = [{batch}, {label_dim}] one-hot tensor; got {tuple(condition.shape)}"
        )
    return condition.to(device=device, dtype=dtype).expand(batch, label_dim)


def augment_labels(aug, augment_dim: int, batch: int, device, dtype=torch.float32) -> torch.Tensor | None:
    """[B, augment_dim] (in `dtype`) augmentation labels, or None (no augmentation conditioning).

    Networks without augment conditioning (augment_dim = 0) ignore the labels.
    """
    if aug is None or augment_dim == 0:
        return None
    if aug.ndim != 2 or aug.shape != (batch, augment_dim):
        raise ValueError(
            f"aug_condition must have shape [B, augment_dim] = [{batch}, {augment_dim}]; got {tuple(aug.shape)}. "
            "Match the network's augment_dim to the augment pipe."
        )
    return aug.to(device=device, dtype=dtype)


def check_feature_indices(feature_indices, num_levels: int, return_features_early: bool) -> list[int]:
    """Sorted unique feature levels (0 = highest resolution), validated against the number of levels."""
    levels = sorted({int(i) for i in feature_indices}) if feature_indices else []
    bad = [i for i in levels if not 0 <= i < num_levels]
    if bad:
        raise ValueError(f"feature_indices {bad} out of range; this network has features 0..{num_levels - 1}")
    return levels


def check_extra_kwargs(kwargs: Mapping, cls_name: str) -> None:
    """Unknown forward kwargs are an error unless None (methods may pass other networks' options as None)."""
    extra = sorted(k for k, v in kwargs.items() if v is not None)
    if extra:
        raise TypeError(f"{cls_name}.forward got unsupported keyword arguments {extra}")


def precondition_input(x_t: torch.Tensor, time: torch.Tensor, sigma_data: float, schedule_type: str, drop_precond):
    """(x_in, noise_labels, c_skip, c_out) for D = c_skip x + c_out F(x_in; noise_labels).

    Arithmetic in float32 (float64 for a float64 x_t); x_in keeps x_t's dtype. Without output preconditioning
    (drop_precond "output"/"both", or a non-edm schedule) c_skip and c_out are None.
    """
    batch = x_t.shape[0]
    work_dtype = torch.promote_types(x_t.dtype, torch.float32)
    if schedule_type != "edm":
        return x_t, noise_labels(time, schedule_type).to(work_dtype), None, None
    shape = (batch,) + (1,) * (x_t.ndim - 1)
    c_skip, c_out, c_in, c_noise = edm_precond_coefficients(time.clamp(min=MIN_SIGMA), sigma_data)
    c_skip, c_out, c_in = (c.to(work_dtype).reshape(shape) for c in (c_skip, c_out, c_in))
    x_in = x_t if drop_precond in ("input", "both") else (c_in * x_t.to(work_dtype)).to(x_t.dtype)
    if drop_precond in ("output", "both"):
        c_skip = c_out = None
    return x_in, c_noise.to(work_dtype).reshape(batch), c_skip, c_out


def precondition_output(x_t: torch.Tensor, raw: torch.Tensor, c_skip, c_out) -> torch.Tensor:
    """D = c_skip x + c_out F (EDM eq. 7), or F itself without output preconditioning; in x_t's dtype."""
    if c_skip is None:
        return raw.to(x_t.dtype)
    work_dtype = c_skip.dtype
    return (c_skip * x_t.to(work_dtype) + c_out * raw.to(work_dtype)).to(x_t.dtype)
