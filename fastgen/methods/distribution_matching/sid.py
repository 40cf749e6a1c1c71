"""SiD: Score identity Distillation (Zhou et al., ICML 2024, "Score identity Distillation: Exponentially Fast
Distillation of Pretrained Diffusion Models for One-Step Generation").

Networks as DMD2: generator G (`net`), frozen teacher f_phi, fake score f_psi (initialised from the teacher), all as
x0 predictors. With x_g = G(z), x_t = alpha(t) x_g + sigma(t) eps, t ~ sample_t_cfg:
  generator (eq. 9 with the paper's weighting omega(t)/sigma^4 = 1 / mean|x_g - f_phi(x_t)|, treated as a constant):
      L_theta = w * [ (1 - alpha) ||f_phi - f_psi||^2 + (f_phi - f_psi)^T (f_psi - x_g) ]
              = w * (f_phi - f_psi)^T ( (f_phi - x_g) - alpha (f_phi - f_psi) ),   alpha = sid_alpha (1.2)
      differentiated through x_g *and* through x_t inside both score networks (their weights frozen): unlike
      DMD's stop-gradient VSD, SiD's loss is the model-based estimate of the Fisher divergence itself;
  fake score: denoising score matching of f_psi on sg(x_g) (as DMD2's critic).

Alternation (paper, Algorithm 1: every iteration updates psi, then theta): the fake score steps on *every*
iteration and the generator on iterations with iteration % student_update_freq == 0 (freq 1, the default: both
every iteration). Both losses come from one forward/backward on the same x_g (the fake score's weights are kept out
of the generator loss's graph), so the generator's gradient uses f_psi before this iteration's update: a one-step
lag against the paper's sequential order, which the trainer's one-backward iteration cannot express otherwise.
With gan_loss_weight_gen > 0 (SiDA-style) a GAN term is added as in DMD2 and the discriminator trains with the
fake score.
"""

from __future__ import annotations

from typing import Any

import torch

from fastgen.methods.common_loss import gan_loss_generator
from fastgen.methods.distribution_matching.dmd2 import DMD2Model


def sid_generator_loss(gen: torch.Tensor, teacher_x0: torch.Tensor, fake_x0: torch.Tensor,
                       alpha: float = 1.2) -> torch.Tensor:
    """SiD generator loss (Zhou et al. 2024, eq. 9 / Alg. 1): mean of
    w (f_phi - f_psi) ((f_phi - x_g) - alpha (f_phi - f_psi)) with w = 1 / mean_{CHW}|x_g - f_phi| per sample (no
    gradient through w). All three inputs keep their graphs."""
    gen32, teacher32, fake32 = gen.float(), teacher_x0.float(), fake_x0.float()
    with torch.no_grad():
        dims = tuple(range(1, gen.ndim))
        weight = 1.0 / (gen32 - teacher32).abs().mean(dim=dims, keepdim=True).clamp_min(1e-5)
    diff = teacher32 - fake32
    return (weight * diff * ((teacher32 - gen32) - alpha * diff)).mean()


class SiDModel(DMD2Model):
    """Score identity Distillation (see module docstring)."""

    def __init__(self, config: Any):
        if int(config.student_update_freq) < 1:
            raise ValueError(f"student_update_freq must be >= 1; got {config.student_update_freq}")
        super().__init__(config)

    def active_optimizer_names(self, iteration: int) -> list[str]:
        """Fake score (and discriminator) every iteration; the generator every student_update_freq iterations."""
        critics = [name for name in self.critic_names if name in self.optimizers]
        return (["net"] if self.is_generator_iteration(iteration) else []) + critics

    def matching_step(self, data, iteration: int) -> tuple[dict, dict]:
        real, condition, neg_condition = self._prepare_training_data(data)
        update_generator = self.is_generator_iteration(iteration)
        self.set_trainable(["net", *self.critic_names] if update_generator else self.critic_names)
        gen, noise = self.generate(real, condition)
        losses: dict[str, torch.Tensor] = {}
        total = 0.0
        if update_generator:
            t, eps = self.sample_t_eps(gen)
            with self.frozen(self.fake_score, self.discriminator):
                gen_losses = self.sid_losses(gen, t, eps, condition, neg_condition)
            losses.update(gen_losses)
            total = gen_losses["generator_loss"]
        critic = self.critic_losses(gen.detach(), real, condition)
        total = total + critic.pop("total_loss")
        losses.update(critic)
        losses["total_loss"] = total
        return self.loss_map(losses), self.step_outputs(gen, noise, condition)

    def sid_losses(self, gen: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, condition: Any,
                   neg_condition: Any) -> dict[str, torch.Tensor]:
        """sid_loss_weight * L_theta (+ gan_loss_weight_gen * GAN generator loss), gradients to the generator only."""
        cfg = self.config
        x_t = self.schedule.forward_process(gen, eps, t)
        gan = self.discriminator is not None
        features = None
        if gan and self.feature_source == "fake_score":
            fake_x0, features = self.fake_score(x_t, t, condition=condition, fwd_pred_type="x0",
                                                feature_indices=self.discriminator.feature_indices)
        else:
            fake_x0 = self.fake_score(x_t, t, condition=condition, fwd_pred_type="x0")
        if gan and self.feature_source == "teacher":
            teacher_x0, features = self.teacher_x0(x_t, t, condition, neg_condition,
                                                   feature_indices=self.discriminator.feature_indices, grad=True)
        else:
            teacher_x0 = self.teacher_x0(x_t, t, condition, neg_condition, grad=True)
        sid = sid_generator_loss(gen, teacher_x0, fake_x0, float(cfg.sid_alpha))
        losses = {"sid_loss": sid}
        total = cfg.sid_loss_weight * sid
        if gan:
            losses["gan_loss_gen"] = gan_loss_generator(self.discriminator(features))
            total = total + cfg.gan_loss_weight_gen * losses["gan_loss_gen"]
        losses["generator_loss"] = total
        return losses
