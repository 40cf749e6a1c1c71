"""CausVid: DMD2 from the exact bidirectional AR(1) teacher into the toy causal student (CPU, about a minute).

    python train.py --config=fastgen/configs/experiments/Toy/config_causvid.py

Teacher: `AR1VideoDenoiser` (closed-form E[x0 | x_t] of the whole video, no weights). DMD initialises the fake
score from the teacher's weights; the weightless teacher's equivalent is `AR1ResidualVideoNet` (`model.fake_score_net`:
the exact denoiser plus a trainable bidirectional residual that starts at zero). The student's training inputs are
its own AR rollout (`model.backward_simulation`) with clean context (`model.chunk_t_order="clean_context"`): the
chunks before a drawn chunk c are the student's own finished chunks, chunk c is its state at a t of the 4-step
t_list, exactly what chunk-by-chunk sampling with the KV cache computes. The paper's diffusion forcing on real data
(both options off) made CausVid worsen its CausalKD init on the exact oracle; see
benchmarks/results/oracle_causal.md. Set `model.pretrained_student_net_path` to a CausalKD checkpoint's net to start
from it, as the paper does.
"""

from fastgen.configs.experiments.Toy.config_kd_causal import TOY_CAUSAL_T_LIST
from fastgen.configs.experiments.Toy.config_sft_causal import apply_toy_causal_settings
from fastgen.configs.methods import config_causvid
from fastgen.configs.net import AR1_Fake_Score_Config, AR1_Oracle_Config


def apply_toy_causal_dmd(config, name: str, max_iter: int = 300) -> None:
    """Exact teacher, teacher-initialised fake score (Adam 1e-3), no GAN, 4-step student t_list, student Adam 1e-5
    updated every 5th iteration (DMD2's two time-scale rule). The learned fake score lags the generator (its DMD
    direction is mostly error after hundreds of critic steps): at 1e-4 both CausVid and Self-Forcing lost their KD
    init's marginals, at 1e-5 both improve on them (results/oracle_causal.md); with the exact fake score 1e-4 is fine."""
    apply_toy_causal_settings(config, name=name, max_iter=max_iter)
    config.model.teacher = AR1_Oracle_Config
    config.model.fake_score_net = AR1_Fake_Score_Config
    config.model.gan_loss_weight_gen = 0.0
    config.model.discriminator = None
    config.model.student_update_freq = 5
    config.model.net_optimizer.lr = 1e-5
    config.model.student_sample_steps = 4
    config.model.sample_t_cfg.t_list = list(TOY_CAUSAL_T_LIST)
    config.model.sample_t_cfg.time_dist_type = "uniform"
    config.model.sample_t_cfg.min_t = 0.02
    config.model.sample_t_cfg.max_t = 0.98
    opt = config.model.fake_score_optimizer
    opt.optim_type, opt.lr, opt.weight_decay = "adam", 1e-3, 0.0
    config.model.fake_score_scheduler.warm_up_steps = [0]


def create_config():
    config = config_causvid.create_config()
    apply_toy_causal_dmd(config, name="causvid_ar1")
    config.model.backward_simulation = True
    config.model.chunk_t_order = "clean_context"
    return config
