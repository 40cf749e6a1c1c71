"""FastGenNetwork: the one interface every generator, teacher and fake-score network implements.

Methods only ever talk to networks through this interface, so any architecture can be distilled by any method:
    out = net(x_t, t, condition=None, r=None, feature_indices=None, return_features_early=False,
              return_logvar=False, fwd_pred_type=None)
Return conventions (see `pack_outputs`):
  * return_features_early=True -> list of feature tensors, one per entry of sorted(feature_indices); the forward
    stops as soon as the last requested feature is computed (discriminator-only passes are cheaper); with no
    feature requested it is [] and nothing is computed;
  * otherwise `out` (the native prediction `net_pred_type`, converted to `fwd_pred_type` when given),
    followed by `features` (a list) when feature_indices is non-empty and `logvar` ([B, 1], the adaptive-weighting
    log-variance used by sCM) when return_logvar: out | (out, features) | (out, logvar) | (out, features, logvar).
  * t is the schedule's time (float64 allowed), shape [B] (or [B, T] for causal video nets); r is a second time
    (MeanFlow's average-velocity end point); condition is None or a float tensor [B, label_dim] (a zero row /
    [B, 0] means unconditional).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod

import torch
from torch import nn

from fastgen.networks import samplers
from fastgen.networks.noise_schedule import PRED_TYPES, get_noise_schedule
from fastgen.utils.errors import BadInputError

# Spatial size (pixels or latents per side) that `train.py --smoke` runs at: fixed-resolution networks declare it as
# their tiny resolution, and fastgen.smoke shrinks model.input_shape to it, so the two always agree.
SMOKE_SPATIAL_SIZE = 8


class FastGenNetwork(nn.Module, ABC):
    """Base class: native prediction type, a noise schedule, output packing, FSDP2 sharding and a teacher sampler.

    Schedule kwargs (min_t, max_t, num_steps, rho, ...) pass through the network's constructor so a network
    LazyCall can configure its schedule.
    """

    def __init__(self, net_pred_type: str = "x0", schedule_type: str = "edm", **schedule_kwargs):
        super().__init__()
        if net_pred_type not in PRED_TYPES:
            raise ValueError(f"net_pred_type must be one of {PRED_TYPES}; got {net_pred_type!r}")
        self.net_pred_type = net_pred_type
        self.schedule_type = schedule_type
        self.schedule_kwargs = dict(schedule_kwargs)
        self.set_noise_schedule()

    def set_noise_schedule(self) -> None:
        """(Re-)create `self.noise_scheduler` (a plain object, not a module: it is never checkpointed)."""
        self.noise_scheduler = get_noise_schedule(self.schedule_type, **self.schedule_kwargs)

    @abstractmethod
    def forward(
        self,
        x_t,
        t,
        condition=None,
        r=None,
        feature_indices=None,
        return_features_early=False,
        return_logvar=False,
        fwd_pred_type=None,
        **kwargs,
    ):
        """See the module docstring for the contract."""

    # -- --smoke --
    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        """Constructor kwargs that make this network tiny for `train.py --smoke` (merged over the config's `kwargs`).

        Keep the architecture's shape (block types, number of levels, conditioning) and shrink only sizes (channels,
        depth, resolution to SMOKE_SPATIAL_SIZE), so a smoke run exercises the same code paths as the real one;
        skip pretrained weights (e.g. `load_pretrained=False`). Return {} when the network is already tiny.
        """
        raise NotImplementedError(
            f"{cls.__module__}.{cls.__name__} declares no tiny size for --smoke: give it a classmethod "
            "smoke_overrides(cls, kwargs) -> dict (see FastGenNetwork.smoke_overrides)"
        )

    # -- helpers for subclasses --
    def convert_output(self, x_t, out, t, fwd_pred_type=None):
        """Native prediction -> fwd_pred_type (None: unchanged), through the noise schedule in float64."""
        if fwd_pred_type is None or fwd_pred_type == self.net_pred_type:
            return out
        return self.noise_scheduler.convert_model_output(x_t, out, t, self.net_pred_type, fwd_pred_type)

    @staticmethod
    def pack_outputs(out, features=None, logvar=None, feature_indices=None, return_logvar=False):
        """out | (out, features) | (out, logvar) | (out, features, logvar), following the flags."""
        result = [out]
        if feature_indices:
            result.append(features)
        if return_logvar:
            result.append(logvar)
        return result[0] if len(result) == 1 else tuple(result)

    @staticmethod
    def expand_t(t, x: torch.Tensor) -> torch.Tensor:
        """t as a tensor of shape [B] (a python float or 0-d tensor is repeated for the batch)."""
        t = torch.as_tensor(t, device=x.device)
        if not t.is_floating_point():
            t = t.to(torch.float64)
        return t.expand(x.shape[0]) if t.ndim == 0 else t

    # -- sampling --
    @torch.no_grad()
    def sample(
        self,
        noise,
        condition=None,
        neg_condition=None,
        guidance_scale=None,
        num_steps=35,
        sampler_type="heun",
        t_list=None,
        generator=None,
        **net_kwargs,
    ):
        """Multi-step teacher sampling (samplers.ode_sample): the PF-ODE (heun, euler) or the reverse SDE
        (ancestral, its noise from `generator`), CFG when guidance_scale is not None.

        num_steps counts network evaluations per sample (35 = EDM's 18 Heun steps); t_list overrides the grid.
        """
        x0_fn = samplers.guided_x0_fn(self, condition, neg_condition, guidance_scale, **net_kwargs)
        return samplers.ode_sample(x0_fn, noise, self.noise_scheduler, num_steps, sampler_type, t_list,
                                   generator=generator)

    # -- distributed / meta init --
    def fsdp_units(self) -> list[nn.Module]:
        """Modules wrapped as separate FSDP2 units: by default every element of every nn.ModuleList child."""
        units = []
        for module in self.modules():
            if isinstance(module, nn.ModuleList):
                units.extend(module)
        return units

    def fully_shard(self, mesh=None, mp_policy=None, offload_policy=None):
        """FSDP2: shard each unit of fsdp_units(), then the whole network (which gathers what is left)."""
        from torch.distributed.fsdp import fully_shard

        kwargs = {k: v for k, v in (("mesh", mesh), ("mp_policy", mp_policy), ("offload_policy", offload_policy))}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        for unit in self.fsdp_units():
            fully_shard(unit, **kwargs)
        fully_shard(self, **kwargs)
        return self

    def enable_activation_checkpointing(self) -> int:
        """Block-wise activation checkpointing: each unit of `fsdp_units()` (the residual / transformer blocks) keeps
        only its input and recomputes its activations in backward, trading ~1 extra block forward for the block's
        activation memory. Inactive without gradients (no_grad passes keep their speed); the blocks' FSDP2 hooks
        stay outside the recomputed region (the usual AC-inside-FSDP order), and parameter names are unchanged.
        Returns the number of blocks wrapped."""
        units = [u for u in self.fsdp_units() if "forward" not in vars(u)]
        for unit in units:
            unit.forward = functools.partial(_checkpointed_forward, type(unit).forward.__get__(unit))
        return len(units)

    def reset_parameters(self) -> None:
        """Re-initialise after `to_empty` (meta-device init): the base re-creates the noise schedule;
        subclasses re-initialise their weights and then call super()."""
        self.set_noise_schedule()

    @staticmethod
    def _is_in_meta_context() -> bool:
        """True inside `with torch.device("meta")`: build from config instead of loading weights."""
        return torch.empty(0).device.type == "meta"


def _checkpointed_forward(forward, *args, **kwargs):
    """`forward` under torch.utils.checkpoint when a graph is being built (non-reentrant: keyword arguments, RNG
    state replayed so dropout masks match in the recomputation)."""
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    from torch.utils.checkpoint import checkpoint

    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


class CausalFastGenNetwork(FastGenNetwork):
    """Autoregressive (chunk-by-chunk) video networks with a KV cache.

    A video of `total_num_frames` latent frames is made of chunks of `chunk_size` frames (chunk_size must divide the
    frame count: checked here and at every forward). Frame axis: dim 2 of x ([B, C, T, H, W]; toy nets use H=W=1).
    Attention is block-causal: a frame of chunk k sees every frame of chunks <= k and nothing later.
    t is [B] or per frame [B, T] (constant within a chunk for the causal methods).

    forward(x_t, t, condition=None, ..., cache_tag="pos", cur_start_frame=0, store_kv=False, is_ar=False,
            frame_offset=0):
      * is_ar=False: x_t holds frames [0, T) of the whole video; one block-causal pass; the cache is neither read
        nor written (training: teacher forcing / diffusion forcing).
      * is_ar=True: x_t holds the frames [cur_start_frame, cur_start_frame + n) of one or more whole chunks; they
        attend to the cached entries of `cache_tag` for frames < cur_start_frame (within the cache window) and to
        themselves. store_kv=True writes this call's keys/values for those frames into the `cache_tag` cache
        (replacing entries already there for the same frames); store_kv=False leaves every cache unchanged.
        Separate tags keep separate caches (e.g. "pos"/"neg" for the two CFG branches).
      * frame_offset is added to every frame's position (rotary embeddings): positions are cur_start_frame +
        frame_offset + i. Rotary attention depends only on position differences, so a rolling cache window
        keeps the distances seen in training when generating past total_num_frames.
    Constructor kwarg max_cache_frames = W (None: no window) on every causal net: the cache keeps the last W frames
    per tag, and the is_ar=False pass masks with the same window -- a frame of chunk k attends to frames in
    [start of chunk k - W, end of chunk k) -- so training and streaming see the same context and chunk-by-chunk
    generation equals the full pass with a window too.
    clear_caches() drops every cache (call before a new video).
    """

    def __init__(self, chunk_size: int = 3, total_num_frames: int = 21, **kwargs):
        super().__init__(**kwargs)
        if chunk_size < 1 or total_num_frames < chunk_size or total_num_frames % chunk_size:
            raise ValueError(
                f"chunk_size must divide total_num_frames (latent frames); got chunk_size={chunk_size}, "
                f"total_num_frames={total_num_frames}: pick a chunk size that divides the frame count"
            )
        self.chunk_size = int(chunk_size)
        self.total_num_frames = int(total_num_frames)

    @property
    def num_chunks(self) -> int:
        """Chunks per training-length video."""
        return self.total_num_frames // self.chunk_size

    def check_chunked(self, num_frames: int) -> None:
        """One-line error when a call's frame count is not a whole number of chunks."""
        if num_frames < 1 or num_frames % self.chunk_size:
            raise ValueError(f"{type(self).__name__}: {num_frames} latent frames is not a multiple of chunk_size="
                             f"{self.chunk_size}; pass whole chunks (or set chunk_size to a divisor of the frames)")

    @abstractmethod
    def clear_caches(self) -> None:
        """Drop every KV cache (call before generating a new video)."""


def require_causal(net, method_name: str, instead: str | None = None) -> None:
    """One-line BadInputError (CLI: exit 2) unless `net` is a CausalFastGenNetwork (the causal methods need chunks
    and a KV cache)."""
    if isinstance(net, CausalFastGenNetwork):
        return
    hint = f", or train it with the non-causal {instead}" if instead else ""
    raise BadInputError(f"{method_name} needs a causal video network (CausalFastGenNetwork: block-causal chunks + KV "
                     f"cache) as model.net, got {type(net).__name__}: use a causal net config (e.g. CausalWan, "
                     f"ToyCausalVideoNet){hint}")
