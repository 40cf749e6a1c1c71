"""DMD2 1-step student for the Fashion-MNIST demo, distilled from the shipped SFT teacher (no GAN).

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_dmd2.py

Student G and fake score F both start from the teacher's weights (the teacher is `model.pretrained_model_path`,
by default the safetensors file shipped in fastgen/assets/teachers/). Tuned for fast convergence on a 2-core CPU:
plain distribution matching (gan_loss_weight_gen=0, so no discriminator and no extra teacher pass with gradients),
batch 32, alternating updates (student_update_freq=2: one fake-score update per generator update), Adam with
beta1=0 and lr 2e-4 (generator) / 8e-4 (fake score), the fake score trained with the EDM loss weighting (as the
teacher was), EDM's polynomial noise-level density for the VSD and fake-score losses, and a power EMA of the student
that inference uses (the raw student is far noisier: FID 51 vs 22.5 for its EMA at 1500 iterations).

Trials from the shipped teacher (1-step FID of the EMA, 1000 samples; the teacher's 35-step FID is 10.2), each
one change from the best so far. At 1500 iterations, on one GPU: freq 3 gave 40.3, freq 2 26.7; at freq 3 halving
both lrs (46.3), doubling them (47.4) and freq 5 (51.1) were worse. On the CPU, from freq 2: fake-score EDM
weighting 22.5, then fake-score lr 8e-4 18.3 (1.6e-3: 25.1); worse were a linear lr decay to 0.1x (41.0), a GAN on
teacher features (40.5, unstable), batch 48 at equal compute and a longer EMA (gamma 3: 22.8). At 1800 iterations
the chosen settings give 17.3 (generator lr 3e-4: 19.7). Measured end to end in fastgen/demo/README.md.
"""

from fastgen.configs.experiments.FashionMNIST._common import apply_demo_settings, power_ema, shipped_teacher_path
from fastgen.configs.methods import config_dmd2


def create_config():
    config = config_dmd2.create_config()
    apply_demo_settings(config, name="dmd2_student", batch_size=32)
    model = config.model
    model.pretrained_model_path = shipped_teacher_path()
    model.gan_loss_weight_gen = 0.0
    model.discriminator = None
    model.student_update_freq = 2
    model.student_sample_steps = 1
    model.student_sample_type = "sde"
    model.guidance_scale = None
    for name in ("net_optimizer", "fake_score_optimizer"):
        optimizer = getattr(model, name)
        optimizer.optim_type = "adam"
        optimizer.weight_decay = 0.0
        optimizer.betas = [0.0, 0.99]
    model.net_optimizer.lr = 2e-4
    model.fake_score_optimizer.lr = 8e-4
    model.fake_score_dsm_weighting = "edm"
    for name in ("net_scheduler", "fake_score_scheduler"):
        getattr(model, name).warm_up_steps = [0]
    t_cfg = model.sample_t_cfg
    t_cfg.time_dist_type = "polynomial"  # uniform in t^(1/rho), rho = 7 (EDM's sampling density)
    t_cfg.min_t = 0.002
    t_cfg.max_t = 80.0
    config.trainer.callbacks.update(power_ema())
    model.use_ema = ["ema"]
    config.trainer.max_iter = 1800
    config.trainer.save_ckpt_iter = 300
    return config
