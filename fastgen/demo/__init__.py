"""The end-to-end Fashion-MNIST demo (`python -m fastgen.demo`): teacher -> DMD2 1-step student -> evaluation."""
