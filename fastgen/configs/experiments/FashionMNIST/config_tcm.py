"""TCM (truncated consistency model, stage 2) 1-step student for Fashion-MNIST: trains only t >= transition_t = 1,
with a frozen stage-1 consistency model as the boundary below it.

Stage 1 is a CM run of config_cm.py (CT: `model.loss_config.use_cd=false`, as in the TCM paper); pass its checkpoint
(its EMA initialises the student, its EMA copy and the frozen cm_teacher):

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_cm.py - model.loss_config.use_cd=false
    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_tcm.py - \
        trainer.checkpointer.pretrained_ckpt_path=$FASTGEN_OUTPUT_ROOT/fastgen/fashion_mnist/cm_student/checkpoints/0001800.pth

Without a stage-1 checkpoint the student and the cm_teacher start from the shipped SFT teacher (the boundary target
below t = 1 is then the teacher's one-step denoiser; the method warns). benchmarks/fashion_mnist_table.py uses the
table's CM run of the same seed when it made one. Time density: the reference's TCM Student-t in log t (mean 0,
std 0.2, df 0.01) restricted to t >= 1; the CM settings of config_cm.py otherwise. Not tuned.
"""

from fastgen.configs.experiments.FashionMNIST.config_cm import apply_consistency_settings
from fastgen.configs.methods import config_tcm


def create_config():
    config = config_tcm.create_config()
    apply_consistency_settings(config, name="tcm_student")
    config.model.loss_config.use_cd = False
    config.model.transition_t = 1.0
    config.model.sample_t_cfg.min_t = config.model.transition_t
    config.trainer.checkpointer.pretrained_ckpt_key_map = {"cm_teacher": "ema", "net": "ema", "ema": "ema"}
    return config
