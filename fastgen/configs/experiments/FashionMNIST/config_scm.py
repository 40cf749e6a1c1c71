"""sCT / sCD 1-step student for Fashion-MNIST, initialised from the shipped SFT teacher (TrigFlow through SNR
matching on the EDM network; the teacher's EDM schedule is widened to max_t=800 so that TrigFlow's s -> pi/2 maps
inside it, as in the CIFAR-10 configs).

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_scm.py                           # sCT
    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_scm.py - model.loss_config.use_cd=true  # sCD

Noise levels: log sigma ~ N(0.0, 2.0) instead of the method's N(-1.0, 1.4). The network keeps the teacher's EDM
time label log(sigma) / 4, so the 1-step time sigma = 80 must itself be trained: under N(-1.0, 1.4) it lies 3.8
standard deviations out (sigma >= 80 once in 16,000 draws, sigma >= 20 in 0.2%; a 33-minute run makes 60,000), and
the student stays a blurred denoiser there. N(0, 2) draws sigma >= 20 in 7% and sigma >= 80 in 1.4%. Seed 0 at 33 CPU-minutes (the table's budget):
1-step FID 715 -> 387, 2-step 130 -> 87 (the teacher's weights as the student start at 1439 / 658).
Otherwise not tuned (benchmarks/fashion_mnist_table.py measures it at equal CPU time with the other methods).
"""

from fastgen.configs.experiments.FashionMNIST._common import apply_distillation_settings
from fastgen.configs.methods import config_scm


def create_config():
    config = config_scm.create_config()
    apply_distillation_settings(config, name="scm_student")
    config.model.net.max_t = 800.0
    config.model.net.enable_logvar = True  # the adaptive-weighting head (new; the teacher has none)
    config.model.net_optimizer.lr = 1e-4
    config.model.loss_config.tangent_warmup_steps = 300
    config.model.sample_t_cfg.t_list = [80.0, 0.0]
    config.model.sample_t_cfg.train_p_mean, config.model.sample_t_cfg.train_p_std = 0.0, 2.0  # covers sigma = 80
    config.trainer.callbacks.grad_clip.grad_norm = 10.0
    return config
