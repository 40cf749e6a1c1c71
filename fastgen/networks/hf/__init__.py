"""Diffusers-backed networks (SD1.5, SDXL, Flux, Qwen-Image, Wan, WanI2V, Wan22I2V, VACE-Wan, CogVideoX,
Cosmos-Predict2; CausalWan, CausalWanI2V, CausalWan22I2V, CausalVACEWan): see README.md."""

from fastgen.networks.hf.causal import CausalWan
from fastgen.networks.hf.causal_families import CausalVACEWan, CausalWan22I2V, CausalWanI2V
from fastgen.networks.hf.cosmos import CosmosPredict2
from fastgen.networks.hf.families import (
    SD15,
    SDXL,
    CogVideoX,
    Flux,
    QwenImage,
    VACEWan,
    Wan,
    Wan22I2V,
    WanI2V,
    network_class,
)
from fastgen.networks.hf.network import HFNetwork

__all__ = ["HFNetwork", "SD15", "SDXL", "Flux", "QwenImage", "Wan", "WanI2V", "Wan22I2V", "VACEWan", "CogVideoX",
           "CosmosPredict2", "CausalWan", "CausalWanI2V", "CausalWan22I2V", "CausalVACEWan", "network_class"]
