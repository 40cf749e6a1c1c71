"""f-distill 1-step student for Fashion-MNIST: the tuned DMD2 settings of config_dmd2.py plus the GAN that f-distill
needs (its discriminator's logit is the density-ratio estimate that weights each sample's VSD gradient), with heads
on the shipped teacher's three feature levels (`fashion_mnist_discriminator`, 16/32/64 channels at 32/16/8).

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_f_distill.py
    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_f_distill.py - model.f_distill.f_div=kl

Jensen-Shannon weighting (the paper's best on CIFAR-10; the reference's CIFAR-10 config uses KL), GAN weight 0.01,
discriminator Adam lr 2e-4. Not tuned (benchmarks/fashion_mnist_table.py measures it at equal CPU time).
"""

from fastgen.configs.experiments.FashionMNIST._common import use_discriminator
from fastgen.configs.experiments.FashionMNIST.config_dmd2 import apply_dmd2_settings
from fastgen.configs.methods import config_f_distill


def create_config():
    config = config_f_distill.create_config()
    apply_dmd2_settings(config, name="f_distill_student")
    model = config.model
    model.gan_loss_weight_gen = 0.01
    use_discriminator(model)
    model.f_distill.f_div = "js"
    return config
