"""LADD (Sauer et al. 2024, "Fast High-Resolution Image Synthesis with Latent Adversarial Diffusion Distillation").

Purely adversarial distillation: the frozen teacher is only a feature extractor. Generated and real samples are
re-noised to t ~ sample_t_cfg, the teacher's features of the noisy samples feed the discriminator heads, and there
is no score-matching term (no fake score). With freq = student_update_freq:
  iteration % freq == 0 -> generator:     L_G = softplus(-D(T_feat(noise(G(z), t))))       (non-saturating)
  otherwise            -> discriminator:  L_D = softplus(D(T_feat(fake_t))) + softplus(-D(T_feat(real_t)))
                                                + gan_r1_reg_weight * approx-R1(real_t)
Re-noising before the discriminator is what lets one teacher serve as a discriminator backbone at every noise level
(the paper's key point); t's distribution (sample_t_cfg) sets which structure the feedback emphasises.
"""

from __future__ import annotations

from fastgen.methods.common_loss import gan_loss_generator
from fastgen.methods.distribution_matching.common import AdversarialDistillationModel


class LADDModel(AdversarialDistillationModel):
    """Latent adversarial diffusion distillation (see module docstring)."""

    extra_checkpointed = ("discriminator",)

    def gan_enabled(self) -> bool:
        if self.config.discriminator is None:
            raise ValueError("LADD trains only through its discriminator: model.discriminator must be a LazyCall "
                             "of a discriminator from fastgen.networks.discriminators; got None")
        return True

    def generator_step(self, real, condition, neg_condition) -> tuple[dict, dict]:
        gen, noise = self.generate(real, condition)
        t, eps = self.sample_t_eps(gen)
        x_t = self.schedule.forward_process(gen, eps, t)
        logits = self.discriminator(self.disc_features(x_t, t, condition, grad=True))
        loss = gan_loss_generator(logits)
        loss_map = {"total_loss": loss, "gan_loss_gen": loss.detach(), "fake_logit": logits.detach().mean()}
        return loss_map, self.step_outputs(gen, noise, condition)

    def critic_step(self, real, condition, neg_condition) -> tuple[dict, dict]:
        gen, noise = self.generate(real, condition)  # net is frozen: drawn without a graph
        t, eps = self.sample_t_eps(gen)
        x_t = self.schedule.forward_process(gen, eps, t)
        losses = self.discriminator_loss(x_t, t, eps, real, condition)
        loss_map = {k: v.detach() for k, v in losses.items()}
        loss_map["total_loss"] = losses["gan_loss_disc"]
        return loss_map, self.step_outputs(gen, noise, condition)
