"""fastgen: distill slow multi-step diffusion and flow models into fast 1-4 step generators."""

__version__ = "0.1.0"
