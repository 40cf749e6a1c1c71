"""Causal variants of the other Wan-family networks: CausalWanMixin (causal.py) over Wan 2.1 I2V, Wan 2.2 TI2V-5B
image-to-video and VACE. Same weights / state-dict keys as the bidirectional networks.

  * CausalWanI2V (Wan 2.1 I2V): the first-frame condition is concatenated per latent frame on the channels, so an
    autoregressive call takes its chunk's frames of it; the CLIP image tokens go through cross-attention (attn2),
    which causality does not touch.
  * CausalWan22I2V (Wan 2.2 TI2V-5B): latent frame 0 is the clean image latent at time 0 and its prediction gives
    x0 = the image, in the call that holds frame 0 (the full pass, or the first chunk of an AR rollout); later chunks
    are plain per-token-time Wan 2.2 and see the image through the cache.
  * CausalVACEWan (VACE): the control branch's blocks (`vace_blocks`) attend among the control tokens too; their
    self-attention is made block-causal with cache entries of its own, so chunk k's hints (and output) never depend
    on later control frames. diffusers' VACE transformer takes one time per sample: its subclass
    PerTokenVACETransformer (vace_per_token.py, same weights) adds the per-token path diffusion forcing needs.
"""

from __future__ import annotations

from fastgen.networks.hf.causal import CausalTimeMixin, CausalWanMixin
from fastgen.networks.hf.families import Wan22I2V, WanI2V
from fastgen.networks.hf.vace import VACEAdapter, VACEWan
from fastgen.networks.hf.video_adapters import Wan22I2VAdapter, WanAdapter, WanI2VAdapter
from fastgen.networks.network import CausalFastGenNetwork


class CausalWanI2VAdapter(CausalTimeMixin, WanI2VAdapter):
    """Wan 2.1 I2V with per-frame time."""


class CausalWan22I2VAdapter(CausalTimeMixin, Wan22I2VAdapter):
    """Wan 2.2 TI2V-5B image-to-video where only the call that holds latent frame 0 carries the image there."""

    @staticmethod
    def holds_image_frame(net) -> bool:
        call = net._causal.call
        return call is None or call.start_frame == 0

    def time_input(self, net, x, t):
        if self.holds_image_frame(net):
            return super().time_input(net, x, t)
        return WanAdapter.time_input(self, net, x, t)

    def model_inputs(self, net, x, t, condition) -> dict:
        if self.holds_image_frame(net):
            return super().model_inputs(net, x, t, condition)
        return WanAdapter.model_inputs(self, net, x, t, condition)

    def convert_output(self, net, x_t, out, t, condition, fwd_pred_type):
        if self.holds_image_frame(net):
            return super().convert_output(net, x_t, out, t, condition, fwd_pred_type)
        return net.convert_output(x_t, out, t, fwd_pred_type)


class CausalVACEAdapter(CausalTimeMixin, VACEAdapter):
    """VACE with per-frame time: the transformer is PerTokenVACETransformer (vace_per_token.py), diffusers' VACE
    transformer plus a per-token-time path (same weights)."""

    components = {**VACEAdapter.components,
                  "transformer": ("fastgen.networks.hf.vace_per_token.PerTokenVACETransformer", "transformer")}


class CausalWanI2V(CausalWanMixin, WanI2V, CausalFastGenNetwork):
    """Wan 2.1 I2V 14B as an autoregressive video network (see the module docstring and CausalWanMixin)."""

    adapter = CausalWanI2VAdapter()
    frame_condition_keys = ("first_frame_cond",)


class CausalWan22I2V(CausalWanMixin, Wan22I2V, CausalFastGenNetwork):
    """Wan 2.2 TI2V-5B image-to-video as an autoregressive video network: the first chunk holds the image frame."""

    adapter = CausalWan22I2VAdapter()


class CausalVACEWan(CausalWanMixin, VACEWan, CausalFastGenNetwork):
    """Wan 2.1 VACE as an autoregressive video network: block-causal main and control branches, each with its KV
    cache entries; the control latents hold the whole video and an AR call takes its chunk's frames."""

    adapter = CausalVACEAdapter()
    frame_condition_keys = ("control_hidden_states",)

    def __init__(self, model_id: str, **kwargs):
        super().__init__(model_id, **kwargs)
        self.denoiser.use_per_token_blocks()

    def causal_attention_modules(self) -> list:
        return [*super().causal_attention_modules(), *(block.attn1 for block in self.denoiser.vace_blocks)]
