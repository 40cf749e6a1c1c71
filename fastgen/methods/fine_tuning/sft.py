"""Supervised fine-tuning: denoising score matching of the student on real data (optionally with CFG dropout).

Algorithm per step: t ~ sample_t_cfg, eps ~ N(0, I), x_t = alpha(t) x0 + sigma(t) eps,
loss = w(t) || net(x_t, t, c~) - target ||^2 in the net's prediction type (w = 1, or the EDM weighting with
`dsm_weighting="edm"`), where c~ is the condition replaced by the negative (unconditional) condition for a random
fraction `cond_dropout_prob` of the samples, so one network learns both the conditional and the unconditional model
that classifier-free guidance mixes at sampling time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from fastgen.methods.common_loss import DSM_WEIGHTINGS, denoising_score_matching_loss
from fastgen.methods.model import FastGenModel


def sample_t_kwargs(sample_t_cfg: Any) -> dict[str, Any]:
    """SampleTConfig (attrs or mapping) -> keyword arguments of noise_scheduler.sample_t."""
    if attrs.has(type(sample_t_cfg)):
        return attrs.asdict(sample_t_cfg)
    return dict(sample_t_cfg or {})


def drop_condition(condition: Any, neg_condition: Any, prob: float | None, keys_no_dropout: Sequence[str] = (),
                   generator: torch.Generator | None = None) -> Any:
    """Per sample, replace `condition` by `neg_condition` with probability `prob` (CFG training, Ho & Salimans 2022).

    Dict conditions share one mask over all keys; keys in `keys_no_dropout` are always kept. A missing
    neg_condition means zeros (the unconditional one-hot row).
    """
    if condition is None or not prob:
        return condition
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"cond_dropout_prob must be in [0, 1]; got {prob}")
    first = next(iter(condition.values())) if isinstance(condition, Mapping) else condition
    batch = first.shape[0]
    drop = torch.rand(batch, device=first.device, generator=generator) < prob

    def mix(cond: torch.Tensor, neg: torch.Tensor | None) -> torch.Tensor:
        neg = torch.zeros_like(cond) if neg is None else neg
        mask = drop.reshape(batch, *([1] * (cond.ndim - 1)))
        return torch.where(mask, neg.to(cond.dtype), cond)

    if isinstance(condition, Mapping):
        neg = neg_condition or {}
        return {k: v if k in keys_no_dropout else mix(v, neg.get(k)) for k, v in condition.items()}
    return mix(condition, neg_condition)


class SFTModel(FastGenModel):
    """Denoising score matching on real data; inference = the multi-step sampler with CFG."""

    supports_lora = True

    def build_model(self) -> None:
        if self._dsm_weighting not in DSM_WEIGHTINGS:  # fail before building any network
            raise ValueError(f"model.dsm_weighting must be one of {DSM_WEIGHTINGS}; got {self._dsm_weighting!r}")
        super().build_model()

    @property
    def _dsm_weighting(self) -> str:
        return getattr(self.config, "dsm_weighting", "none")

    def single_train_step(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        real, condition, neg_condition = self._prepare_training_data(data)
        schedule = self.net.noise_scheduler
        condition_in = drop_condition(condition, neg_condition, getattr(self.config, "cond_dropout_prob", None),
                                      getattr(self.config, "cond_keys_no_dropout", ()))
        t = self.sample_train_t(real)
        eps = torch.randn_like(real)
        x_t = schedule.forward_process(real, eps, t)
        pred = self.net(x_t, t, condition=condition_in)
        loss = denoising_score_matching_loss(self.net.net_pred_type, pred, real, eps, schedule, t,
                                             weighting=self._dsm_weighting,
                                             sigma_data=getattr(self.config, "dsm_sigma_data", 0.5))
        noise = torch.randn_like(real)
        outputs = {
            "gen_rand": functools.partial(self.generator_fn, self.net_inference, noise, condition=condition,
                                          neg_condition=neg_condition),
            "input_rand": noise,
        }
        return {"total_loss": loss, "dsm_loss": loss.detach()}, outputs

    def sample_train_t(self, real: torch.Tensor) -> torch.Tensor:
        """Training times: t ~ sample_t_cfg, float64 [B] (CausalSFT: one per chunk, [B, T])."""
        schedule = self.net.noise_scheduler
        return schedule.sample_t(real.shape[0], **{**sample_t_kwargs(self.config.sample_t_cfg), "device": real.device})

    def generator_fn(self, net: torch.nn.Module, noise: torch.Tensor, condition: Any = None,
                     student_sample_steps: int | None = None, t_list=None, neg_condition: Any = None,
                     guidance_scale: float | None = None, sampler_type: str = "heun", precision_amp: Any = "infer",
                     **kwargs: Any) -> torch.Tensor:
        """Multi-step PF-ODE sampling of the fine-tuned net (net.sample), with CFG at `guidance_scale`
        (default config.guidance_scale). `student_sample_steps` counts network evaluations (default from config)."""
        steps = student_sample_steps if student_sample_steps is not None else self.config.student_sample_steps
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        kwargs.pop("sample_type", None)
        kwargs.pop("generator", None)
        with self.inference_mode(net, precision_amp):
            return net.sample(noise, condition=condition, neg_condition=neg_condition, guidance_scale=scale,
                              num_steps=steps, sampler_type=sampler_type, t_list=t_list, **kwargs)
