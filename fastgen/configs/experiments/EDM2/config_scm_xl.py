"""sCT of EDM2-XL on class-conditional ImageNet-64: fp16 autocast (JVP in float32), MP-Fourier time embedding with
bandwidth 1.0 (low frequencies keep d/dt of the embedding tame), dropout 0.45 at 16x16 and 8x8."""

from fastgen.configs.experiments.EDM2._common import apply_edm2, edm2_teacher_path
from fastgen.configs.methods import config_scm
from fastgen.configs.net import EDM2_IN64_XL_Config


def create_config():
    config = config_scm.create_config()
    apply_edm2(config, lr=1e-3, decay_steps=2000)
    config.model.net = EDM2_IN64_XL_Config
    config.model.net.embedding_type = "mp_fourier"
    config.model.net.mp_fourier_bandwidth = 1.0
    config.model.net.dropout = 0.45
    config.model.net.dropout_resolutions = [16, 8]
    config.model.net.max_t = 800.0
    config.model.pretrained_model_path = edm2_teacher_path("xl")
    config.model.sample_t_cfg.t_list = [80.0, 0.0]
    config.model.precision_amp = "float16"
    config.model.precision_amp_jvp = "float32"
    config.model.grad_scaler_enabled = True
    config.trainer.max_iter = 100000
    config.trainer.batch_size_global = 1024
    config.log_config.name = "scm_xl"
    return config
