"""A tiny SD1.5 experiment (random components from fastgen/networks/hf/tiny.py, nothing downloaded) for the export,
inference, LoRA tests and the LoRA benchmark: as a config object, or as a config file a CLI can load."""

import textwrap

CONFIG_TEMPLATE = textwrap.dedent('''
    from fastgen.configs.methods import config_{method}
    from fastgen.configs.net import SD15Config
    from fastgen.networks.hf.tiny import tiny_components


    def create_config():
        config = config_{method}.create_config()
        config.model.net = SD15Config
        config.model.net.load_pretrained = False
        config.model.net.component_configs = tiny_components("sd15")
        config.model.input_shape = [4, 8, 8]
        config.model.device = "cpu"
        config.model.discriminator = None
        if hasattr(config.model, "gan_loss_weight_gen"):
            config.model.gan_loss_weight_gen = 0.0
        config.model.sample_t_cfg.time_dist_type = "uniform"
        config.model.sample_t_cfg.min_t, config.model.sample_t_cfg.max_t = 0.02, 0.98
        config.log_config.wandb_mode = "disabled"
        return config
''')


def write_config(directory, method="dmd2"):
    """config_tiny_sd15_<method>.py in `directory` (a CLI-loadable experiment config); returns its path."""
    path = directory / f"config_tiny_sd15_{method}.py"
    path.write_text(CONFIG_TEMPLATE.format(method=method))
    return str(path)


def tiny_config(method="dmd2", tmp_path=None):
    """The same config as an object (loaded through a temporary file, as the CLIs load it)."""
    import tempfile
    from pathlib import Path

    from fastgen.configs.config_utils import import_config_from_python_file

    directory = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp())
    return import_config_from_python_file(write_config(directory, method))
