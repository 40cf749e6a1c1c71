"""A tiny SD1.5 (or Flux, Wan T2V / I2V / VACE) experiment (random components from fastgen/networks/hf/tiny.py, nothing downloaded) for the
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
        config.model.input_shape = {input_shape}
        config.model.device = "cpu"
        config.model.discriminator = None
        if hasattr(config.model, "gan_loss_weight_gen"):
            config.model.gan_loss_weight_gen = 0.0
        config.model.sample_t_cfg.time_dist_type = "uniform"
        config.model.sample_t_cfg.min_t, config.model.sample_t_cfg.max_t = 0.02, 0.98
        config.log_config.wandb_mode = "disabled"
        return config
''')


NET_CONFIGS = {"sd15": "SD15Config", "flux": "FluxConfig", "wan": "Wan_1_3B_Config",
               "wan_i2v": "Wan21_I2V_14B_480P_Config", "vace_wan": "VACE_Wan_1_3B_Config"}
# video latents: 5 latent frames (9 pixel frames with the tiny VAE's 2x time factor) at 8x8 (16x16 pixels)
INPUT_SHAPES = {"wan": [4, 5, 8, 8], "wan_i2v": [4, 5, 8, 8], "vace_wan": [4, 5, 8, 8]}


def config_text(method="dmd2", family="sd15", net=None, input_shape=None, extra: list[str] = ()) -> str:
    """The experiment file's text: `net` (a name in fastgen.configs.net) defaults to the family's, `extra` are
    statements run on `config` before it is returned (e.g. a causal net's chunking)."""
    text = CONFIG_TEMPLATE.format(method=method, net=net or NET_CONFIGS[family], family=family,
                                  input_shape=input_shape or INPUT_SHAPES.get(family, [4, 8, 8]))
    return text.replace("    return config", "".join(f"    {line}\n" for line in extra) + "    return config")


def write_config(directory, method="dmd2", family="sd15"):
    """config_tiny_<family>_<method>.py in `directory` (a CLI-loadable experiment config); returns its path."""
    path = directory / f"config_tiny_{family}_{method}.py"
    path.write_text(config_text(method, family))
    return str(path)


def tiny_config(method="dmd2", tmp_path=None, family="sd15"):
    """The same config as an object (loaded through a temporary file, as the CLIs load it)."""
    import tempfile
    from pathlib import Path

    from fastgen.configs.config_utils import import_config_from_python_file

    directory = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp())
    return import_config_from_python_file(write_config(directory, method, family))
