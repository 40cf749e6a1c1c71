"""Settings shared by the Wan text-to-video experiments (and the WanI2V ones): Wan 2.1 at 480p, 81 frames (VAE
latents [16, 21, 60, 104], 8x spatial and 4x temporal compression), Wan 2.2 TI2V-5B at 704x1280, 81 frames (its
48-channel VAE compresses 16x in space: [48, 21, 44, 80]), and the 4-step distillation recipe."""

from fastgen.configs.data import VideoLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family, video_loader_size
from fastgen.configs.net import Wan21_T2V_14B_Config, Wan22_T2V_5B_Config, Wan_1_3B_Config

WAN_INPUT_SHAPE = [16, 21, 60, 104]
WAN22_INPUT_SHAPE = [48, 21, 44, 80]
WAN22_SPATIAL = 16  # pixels per latent pixel of the Wan 2.2 VAE
# Student time lists (t = sigma on the rf schedule): 4 and 2 steps, high t first, ending at 0.
WAN_T_LIST_4 = [0.999, 0.937, 0.833, 0.624, 0.0]
WAN_T_LIST_2 = [0.999, 0.833, 0.0]

# size -> (net config, latent shape, VAE spatial factor)
WAN_T2V_NETS = {
    "1.3b": (Wan_1_3B_Config, WAN_INPUT_SHAPE, 8),
    "14b": (Wan21_T2V_14B_Config, WAN_INPUT_SHAPE, 8),
    "5b": (Wan22_T2V_5B_Config, WAN22_INPUT_SHAPE, WAN22_SPATIAL),
}


def apply_wan_family(config, net, input_shape, spatial: int, group: str, name: str) -> None:
    """A Wan network from the hub, mp4 + caption shards encoded on the fly, training t from the shifted distribution
    (shift 5, the SampleTConfig default) the Wan teachers were trained on."""
    apply_pretrained_family(config, net, input_shape, VideoLoaderConfig, video_loader_size(input_shape, spatial),
                            group, name)
    config.model.sample_t_cfg.time_dist_type = "shifted"


def apply_wan(config, name: str, size: str = "1.3b") -> None:
    """Wan T2V: 2.1 1.3B / 14B, or 2.2 TI2V-5B ("5b") used text-to-video."""
    net, shape, spatial = WAN_T2V_NETS[size]
    apply_wan_family(config, net, shape, spatial, "wan_t2v", name)


def apply_wan_distill(config, t_list=WAN_T_LIST_4) -> None:
    """The few-step student: deterministic (ode) sampling on a fixed time list."""
    config.model.student_sample_steps = len(t_list) - 1
    config.model.student_sample_type = "ode"
    config.model.sample_t_cfg.t_list = list(t_list)


def apply_wan_dmd2_recipe(config, discriminator) -> None:
    """The video DMD2 recipe: 4-step student, multiscale video discriminator heads (GAN weight 0.03), teacher CFG
    5.0, 6k iterations, global batch 64."""
    apply_wan_distill(config)
    config.model.discriminator = discriminator
    config.model.gan_loss_weight_gen = 0.03
    config.model.guidance_scale = 5.0
    config.trainer.max_iter = 6000
    config.trainer.batch_size_global = 64


def apply_wan_14b_fsdp(config) -> None:
    """Billions of parameters (14B; 5B once the student, critic and teacher are counted): FSDP2 with meta-device
    init (rank 0 loads, the others receive), bf16 weights with float32 gradient reduction, each transformer block's
    activations recomputed in backward (inside its FSDP unit)."""
    config.trainer.fsdp = True
    config.model.activation_checkpointing = True
    config.model.fsdp_meta_init = True
    config.model.precision = "bfloat16"
    config.model.precision_fsdp = "float32"
