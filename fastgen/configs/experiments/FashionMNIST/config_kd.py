"""Knowledge distillation (KD) 1-step student for Fashion-MNIST: regress G(noise * 80, 80) onto the shipped teacher's
35-NFE Heun sample of the same noise and class (Luhman & Luhman 2021); the student starts from the teacher.

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_kd.py

Data: 10000 (noise, teacher image) pairs made by `_kd_pairs.teacher_pair_loader` the first time the loader is built
(about 15 minutes on 2 CPU cores, then cached under $FASTGEN_OUTPUT_ROOT/fastgen/fashion_mnist/kd_pairs/, the file
name carrying the teacher's sha256, the count, the NFE and the noise seed); no Fashion-MNIST images are needed.
`dataloader_train.path=FILE` uses a given shard, `dataloader_train.num_pairs=N` another count.
Adam lr 1e-4 (beta1 0.9: plain regression, no adversary). Not tuned (benchmarks/fashion_mnist_table.py measures it
at equal CPU time, the pair generation reported separately).
"""

from fastgen.configs.experiments.FashionMNIST._common import apply_distillation_settings, use_adam
from fastgen.configs.experiments.FashionMNIST._kd_pairs import DEFAULT_NUM_PAIRS, DEFAULT_TEACHER_NFE, NOISE_SEED
from fastgen.configs.methods import config_kd
from fastgen.utils import LazyCall as L


def create_config():
    config = config_kd.create_config()
    apply_distillation_settings(config, name="kd_student")
    config.dataloader_train = L("fastgen.configs.experiments.FashionMNIST._kd_pairs.teacher_pair_loader")(
        path=None, batch_size=32, num_pairs=DEFAULT_NUM_PAIRS, teacher_nfe=DEFAULT_TEACHER_NFE, noise_seed=NOISE_SEED,
        teacher_path=None, generate_if_missing=True, seed=0, sampler_start_idx=None,
    )
    use_adam(config.model.net_optimizer, lr=1e-4, betas=(0.9, 0.99))
    return config
