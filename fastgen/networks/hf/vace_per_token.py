"""diffusers' WanVACETransformer3DModel with one timestep per video token (for diffusion forcing on VACE).

diffusers' VACE transformer takes one timestep per sample; WanTransformer3DModel (Wan 2.2 TI2V) also takes [B, N]
(one per token: per-token modulation in every block and in the output head). Causal training by diffusion forcing
gives each chunk its own t, so the causal VACE network needs that path too. This subclass adds it with the same
parameters and state-dict keys (a VACE checkpoint loads as is): a [B] timestep runs diffusers' forward unchanged; a
[B, N] one runs `_per_token_forward`, the same computation with the per-token modulation of WanTransformer3DModel
(main blocks: their own 4-D temb path; VACE blocks: `PerTokenVACEBlock`; head: per-token shift / scale).
"""

from __future__ import annotations

import torch
from diffusers import WanVACETransformer3DModel
from diffusers.models.transformers.transformer_wan_vace import WanVACETransformerBlock


def _modulation(table: torch.Tensor, temb: torch.Tensor, parts: int) -> list[torch.Tensor]:
    """scale_shift_table [1, parts, D] + per-token temb [B, N, parts, D] -> `parts` tensors [B, N, D]."""
    return [p.squeeze(2) for p in (table.unsqueeze(0).to(temb.device) + temb).chunk(parts, dim=2)]


class PerTokenVACEBlock(WanVACETransformerBlock):
    """A VACE block that also takes per-token temb [B, N, 6, D] (diffusers' forward for [B, 6, D]). The same
    parameters as WanVACETransformerBlock (`PerTokenVACETransformer.use_per_token_blocks` switches to it)."""

    def forward(self, hidden_states, encoder_hidden_states, control_hidden_states, temb, rotary_emb):
        if temb.ndim != 4:
            return super().forward(hidden_states, encoder_hidden_states, control_hidden_states, temb, rotary_emb)
        control = control_hidden_states
        if self.proj_in is not None:
            control = self.proj_in(control) + hidden_states
        shift, scale, gate, c_shift, c_scale, c_gate = _modulation(self.scale_shift_table, temb.float(), 6)
        normed = (self.norm1(control.float()) * (1 + scale) + shift).type_as(control)
        control = (control.float() + self.attn1(normed, None, None, rotary_emb) * gate).type_as(control)
        control = control + self.attn2(self.norm2(control.float()).type_as(control), encoder_hidden_states, None, None)
        normed = (self.norm3(control.float()) * (1 + c_scale) + c_shift).type_as(control)
        control = (control.float() + self.ffn(normed).float() * c_gate).type_as(control)
        hint = self.proj_out(control) if self.proj_out is not None else None
        return hint, control


class PerTokenVACETransformer(WanVACETransformer3DModel):
    """WanVACETransformer3DModel taking timestep [B] (diffusers' forward) or [B, N] (one per frame-major token)."""

    def use_per_token_blocks(self) -> None:
        """Give the VACE blocks the per-token forward (PerTokenVACEBlock: same parameters). Called by the network
        right after building, before any wrapping (FSDP replaces the blocks' classes). diffusers builds the model
        from its __init__ signature, so the swap is not done in an __init__ override."""
        for block in self.vace_blocks:
            if type(block) is WanVACETransformerBlock:
                block.__class__ = PerTokenVACEBlock

    def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image=None,
                control_hidden_states=None, control_hidden_states_scale=None, return_dict=True,
                attention_kwargs=None):
        if timestep.ndim != 2:
            return super().forward(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image,
                                   control_hidden_states, control_hidden_states_scale, return_dict, attention_kwargs)
        if self.gradient_checkpointing and torch.is_grad_enabled():
            raise ValueError("per-token time on VACE: use the network's activation checkpointing, not the "
                             "transformer's own gradient checkpointing")
        out = self._per_token_forward(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image,
                                      control_hidden_states, control_hidden_states_scale)
        if not return_dict:
            return (out,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=out)

    def _per_token_forward(self, x, timestep, text, image, control, scales):
        b, _, frames, height, width = x.shape
        p_t, p_h, p_w = self.config.patch_size
        layers = list(self.config.vace_layers)
        if scales is None:
            scales = control.new_ones(len(layers))
        rotary_emb = self.rope(x)
        hidden = self.patch_embedding(x).flatten(2).transpose(1, 2)
        control = self.vace_patch_embedding(control).flatten(2).transpose(1, 2)
        control = torch.cat([control, control.new_zeros(b, hidden.shape[1] - control.shape[1], control.shape[2])], 1)
        temb, proj, text, image = self.condition_embedder(timestep.flatten(), text, image,
                                                          timestep_seq_len=timestep.shape[1])
        proj = proj.unflatten(2, (6, -1))  # [B, N, 6, D]
        if image is not None:
            text = torch.cat([image, text], dim=1)
        if not all(isinstance(block, PerTokenVACEBlock) for block in self.vace_blocks):
            raise RuntimeError("PerTokenVACETransformer: call use_per_token_blocks() after building it (per-token t)")
        hints = []
        for block in self.vace_blocks:
            hint, control = block(hidden, text, control, proj, rotary_emb)
            hints.append(hint)
        used = 0
        for i, block in enumerate(self.blocks):
            hidden = block(hidden, text, proj, rotary_emb)
            if i in layers:  # the hints in order, as diffusers pops them
                hidden = hidden + hints[used].to(hidden.device) * scales[used]
                used += 1
        shift, scale = _modulation(self.scale_shift_table, temb[:, :, None], 2)
        normed = self.norm_out(hidden.float()) * (1 + scale.to(hidden.device)) + shift.to(hidden.device)
        hidden = self.proj_out(normed.type_as(hidden))
        hidden = hidden.reshape(b, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        return hidden.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
