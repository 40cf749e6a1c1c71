"""DMD2 + GAN + the original DMD's regression loss for Fashion-MNIST: config_dmd2_gan.py, plus on every generator step
REGRESSION_LOSS_WEIGHT x 0.5 MSE between the student's 1-step image of a teacher pair's noise and the teacher's
35-NFE Heun sample of that noise (Yin et al. 2024a, eq. 7, with L2 instead of LPIPS).

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_dmd2_gan_reg.py

Why: started from a KD student, DMD2+GAN reaches FID 9.3-9.5 instead of 11.75 (FashionMNIST README, session 9), but
only at twice the compute, and the recall it starts with fades; the regression term keeps the teacher's
noise-to-image map in the loss for the whole run instead of only at the start.

Data: a ZipLoader (fastgen/datasets/zip_loader.py) reads the real training images (for the GAN) and, under "pair_*"
keys, NUM_PAIRS teacher pairs from `_kd_pairs.teacher_pair_loader` (made once, about 16 single-thread CPU-minutes
for 4000, cached under $FASTGEN_OUTPUT_ROOT/fastgen/fashion_mnist/kd_pairs/; `dataloader_train.secondary.path=FILE`
uses a given shard). One position resumes both streams exactly.
"""

from fastgen.configs.experiments.FashionMNIST._common import fashion_mnist_loader
from fastgen.configs.experiments.FashionMNIST._kd_pairs import DEFAULT_TEACHER_NFE, NOISE_SEED
from fastgen.configs.experiments.FashionMNIST.config_dmd2_gan import create_config as create_dmd2_gan_config
from fastgen.utils import LazyCall as L

REGRESSION_LOSS_WEIGHT = 1.0
NUM_PAIRS = 4000


def create_config():
    config = create_dmd2_gan_config()
    config.log_config.name = "dmd2_gan_reg_student"
    config.model.regression_loss_weight = REGRESSION_LOSS_WEIGHT
    batch_size = int(config.dataloader_train.batch_size)
    pairs = L("fastgen.configs.experiments.FashionMNIST._kd_pairs.teacher_pair_loader")(
        path=None, batch_size=batch_size, num_pairs=NUM_PAIRS, teacher_nfe=DEFAULT_TEACHER_NFE,
        noise_seed=NOISE_SEED, teacher_path=None, generate_if_missing=True, seed=0, sampler_start_idx=None,
    )
    config.dataloader_train = L("fastgen.datasets.zip_loader.ZipLoader")(
        primary=fashion_mnist_loader(batch_size), secondary=pairs, batch_size=batch_size, prefix="pair_", seed=0,
        sampler_start_idx=None,
    )
    return config
