"""A tiny SD1.5 (or Flux) experiment (random components from fastgen/networks/hf/tiny.py, nothing downloaded) for the
export, inference and LoRA tests: as a config object, or as a config file a CLI can load."""

import textwrap

CONFIG_TEMPLATE = textwrap.dedent('''
    from fastgen.configs.methods import config_{method}
    from fastgen.configs.net import {net}
    from fastgen.networks.hf.tiny import tiny_components


    def create_config():
        config = config_{method}.create_config()
        config.model.net = {net}
        config.model.net.load_pretrained = False
        config.model.net.component_configs = tiny_components("{family}")
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


NET_CONFIGS = {"sd15": "SD15Config", "flux": "FluxConfig"}


def write_config(directory, method="dmd2", family="sd15"):
    """config_tiny_<family>_<method>.py in `directory` (a CLI-loadable experiment config); returns its path."""
    path = directory / f"config_tiny_{family}_{method}.py"
    path.write_text(CONFIG_TEMPLATE.format(method=method, net=NET_CONFIGS[family], family=family))
    return str(path)


def tiny_config(method="dmd2", tmp_path=None, family="sd15"):
    """The same config as an object (loaded through a temporary file, as the CLIs load it)."""
    import tempfile
    from pathlib import Path

    from fastgen.configs.config_utils import import_config_from_python_file

    directory = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp())
    return import_config_from_python_file(write_config(directory, method, family))
