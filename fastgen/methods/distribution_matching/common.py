"""What DMD2, f-distill, LADD and SiD share: the student's input, the frozen teacher's (guided) prediction, GAN heads
on network features, alternating generator / critic updates and the requires_grad switching that goes with them.

Notation: G = student `net`, T = frozen teacher, F = fake score, D = discriminator heads; x_t = alpha(t) x0 +
sigma(t) eps. Time tensors are float64 [B] (the schedule's t_precision).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from fastgen.methods.common_loss import (
    approx_r1_loss,
    gan_loss_discriminator,
    perturb_for_r1,
)
from fastgen.methods.fine_tuning.sft import sample_t_kwargs
from fastgen.methods.model import FastGenModel
from fastgen.networks.samplers import cfg_pair

GAN_FEATURE_SOURCES = ("teacher", "fake_score")


def cfg_guided(pred: torch.Tensor, pred_neg: torch.Tensor, guidance_scale: float | None) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) in the convention pred + (g - 1)(pred - pred_neg)."""
    if guidance_scale is None:
        return pred
    return pred + (guidance_scale - 1.0) * (pred - pred_neg)


def alternating_update_is_generator(iteration: int, student_update_freq: int) -> bool:
    """DMD2's two-time-scale rule: the generator steps when iteration % freq == 0 (iterations count from 1), the
    critic (fake score / discriminator) on the other iterations: freq 5 -> G at 5, 10, ...; critic 4 times per cycle."""
    if int(student_update_freq) < 1:
        raise ValueError(f"student_update_freq must be >= 1; got {student_update_freq}")
    return int(iteration) % int(student_update_freq) == 0


class AdversarialDistillationModel(FastGenModel):
    """Base of the distribution-matching family: teacher, optional discriminator, alternating updates.

    Subclasses implement `generator_step` and `critic_step` (each returns (loss_map, outputs)); the critic networks
    are whichever of `fake_score` / `discriminator` exist (`critic_names`). `single_train_step` switches requires_grad so each step builds only the gradients it
    needs: on a generator step only `net` has trainable parameters (gradients still flow *through* the frozen
    critics into the generator's output); on a critic step `net` is frozen and the sample is drawn under no_grad.
    Networks stay in train mode (the shipped configs use no dropout, so the matched function is the same).
    """

    needs_teacher = True
    supports_lora = True  # teacher = the shared base with adapters off; DMD2's fake score = a second adapter
    extra_checkpointed: tuple[str, ...] = ("discriminator",)

    # --- networks ------------------------------------------------------------------------------------------------
    def gan_enabled(self) -> bool:
        """Whether a discriminator is built (subclasses gate it, e.g. DMD2 on gan_loss_weight_gen > 0)."""
        return self.config.discriminator is not None

    def build_model(self) -> None:
        """net, teacher, student weights and EMA copies (FastGenModel), then the critic networks."""
        super().build_model()
        self.build_critics()

    def build_critics(self) -> None:
        """The discriminator heads when the GAN is on (subclasses add theirs first, e.g. DMD2's fake score)."""
        self.discriminator: nn.Module | None = None
        if self.gan_enabled():
            if self.config.discriminator is None:
                raise ValueError(f"{type(self).__name__}'s GAN loss needs model.discriminator (a LazyCall of a "
                                 "discriminator from fastgen.networks.discriminators); got None")
            self.discriminator = self.build_net(self.config.discriminator).train().requires_grad_(True)

    @property
    def feature_source(self) -> str:
        return "teacher"

    @property
    def critic_names(self) -> tuple[str, ...]:
        """Trainable networks updated on critic iterations (those that exist)."""
        return tuple(n for n in ("fake_score", "discriminator") if isinstance(getattr(self, n, None), nn.Module))

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"net": self.net, **{name: getattr(self, name) for name in self.critic_names}}

    def set_trainable(self, names: Iterable[str]) -> None:
        """requires_grad on for the networks in `names`, off for the other trained ones (teacher stays frozen)."""
        names = set(names)
        for name, module in self.trainable_modules().items():
            module.requires_grad_(name in names)

    @contextlib.contextmanager
    def frozen(self, *modules: nn.Module | None):
        """Parameters of `modules` excluded from the autograd graph built inside the block (gradients still reach
        their inputs); their previous requires_grad flags are restored afterwards."""
        params = [p for m in modules if m is not None for p in m.parameters()]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)

    def init_optimizers(self) -> None:
        """net (+ grad scaler) via FastGenModel, then one optimizer per critic network."""
        self.set_trainable(self.trainable_modules())  # optimizers collect parameters that require grad
        super().init_optimizers()
        if self.discriminator is not None:
            self.add_optimizer("discriminator", self.discriminator, self.config.discriminator_optimizer,
                               self.config.discriminator_scheduler)

    # --- alternation ---------------------------------------------------------------------------------------------
    def is_generator_iteration(self, iteration: int) -> bool:
        return alternating_update_is_generator(iteration, self.config.student_update_freq)

    def active_optimizer_names(self, iteration: int) -> list[str]:
        """Generator iterations step `net` only; critic iterations step the critic networks."""
        if self.is_generator_iteration(iteration):
            return ["net"]
        return [name for name in self.critic_names if name in self.optimizers]

    def single_train_step(self, data, iteration: int) -> tuple[dict, dict]:
        real, condition, neg_condition = self._prepare_training_data(data)
        if self.is_generator_iteration(iteration):
            self.set_trainable(["net"])
            return self.generator_step(real, condition, neg_condition)
        self.set_trainable(self.critic_names)
        return self.critic_step(real, condition, neg_condition)

    def generator_step(self, real, condition, neg_condition) -> tuple[dict, dict]:
        raise NotImplementedError

    def critic_step(self, real, condition, neg_condition) -> tuple[dict, dict]:
        raise NotImplementedError

    # --- student input and sampling of (t, eps) ------------------------------------------------------------------
    @property
    def schedule(self):
        """The schedule the teacher/critics interpret t in (the teacher's)."""
        return self.teacher.noise_scheduler

    def student_input(self, real: torch.Tensor, condition: Any = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                               torch.Tensor]:
        """(x_student, t_student float64 [B], unit noise z); `condition` serves subclasses that simulate the
        student's own chain (CausVid's backward simulation).

        1 step: x = z sigma(t_0) at t_0 = t_list[0] (max_t by default). Several steps: t_student uniform over
        t_list[:-1]; the first entry gets pure noise as at inference, later entries the data noised to t_student
        (no backward simulation of the student's own chain)."""
        schedule = self.net.noise_scheduler
        steps = int(self.config.student_sample_steps)
        noise = torch.randn_like(real)
        t_list = self.student_t_list(self.net, steps).to(real.device)
        n = real.shape[0]
        t_first = t_list[0].expand(n).to(schedule.t_precision)
        x_first = schedule.latents(noise, t_list[0])
        if steps == 1:
            return x_first, t_first, noise
        t_student = schedule.sample_from_t_list(n, t_list, device=real.device).to(schedule.t_precision)
        x_noised = schedule.forward_process(real, noise, t_student)
        at_first = (t_student == t_list[0]).reshape(n, *([1] * (real.ndim - 1)))
        return torch.where(at_first, x_first, x_noised), t_student, noise

    def generate(self, real: torch.Tensor, condition: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(gen = G(x_student, t_student) as x0, unit noise z); with gradients iff net requires grad."""
        x_in, t_student, noise = self.student_input(real, condition)
        grad = any(p.requires_grad for p in self.net.parameters())
        with contextlib.nullcontext() if grad else torch.no_grad():
            gen = self.gen_data_from_net(self.net, x_in, t_student, condition=condition)
        return gen, noise

    def sample_t_eps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t ~ sample_t_cfg (float64 [B]) and eps ~ N(0, I) like x."""
        t = self.schedule.sample_t(x.shape[0], **{**sample_t_kwargs(self.config.sample_t_cfg), "device": x.device})
        return t, torch.randn_like(x)

    # --- teacher ---------------------------------------------------------------------------------------------------
    def teacher_x0(self, x_t, t, condition, neg_condition, feature_indices=None, grad: bool = False):
        """The teacher's x0 at (x_t, t), guided by `guidance_scale`; with `feature_indices`, also the conditional
        pass's features: (x0, features). `grad`: keep the graph to x_t (the teacher's weights stay frozen).
        With guidance the conditional and negative passes are one forward on the doubled batch (cfg_pair)."""
        kwargs = {"feature_indices": feature_indices} if feature_indices else {}

        def teacher(x, tt, cond):
            return self.teacher(x, tt, condition=cond, fwd_pred_type="x0", **kwargs)

        with contextlib.nullcontext() if grad else torch.no_grad():
            if self.config.guidance_scale is None:
                return teacher(x_t, t, condition)
            out, out_neg = cfg_pair(teacher, x_t, t, condition, neg_condition)
            if not feature_indices:
                return cfg_guided(out, out_neg, self.config.guidance_scale)
            return cfg_guided(out[0], out_neg[0], self.config.guidance_scale), out[1]

    # --- discriminator -------------------------------------------------------------------------------------------
    def feature_net(self) -> nn.Module:
        return self.teacher if self.feature_source == "teacher" else self.fake_score

    def disc_features(self, x_t: torch.Tensor, t: torch.Tensor, condition: Any, grad: bool) -> list[torch.Tensor]:
        """Features for the discriminator heads from the feature source (stops after the deepest one)."""
        with contextlib.nullcontext() if grad else torch.no_grad():
            return self.feature_net()(x_t, t, condition=condition, feature_indices=self.discriminator.feature_indices,
                                      return_features_early=True)

    def discriminator_loss(self, x_fake_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, real: torch.Tensor,
                           condition: Any, fake_features: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """GAN critic loss on noised fake vs noised real samples + approximate R1 on the real ones.

        Real data gets its own (t, eps) unless gan_use_same_t_noise. Features carry gradients only when they come
        from the fake score (DMD2 paper: its classifier branch trains the fake denoiser's encoder too). Frozen
        teacher features of the fake, real (and R1-perturbed) inputs come from ONE forward on the stacked batch,
        and the heads score all of them in one call (both per-sample, so the numbers equal separate calls)."""
        cfg = self.config
        grad = self.feature_source == "fake_score"
        t_real, eps_real = (t, eps) if cfg.gan_use_same_t_noise else self.sample_t_eps(real)
        x_real_t = self.schedule.forward_process(real, eps_real, t_real)
        r1 = cfg.gan_r1_reg_weight > 0
        inputs = [(x_real_t, t_real, condition)]
        if r1:
            inputs.append((perturb_for_r1(x_real_t, float(cfg.gan_r1_reg_alpha)), t_real, condition))
        if fake_features is None:
            inputs.insert(0, (x_fake_t, t, condition))
        if grad:  # trained feature net: separate passes (each its own graph)
            feats = [self.disc_features(x, tt, c, grad) for x, tt, c in inputs]
        else:
            feats = split_features(self.disc_features(torch.cat([x for x, _, _ in inputs]),
                                                      torch.cat([tt for _, tt, _ in inputs]),
                                                      repeat_condition(condition, len(inputs)), grad), len(inputs))
        if fake_features is not None:
            feats.insert(0, fake_features)
        logits = self.discriminator([torch.cat(level) for level in zip(*feats)]).chunk(len(feats))
        fake_logits, real_logits = logits[0], logits[1]
        gan_d = gan_loss_discriminator(real_logits, fake_logits)
        losses = {"gan_loss_disc": gan_d}
        if r1:
            losses["r1_loss"] = approx_r1_loss(real_logits, logits[2])
            losses["gan_loss_disc"] = gan_d + cfg.gan_r1_reg_weight * losses["r1_loss"]
        losses["real_logit"] = real_logits.detach().float().mean()
        losses["fake_logit"] = fake_logits.detach().float().mean()
        return losses

    # --- outputs -------------------------------------------------------------------------------------------------
    def step_outputs(self, gen: torch.Tensor, noise: torch.Tensor, condition: Any) -> dict[str, Any]:
        """1 step: this step's generator sample and its unit noise; several steps: a deferred few-step sample."""
        steps = int(self.config.student_sample_steps)
        if steps == 1:
            return {"gen_rand": gen.detach(), "input_rand": noise}
        return {
            "gen_rand": functools.partial(self.generator_fn, self.net_inference, noise, condition=condition,
                                          student_sample_steps=steps),
            "input_rand": noise,
        }


def repeat_condition(condition: Any, k: int) -> Any:
    """`condition` for a batch stacked k times (tensors, mappings of tensors, lists; None stays None)."""
    if condition is None or k == 1:
        return condition
    if isinstance(condition, torch.Tensor):
        return torch.cat([condition] * k)
    if isinstance(condition, Mapping):
        return {key: repeat_condition(value, k) for key, value in condition.items()}
    if isinstance(condition, (list, tuple)):
        return list(condition) * k
    return condition


def split_features(features: list[torch.Tensor], k: int) -> list[list[torch.Tensor]]:
    """Features of a batch stacked k times -> k lists of features (one per stacked part)."""
    parts = [feature.chunk(k) for feature in features]
    return [[part[i] for part in parts] for i in range(k)]


def check_feature_source(source: str) -> str:
    if source not in GAN_FEATURE_SOURCES:
        raise ValueError(f"model.gan_feature_source={source!r} is not supported; expected one of "
                         f"{GAN_FEATURE_SOURCES}")
    return source
