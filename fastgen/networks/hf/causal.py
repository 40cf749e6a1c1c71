"""CausalWan: Wan 2.1's WanTransformer3DModel with block-causal self-attention and a KV cache (CausalFastGenNetwork).

The mechanism is `CausalWanMixin`, over any HFNetwork whose transformer is made of Wan attention blocks (CausalWan
here; CausalWanI2V, CausalWan22I2V and CausalVACEWan in causal_families.py). The diffusers transformer is used as
is -- same modules, same state-dict keys, so a checkpoint of the bidirectional model loads into it -- and only the
self-attention processor of each block (`blocks[i].attn1`; VACE: also `vace_blocks[i].attn1`, with cache entries of
their own) is replaced by `CausalSelfAttnProcessor`,
which reproduces diffusers' WanAttnProcessor math (q/k/v projections, RMS qk-norm, interleaved rotary embedding,
softmax attention, output projection) with two changes: the block-causal mask over chunks of `chunk_size` latent
frames (with `max_cache_frames` = W also in the full pass: a frame of chunk k sees frames >= start of chunk k - W,
what the rolling cache holds when chunk k is generated, so training and streaming see the same context), and the KV
cache (cached keys/values of earlier frames are prepended in autoregressive calls). Cross-attention
to the text (attn2), the time / text embeddings, the FFNs and the output head are diffusers' own code, untouched.

What a call asks of the processors (is_ar, cache_tag, start frame, store_kv) travels in a `CausalCall` that forward
sets on the network's `CausalState` and clears in a `finally` (no global state: EMA copies and other networks have
their own). Rotary positions start at cur_start_frame + frame_offset: a forward hook on `denoiser.rope` replaces its
table (built by diffusers for frames 0..T-1) by the slice for the shifted frames, computed by the same module.

Per-frame t [B, T] becomes one timestep per video token (the transformer's 2-D timestep path, as Wan 2.2 TI2V uses);
t constant over the frames takes the [B] path (a per-token time embedding costs B x tokens x 6 x dim floats).
Condition entries with a frame axis (`frame_condition_keys`: Wan 2.1 I2V's first-frame condition, VACE's control
latents) hold the whole video; an autoregressive call takes the frames of its chunk(s) from them.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from fastgen.networks.causal_attention import BlockCausalAttention, KVCache, check_window, frame_ids
from fastgen.networks.hf.families import Wan
from fastgen.networks.hf.video_adapters import WanAdapter
from fastgen.networks.network import CausalFastGenNetwork, _checkpointed_forward


@dataclasses.dataclass
class CausalCall:
    """One forward's request to the self-attention processors."""

    is_ar: bool
    cache_tag: str
    start_frame: int  # first frame of x_t in the video (cur_start_frame; 0 when not is_ar)
    num_frames: int  # latent frames in x_t
    chunk_size: int
    store_kv: bool
    position_offset: int  # rotary position of x_t's first frame
    cached: tuple | None  # the tag's cache entries per block when the call started (is_ar)
    masks: dict = dataclasses.field(default_factory=dict)  # attention masks built once per call, shared by blocks


class CausalState:
    """Shared by a CausalWan and its processors: the call in progress (None outside forward), the KV cache and the
    attention backend."""

    def __init__(self, cache: KVCache, attention: BlockCausalAttention):
        self.call: CausalCall | None = None
        self.cache = cache
        self.attention = attention


def apply_rotary(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x [B, N, H, D] by the angles whose cos / sin tables (each value
    repeated twice, [1, N, 1, D]) diffusers' WanRotaryPosEmbed returns: the same arithmetic as WanAttnProcessor."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class CausalSelfAttnProcessor:
    """Block-causal self-attention with a KV cache for block `block_index` (replaces WanAttnProcessor on attn1)."""

    def __init__(self, state: CausalState, block_index: int):
        self.state, self.block_index = state, int(block_index)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections

        call = self.state.call
        if call is None:
            raise RuntimeError("CausalWan's self-attention runs only inside CausalWan.forward (call the network, not "
                               "net.denoiser)")
        if encoder_hidden_states is not None or attention_mask is not None or attn.add_k_proj is not None:
            raise RuntimeError("CausalSelfAttnProcessor is for the self-attention (attn1) of WanTransformerBlock")
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
        if rotary_emb is not None:
            query, key = apply_rotary(query, *rotary_emb), apply_rotary(key, *rotary_emb)
        q, k, v = (x.transpose(1, 2) for x in (query, key, value))  # [B, H, N, D]

        tokens_per_frame = q.shape[2] // call.num_frames
        q_frames = call.masks.get("q_frames")
        if q_frames is None:
            q_frames = call.masks["q_frames"] = frame_ids(call.start_frame, call.num_frames, tokens_per_frame, q.device)
        keys, values, k_frames = k, v, q_frames
        cache = self.state.cache
        if call.is_ar:
            past = cache.visible(call.cached[self.block_index], call.start_frame)
            if past is not None:
                if past.k.shape[0] != k.shape[0] or past.k.shape[2] // past.num_frames != tokens_per_frame:
                    raise ValueError(f"the '{call.cache_tag}' KV cache holds batch {past.k.shape[0]} with "
                                     f"{past.k.shape[2] // past.num_frames} tokens per frame; this call has batch "
                                     f"{k.shape[0]} with {tokens_per_frame}: clear_caches() before a new video")
                keys, values = torch.cat([past.k, k], dim=2), torch.cat([past.v, v], dim=2)
                k_frames = torch.cat([frame_ids(past.first_frame, past.num_frames, tokens_per_frame, q.device),
                                      q_frames])
            if call.store_kv:
                cache.write(call.cache_tag, self.block_index, k, v, call.start_frame, call.num_frames)
        out = self.state.attention(q, keys, values, q_frames, k_frames, call.chunk_size, cache.window, call.masks)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def _rope_offset_hook(state: CausalState, module, args, output):
    """Forward hook on WanRotaryPosEmbed: the table for frames [offset, offset + T) instead of [0, T), as the same
    module computes it for offset + T frames (only the input's shape is read, so a broadcast view stands in)."""
    call = state.call
    if call is None or call.position_offset == 0:
        return output
    x = args[0]
    b, c, frames, h, w = x.shape
    offset, end = call.position_offset, call.position_offset + frames
    if offset < 0 or end > module.max_seq_len:
        raise ValueError(f"rotary frame positions [{offset}, {end}) are outside the table of {module.max_seq_len} "
                         "positions (the transformer's rope_max_seq_len): generate at most that many latent frames "
                         "per video (cached keys keep their positions, so a window does not lift this limit)")
    longer = x.new_empty((1, 1, 1, 1, 1)).expand(1, 1, end, h, w)
    freqs_cos, freqs_sin = type(module).forward(module, longer)
    tokens = freqs_cos.shape[1] // end
    return freqs_cos[:, offset * tokens:], freqs_sin[:, offset * tokens:]


def _with_call(state: CausalState, call: CausalCall, forward, *args, **kwargs):
    """Run a block with `call` in place: as is during the forward; in an activation-checkpoint recomputation
    (backward, after forward has cleared it) the same call again, reading the same cache snapshot and writing
    nothing (the forward already stored)."""
    if state.call is call:
        return forward(*args, **kwargs)
    previous, state.call = state.call, dataclasses.replace(call, store_kv=False)
    try:
        return forward(*args, **kwargs)
    finally:
        state.call = previous


def _checkpointed_causal_forward(state: CausalState, forward, *args, **kwargs):
    return _checkpointed_forward(functools.partial(_with_call, state, state.call, forward), *args, **kwargs)


class CausalTimeMixin:
    """Adapter mixin of the causal Wan networks: per-frame t [B, T] -> one timestep per video token (the transformer's
    2-D timestep path); t constant over the frames takes the [B] path. Put it before the family's adapter."""

    def time_input(self, net, x, t):
        if t.ndim != 2 or net.options["expand_timesteps"]:
            return super().time_input(net, x, t)
        if t.shape[1] not in (1, x.shape[2]):
            raise ValueError(f"per-frame t must be [B, {x.shape[2]}] (one per latent frame); got {tuple(t.shape)}")
        if t.shape[1] == 1 or bool((t == t[:, :1]).all()):
            return super().time_input(net, x, t[:, 0])
        return self.token_timesteps(net, self.model_timestep(net, t), x)


class CausalWanAdapter(CausalTimeMixin, WanAdapter):
    """Wan 2.1 T2V with per-frame time."""


class CausalWanMixin:
    """Block-causal attention over chunks of `chunk_size` latent frames and a KV cache for chunk-by-chunk generation,
    over an HFNetwork whose transformer is made of Wan attention blocks (see CausalFastGenNetwork for the forward
    contract). Use as `class CausalX(CausalWanMixin, X, CausalFastGenNetwork)` with an adapter built on
    CausalTimeMixin; `causal_attention_modules` names the self-attentions to make causal (one cache entry each).

    Args (besides the network's):
        chunk_size, total_num_frames: latent frames per chunk / per training video (chunk_size divides it).
        max_cache_frames: rolling window W: the cache keeps the last W frames per tag (None: all; needed to generate
            past total_num_frames without the cache growing), and the full (is_ar=False) pass masks with the same
            window (a frame of chunk k sees frames >= chunk k's first frame - W), so both see the same context.
        attention_backend: "auto" (flex attention on CUDA, SDPA with a boolean mask elsewhere), "flex" or "sdpa";
            FASTGEN_DISABLE_FLEX_ATTENTION=1 forces SDPA.
    """

    frame_condition_keys: tuple[str, ...] = ()  # condition entries [B, C, T, H, W] over the whole video's frames

    def __init__(self, model_id: str, chunk_size: int = 3, total_num_frames: int = 21,
                 max_cache_frames: int | None = None, attention_backend: str = "auto", **kwargs):
        super().__init__(model_id=model_id, chunk_size=chunk_size, total_num_frames=total_num_frames, **kwargs)
        patch_t = int(self.denoiser.config.patch_size[0])
        if patch_t != 1:
            raise ValueError(f"{type(self).__name__} needs a temporal patch size of 1 (one token row per latent "
                             f"frame); this transformer has {patch_t}")
        attentions = self.causal_attention_modules()
        self._causal = CausalState(KVCache(len(attentions), max_cache_frames, total_num_frames),
                                   BlockCausalAttention(attention_backend))
        for i, attn in enumerate(attentions):
            attn.set_processor(CausalSelfAttnProcessor(self._causal, i))
        self.denoiser.rope.register_forward_hook(functools.partial(_rope_offset_hook, self._causal))

    def causal_attention_modules(self) -> list:
        """The self-attention modules made block-causal (each gets its own KV cache entry)."""
        return [block.attn1 for block in self.denoiser.blocks]

    @property
    def kv_cache(self) -> KVCache:
        return self._causal.cache

    @property
    def max_cache_frames(self) -> int | None:
        """The rolling cache window (frames kept per tag; None: all). Settable between videos, e.g. to generate past
        total_num_frames with a model trained without one."""
        return self._causal.cache.window

    @max_cache_frames.setter
    def max_cache_frames(self, frames: int | None) -> None:
        self._causal.cache.window = check_window(frames)

    def clear_caches(self) -> None:
        self._causal.cache.clear()

    def _frames_of_call(self, condition, start: int, num_frames: int):
        """An AR call's condition: the frames [start, start + num_frames) of the whole-video entries."""
        if not isinstance(condition, dict) or not self.frame_condition_keys:
            return condition
        out = dict(condition)
        for key in self.frame_condition_keys:
            value = condition.get(key)
            if not isinstance(value, torch.Tensor) or value.ndim != 5 or value.shape[2] == num_frames:
                continue
            if value.shape[2] < start + num_frames:
                raise ValueError(f"condition[{key!r}] holds {value.shape[2]} latent frames; this call needs frames "
                                 f"[{start}, {start + num_frames}): give it for the whole video")
            out[key] = value[:, :, start:start + num_frames]
        return out

    def forward(self, x_t, t, condition=None, r=None, feature_indices=None, return_features_early=False,
                return_logvar=False, fwd_pred_type=None, cache_tag: str = "pos", cur_start_frame: int = 0,
                store_kv: bool = False, is_ar: bool = False, frame_offset: int = 0, **kwargs):
        if x_t.ndim == 5:
            self.check_chunked(x_t.shape[2])
        if not is_ar and (store_kv or cur_start_frame):
            raise ValueError("store_kv and cur_start_frame apply to autoregressive calls only: pass is_ar=True "
                             "(is_ar=False is one block-causal pass over the whole video, cache untouched)")
        if cur_start_frame < 0 or cur_start_frame % self.chunk_size:
            raise ValueError(f"cur_start_frame must be a non-negative multiple of chunk_size={self.chunk_size} (the "
                             f"first frame of a chunk); got {cur_start_frame}")
        if self.denoiser.gradient_checkpointing and torch.is_grad_enabled():
            raise ValueError(f"{type(self).__name__}: use net.enable_activation_checkpointing() instead of the "
                             "transformer's own gradient checkpointing (its recomputation runs outside the causal "
                             "call)")
        state = self._causal
        num_frames = int(x_t.shape[2]) if x_t.ndim == 5 else 1
        call = CausalCall(
            is_ar=bool(is_ar), cache_tag=str(cache_tag), start_frame=int(cur_start_frame),
            num_frames=num_frames, chunk_size=self.chunk_size,
            store_kv=bool(store_kv), position_offset=int(cur_start_frame) + int(frame_offset),
            cached=state.cache.snapshot(str(cache_tag)) if is_ar else None,
        )
        if is_ar:
            condition = self._frames_of_call(condition, call.start_frame, num_frames)
        previous, state.call = state.call, call
        try:
            return super().forward(x_t, t, condition=condition, r=r, feature_indices=feature_indices,
                                   return_features_early=return_features_early, return_logvar=return_logvar,
                                   fwd_pred_type=fwd_pred_type, **kwargs)
        finally:
            state.call = previous

    def enable_activation_checkpointing(self) -> int:
        """As FastGenNetwork's, with the causal call carried into the recomputation (see `_with_call`)."""
        units = [u for u in self.fsdp_units() if "forward" not in vars(u)]
        for unit in units:
            unit.forward = functools.partial(_checkpointed_causal_forward, self._causal,
                                             type(unit).forward.__get__(unit))
        return len(units)

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        """Tiny components of the family; chunks of 1 latent frame over the 2 frames `--smoke` keeps."""
        return {**super().smoke_overrides(kwargs), "chunk_size": 1, "total_num_frames": 2}


class CausalWan(CausalWanMixin, Wan, CausalFastGenNetwork):
    """Wan 2.1 T2V as an autoregressive video network (CausalWanMixin: block-causal chunks, KV cache, rolling
    window; see CausalFastGenNetwork for the forward contract)."""

    adapter = CausalWanAdapter()

    def __init__(self, model_id: str = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", **kwargs):
        super().__init__(model_id=model_id, **kwargs)
