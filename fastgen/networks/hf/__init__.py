"""Diffusers-backed networks (SD1.5, SDXL, Flux, Qwen-Image): see README.md."""

from fastgen.networks.hf.families import SD15, SDXL, Flux, QwenImage, network_class
from fastgen.networks.hf.network import HFNetwork

__all__ = ["HFNetwork", "SD15", "SDXL", "Flux", "QwenImage", "network_class"]
