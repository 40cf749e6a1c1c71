"""TCM stage 2 on the 8-mode ring Gaussian mixture: the student learns t >= transition_t only, the stage-1 CM
(frozen `cm_teacher`) supplies the consistency target below the transition.

Stage 1 is the Toy CM run; pass its checkpoint (its EMA initialises the student, its EMA copy and the cm_teacher):

    python train.py --config=fastgen/configs/experiments/Toy/config_cm.py
    python train.py --config=fastgen/configs/experiments/Toy/config_tcm.py - \
        trainer.checkpointer.pretrained_ckpt_path=$FASTGEN_OUTPUT_ROOT/fastgen/toy/cm_ring8/checkpoints/0000600.pth
"""

from fastgen.configs.callbacks import CTSchedule_CALLBACK
from fastgen.configs.experiments.Toy.config_cm import apply_toy_consistency_settings, use_trigflow_time
from fastgen.configs.methods import config_tcm


def create_config():
    config = config_tcm.create_config()
    apply_toy_consistency_settings(config, name="tcm_ring8", max_iter=400)
    config.trainer.callbacks.update(CTSchedule_CALLBACK)
    config.trainer.callbacks.ct_schedule.kimg_per_stage = 25.6
    config.trainer.checkpointer.pretrained_ckpt_key_map = {"cm_teacher": "ema", "net": "ema", "ema": "ema"}
    config.model.transition_t = 1.0
    config.model.sample_t_cfg.min_t = config.model.transition_t
    config.model.net_optimizer.lr = 5e-4
    config.model.student_sample_steps = 1
    use_trigflow_time(config)  # the stage-1 CM's time input: its weights are loaded into this net
    return config
