"""Chunk-by-chunk decoding of Wan latent videos, equal to decoding the whole video at once (streaming inference).

AutoencoderKLWan's decoder is causal in time: `decode` runs it one latent frame at a time, carrying a feature cache
(the last frames of every causal conv) from frame to frame; the first latent frame gives 1 pixel frame, every later
one `scale_factor_temporal`. Decoding each chunk of a streamed video separately would restart that cache (and treat
every chunk's first frame as the video's first). `WanStreamDecoder` runs the same per-frame loop as the VAE's own
`_decode` but keeps the cache between chunks, so the concatenated chunks equal `net.decode_latents(whole video)`
(tested: a diffusers change to that loop fails the equality test rather than changing frames silently).
"""

from __future__ import annotations

import torch

from fastgen.networks.hf.adapters import latent_mean_std


class WanStreamDecoder:
    """decode(latent chunk [B, C, n, H, W]) -> its pixel frames [B, 3, f, H', W'] in [-1, 1], in order; one per video
    (close() or a new instance per video)."""

    def __init__(self, net):
        net._require_encoders("streaming decode")
        self.net, self.vae = net, net.encoders["vae"]
        if type(self.vae).__name__ != "AutoencoderKLWan":
            raise ValueError(f"streaming decode needs the Wan VAE (AutoencoderKLWan); {type(net).__name__} has "
                             f"{type(self.vae).__name__}")
        self.vae.clear_cache()
        self.first = True

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        vae = self.vae
        z = latents.to(self.net._enc_device(latents.device), dtype=vae.dtype)
        mean, std = latent_mean_std(vae, z)
        x = vae.post_quant_conv(z * std + mean)  # a 1x1x1 conv: per frame, so per chunk is the same
        frames = []
        for i in range(x.shape[2]):
            vae._conv_idx = [0]
            frames.append(vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                      first_chunk=self.first))
            self.first = False
        out = torch.cat(frames, dim=2)
        if vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=vae.config.patch_size)
        return out.clamp(-1, 1).to(latents.device)

    def close(self) -> None:
        self.vae.clear_cache()
