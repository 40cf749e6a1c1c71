"""DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis").

Networks: generator G (`net`), frozen teacher T (the real score), fake score F (initialised from T's weights,
trained on G's samples) and, when gan_loss_weight_gen > 0, GAN heads D on T's features (or on F's features,
`gan_feature_source="fake_score"`, as in the paper's sec. 4.3).

Algorithm (two time-scale update rule, sec. 4.2): with freq = student_update_freq,
  iteration % freq == 0 -> generator step:
      x = G(z sigma_max) (1 step; several steps: data noised to a t of t_list), t ~ sample_t_cfg, x_t = noise(x, t);
      L_G = VSD(x; T_x0(x_t), F_x0(x_t))   (eq. 2-3: grad_x = (F_x0 - T_x0) / mean|x - T_x0|)
            + gan_loss_weight_gen * softplus(-D(feat(x_t)))          (eq. 5, non-saturating)
      where T_x0 is classifier-free guided: T + (g - 1)(T - T_neg) when guidance_scale is set;
  otherwise -> critic step (x drawn without gradient):
      L_F = || F(x_t, t) - target ||^2 in fake_score_pred_type (denoising score matching on G's samples)
            + w_D [softplus(D(feat(x_t))) + softplus(-D(feat(real_t))) + gan_r1_reg_weight * approx-R1],
      w_D = gan_loss_weight_disc (None: 1 on teacher features, where it only scales D's own gradients, and 1e-2 on
      the fake score's features, the paper's classification-loss weight: there the GAN gradient also trains F's
      encoder, and at weight 1 it outweighs F's denoising loss, so F stops being an accurate fake score).
With regression_loss_weight = w_R > 0 every generator step also adds the original DMD's regression term (Yin et al.
2024a, eq. 7; an L2 distance here, not LPIPS) on precomputed teacher pairs (z, y = ODE_T(z)) read beside the real
images (batch keys "pair_noise", "pair_real", "pair_condition"): w_R * 0.5 ||G(z sigma_max) - y||^2. It anchors the
generator to the teacher's noise-to-image map, which the reverse-KL VSD alone lets collapse onto fewer modes (on
Fashion-MNIST the L2 form did not help: configs/experiments/FashionMNIST/README.md, session 10).
"""

from __future__ import annotations

from typing import Any

import torch
from loguru import logger
from torch import nn

from fastgen.methods.common_loss import (
    DSM_WEIGHTINGS,
    PRED_TYPES,
    denoising_score_matching_loss,
    gan_loss_generator,
    variational_score_distillation_loss,
)
from fastgen.methods.distribution_matching.common import AdversarialDistillationModel, check_feature_source
from fastgen.methods.knowledge_distillation.kd import one_step_regression

DISC_LOSS_WEIGHT_BY_SOURCE = {"teacher": 1.0, "fake_score": 1e-2}  # paper (ImageNet-64): cls_loss_weight 1e-2
PAIR_KEYS = ("pair_noise", "pair_real")  # the regression term's batch entries (+ optional "pair_condition")


def resolve_disc_loss_weight(weight: float | None, feature_source: str) -> float:
    """The critic step's discriminator-loss weight: `weight` when set (>= 0), else the feature source's default."""
    if weight is None:
        return DISC_LOSS_WEIGHT_BY_SOURCE[feature_source]
    if float(weight) < 0:
        raise ValueError(f"model.gan_loss_weight_disc must be >= 0 or None (None: 1 on teacher features, 0.01 on "
                         f"fake-score features); got {weight}")
    return float(weight)


class DMD2Model(AdversarialDistillationModel):
    """Distribution matching distillation with a GAN (see module docstring)."""

    extra_checkpointed = ("fake_score", "discriminator")

    def __init__(self, config: Any):
        source = check_feature_source(getattr(config, "gan_feature_source", "teacher"))
        resolve_disc_loss_weight(getattr(config, "gan_loss_weight_disc", None), source)
        pred_type = config.fake_score_pred_type
        if pred_type is not None and pred_type not in PRED_TYPES:
            raise ValueError(f"model.fake_score_pred_type={pred_type!r} is not supported; expected None or one of "
                             f"{PRED_TYPES}")
        if float(getattr(config, "regression_loss_weight", 0.0)) < 0:
            raise ValueError(f"model.regression_loss_weight must be >= 0 (0 disables DMD's regression term); got "
                             f"{config.regression_loss_weight}")
        weighting = getattr(config, "fake_score_dsm_weighting", "none")
        if weighting not in DSM_WEIGHTINGS:
            raise ValueError(f"model.fake_score_dsm_weighting={weighting!r} is not supported; expected one of "
                             f"{DSM_WEIGHTINGS}")
        super().__init__(config)

    # --- networks ------------------------------------------------------------------------------------------------
    def gan_enabled(self) -> bool:
        return float(self.config.gan_loss_weight_gen) > 0

    @property
    def feature_source(self) -> str:
        return getattr(self.config, "gan_feature_source", "teacher")

    def build_critics(self) -> None:
        """The fake score, then the discriminator (only when gan_loss_weight_gen > 0)."""
        self.fake_score = self.build_fake_score()
        super().build_critics()

    def build_fake_score(self) -> nn.Module:
        """F from `fake_score_net` (else the teacher's config, else net), initialised from the teacher's weights when
        the architectures match (the paper's init: F starts as the real score). With model.lora (and
        lora.fake_score_adapter) F is an adapter "fake_score" on the student's shared frozen base instead."""
        from fastgen.methods.lora import LoRAView, add_adapter

        cfg = self.config
        arch = getattr(cfg, "fake_score_net", None)
        shared_teacher = isinstance(self.teacher, LoRAView)
        if shared_teacher and arch is None and cfg.lora.fake_score_adapter:
            # LoRA student: F is a second adapter on the frozen base, starting at B = 0, i.e. exactly the teacher
            return add_adapter(self.lora_base, cfg.lora, "fake_score").train().requires_grad_(True)
        arch = arch if arch is not None else (cfg.teacher if cfg.teacher is not None else cfg.net)
        fake_score = self.build_net(arch)
        teacher_state = self.teacher.base_state_dict() if shared_teacher else self.teacher.state_dict()
        fake_keys = set(fake_score.state_dict())
        if teacher_state and fake_keys <= set(teacher_state):
            fake_score.load_state_dict(teacher_state, strict=False)
        else:
            logger.info(f"fake score ({type(fake_score).__name__}) keeps its own initialisation: the teacher "
                        f"({type(self.teacher).__name__}) has no matching weights")
        return fake_score.train().requires_grad_(True)

    def init_optimizers(self) -> None:
        super().init_optimizers()
        self.add_optimizer("fake_score", self.fake_score, self.config.fake_score_optimizer,
                           self.config.fake_score_scheduler)

    @property
    def fake_score_pred_type(self) -> str:
        return self.config.fake_score_pred_type or self.fake_score.net_pred_type

    # --- one training step -----------------------------------------------------------------------------------------
    def single_train_step(self, data, iteration: int) -> tuple[dict, dict]:
        """The method's matching step, plus w_R x the regression loss on generator iterations (module docstring)."""
        loss_map, outputs = self.matching_step(data, iteration)
        weight = float(getattr(self.config, "regression_loss_weight", 0.0))
        if weight > 0 and self.is_generator_iteration(iteration):
            regression = self.regression_loss(data)
            loss_map["regression_loss"] = regression.detach()
            loss_map["total_loss"] = loss_map["total_loss"] + weight * regression
        return loss_map, outputs

    def matching_step(self, data, iteration: int) -> tuple[dict, dict]:
        """Generator or critic step by the alternation rule (SiD overrides: both on its generator iterations)."""
        return super().single_train_step(data, iteration)

    def regression_loss(self, data) -> torch.Tensor:
        """0.5 MSE of the student's first step from the batch's pair noise against the teacher's sample of it."""
        missing = [key for key in PAIR_KEYS if key not in data]
        if missing:
            raise KeyError(f"model.regression_loss_weight > 0 needs teacher pairs in every batch ({', '.join(missing)} "
                           f"missing; the batch has {sorted(data)}): zip a teacher-pair loader into the data with "
                           "fastgen.datasets.zip_loader.ZipLoader(primary=..., secondary=...)")
        loss, _ = one_step_regression(self, data["pair_noise"], data["pair_real"], data.get("pair_condition"))
        return loss

    # --- generator -----------------------------------------------------------------------------------------------
    def vsd_scale(self, fake_logits: torch.Tensor | None, t: torch.Tensor) -> tuple[torch.Tensor | None, dict]:
        """Per-sample scale of the VSD gradient (None for DMD2; f-distill's f-divergence weights)."""
        return None, {}

    def generator_losses(self, gen: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, condition: Any,
                         neg_condition: Any) -> dict[str, torch.Tensor]:
        """L_G for a generator sample `gen` (x0, with graph) noised with (t, eps): VSD + weighted GAN loss."""
        x_t = self.schedule.forward_process(gen, eps, t)
        gan = self.discriminator is not None
        features = None
        if gan and self.feature_source == "fake_score":
            fake_x0, features = self.fake_score(x_t, t, condition=condition, fwd_pred_type="x0",
                                                feature_indices=self.discriminator.feature_indices)
        else:
            with torch.no_grad():
                fake_x0 = self.fake_score(x_t, t, condition=condition, fwd_pred_type="x0")
        if gan and self.feature_source == "teacher":
            teacher_x0, features = self.teacher_x0(x_t, t, condition, neg_condition,
                                                   feature_indices=self.discriminator.feature_indices, grad=True)
        else:
            teacher_x0 = self.teacher_x0(x_t, t, condition, neg_condition)
        fake_logits = self.discriminator(features) if gan else None
        scale, extra = self.vsd_scale(fake_logits, t)
        vsd = variational_score_distillation_loss(gen, teacher_x0.detach(), fake_x0.detach(), additional_scale=scale)
        losses = {"vsd_loss": vsd, **extra}
        total = vsd
        if gan:
            losses["gan_loss_gen"] = gan_loss_generator(fake_logits)
            total = total + self.config.gan_loss_weight_gen * losses["gan_loss_gen"]
        losses["total_loss"] = total
        return losses

    def generator_step(self, real, condition, neg_condition) -> tuple[dict, dict]:
        gen, noise = self.generate(real, condition)
        t, eps = self.sample_t_eps(gen)
        losses = self.generator_losses(gen, t, eps, condition, neg_condition)
        return self.loss_map(losses), self.step_outputs(gen, noise, condition)

    # --- critic --------------------------------------------------------------------------------------------------
    def fake_score_losses(self, gen: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, condition: Any,
                          with_features: bool = False):
        """DSM of F on the (detached) generator samples; with_features also returns F's features of x_t for D."""
        gen = gen.detach()
        x_t = self.schedule.forward_process(gen, eps, t)
        pred_type = self.fake_score_pred_type
        if with_features:
            pred, features = self.fake_score(x_t, t, condition=condition, fwd_pred_type=pred_type,
                                             feature_indices=self.discriminator.feature_indices)
        else:
            pred, features = self.fake_score(x_t, t, condition=condition, fwd_pred_type=pred_type), None
        dsm = denoising_score_matching_loss(pred_type, pred, gen, eps, self.schedule, t,
                                            weighting=getattr(self.config, "fake_score_dsm_weighting", "none"),
                                            sigma_data=getattr(self.config, "fake_score_dsm_sigma_data", 0.5))
        return dsm, x_t, features

    def critic_losses(self, gen: torch.Tensor, real: torch.Tensor, condition: Any) -> dict[str, torch.Tensor]:
        t, eps = self.sample_t_eps(gen)
        gan = self.discriminator is not None
        shared = gan and self.feature_source == "fake_score"  # one F pass gives both the DSM output and D's input
        dsm, x_t, features = self.fake_score_losses(gen, t, eps, condition, with_features=shared)
        losses = {"fake_score_loss": dsm}
        total = dsm
        if gan:
            losses.update(self.discriminator_loss(x_t, t, eps, real, condition, fake_features=features))
            total = total + self.disc_loss_weight * losses["gan_loss_disc"]
        losses["total_loss"] = total
        return losses

    @property
    def disc_loss_weight(self) -> float:
        """w_D of the critic step (module docstring): gan_loss_weight_disc, else by feature source."""
        return resolve_disc_loss_weight(getattr(self.config, "gan_loss_weight_disc", None), self.feature_source)

    def critic_step(self, real, condition, neg_condition) -> tuple[dict, dict]:
        gen, noise = self.generate(real, condition)  # net is frozen: drawn without a graph
        losses = self.critic_losses(gen, real, condition)
        return self.loss_map(losses), self.step_outputs(gen, noise, condition)

    @staticmethod
    def loss_map(losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """total_loss keeps its graph; every other entry is logged detached."""
        return {k: (v if k == "total_loss" else v.detach()) for k, v in losses.items()}
