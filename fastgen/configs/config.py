"""Base config classes: the attrs tree every experiment builds on.

Every default is built fresh (attrs factories deep-copy the module-level LazyCalls) and every assignment of a
container (`config.model.net = EDM_ImageNet64_Config`) stores a deep copy, so editing one experiment's config can
never change another's or a module-level default. Fields carry type annotations: command-line overrides are checked
against them (see config_utils). Every annotation is one OmegaConf accepts too, so a config node can be assigned into
an OmegaConf tree: an optional LazyCall is `Optional[dict]` (a mapping given to it becomes a DictConfig), and
`use_ema` (bool or list of names) is `Any`.
"""

import copy
import os
from typing import Any, Optional

import attrs
from omegaconf import DictConfig, ListConfig

from fastgen.configs.callbacks import WANDB_CALLBACK
from fastgen.configs.data import cifar10_loader_config
from fastgen.configs.net import EDM_CIFAR10_Config
from fastgen.configs.opt import BaseOptimizerConfig, BaseSchedulerConfig
from fastgen.utils import LazyCall as L
from fastgen.utils.env import DEFAULT_S3_CREDENTIAL, DEFAULT_WANDB_CREDENTIAL, output_root

_COPIED_ON_ASSIGN = (list, dict, set, DictConfig, ListConfig)


class ConfigNode:
    """Mixin giving value semantics: assigning a container or a config node stores a deep copy of it.

    (Subclasses must not use attrs validators/converters: attrs then generates its own __setattr__ bypassing this.)
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, _COPIED_ON_ASSIGN) or attrs.has(type(value)):
            value = copy.deepcopy(value)
        super().__setattr__(name, value)


def fresh(value: Any) -> Any:
    """attrs default that deep-copies `value` for every new instance."""
    return attrs.Factory(lambda: copy.deepcopy(value))


@attrs.define(slots=False)
class CuDNNConfig(ConfigNode):
    deterministic: bool = False
    benchmark: bool = True


@attrs.define(slots=False)
class LogConfig(ConfigNode):
    project: str = "fastgen"
    group: str = "cifar10"
    name: str = "debug"
    wandb_mode: str = "online"  # "online" | "offline" | "disabled"
    wandb_credential: str = DEFAULT_WANDB_CREDENTIAL

    @property
    def save_path(self) -> str:
        """Run directory {$FASTGEN_OUTPUT_ROOT}/{project}/{group}/{name} (read from the environment now)."""
        return os.path.join(output_root(), self.project, self.group, self.name)


@attrs.define(slots=False)
class EvalConfig(ConfigNode):
    num_samples: int = 50000
    save_images: bool = False
    min_ckpt: int = 0
    max_ckpt: int = 100000000
    samples_dir: str = "samples"


@attrs.define(slots=False)
class BaseCheckpointerConfig(ConfigNode):
    save_dir: str = "checkpoints"  # rewritten at setup to {save_path}/{save_dir}
    use_s3: bool = False
    s3_container: str = "s3://checkpoints/fastgen"
    s3_credential: str = DEFAULT_S3_CREDENTIAL
    # with use_s3: local copies of uploaded checkpoints to keep ("keep_latest" resumes without a download)
    s3_local_copy_type: str = "keep_latest"  # keep_latest | keep_all | delete
    keep_last: int = 0  # after each save keep only the newest N checkpoints (local and on S3); 0 keeps all
    pretrained_ckpt_path: str = ""  # a fastgen checkpoint of a previous stage
    # model attribute -> key in that checkpoint's "model" dict
    pretrained_ckpt_key_map: dict[str, str] = attrs.Factory(lambda: {"net": "net"})


CheckpointerConfig = BaseCheckpointerConfig


@attrs.define(slots=False)
class SampleTConfig(ConfigNode):
    """Training-time distribution; passed as keyword arguments to `noise_scheduler.sample_t`."""

    time_dist_type: str = "uniform"  # uniform | lognormal | logitnormal | polynomial | shifted | log_t
    train_p_mean: float = -1.1
    train_p_std: float = 2.0
    shift: float = 5.0
    min_t: float = 0.002
    max_t: float = 80.0
    t_list: Optional[list[float]] = None  # [t_max, ..., 0], length student_sample_steps + 1
    log_t_df: float = 0.01


@attrs.define(slots=False)
class CompileConfig(ConfigNode):
    """torch.compile of the model's networks (fastgen/methods/README.md, "Speed and memory switches").

    networks: attribute names of the networks to compile, e.g. ["net", "teacher", "fake_score", "discriminator"]
    (EMA copies are never compiled: they only sample). The compiled code is cached under the run's
    `compile_cache/` folder (unless TORCHINDUCTOR_CACHE_DIR is exported), so a resumed run reuses it. Checkpoint
    keys are unchanged (Module.compile). Works under DDP and FSDP2 (compiled after sharding, before DDP wraps);
    details in fastgen/methods/README.md, "torch.compile with DDP, FSDP2, EMA, checkpoints and the cache".
    per_block: compile each block of the network's `fsdp_units()` (the blocks FSDP2 shards and activation
    checkpointing wraps) instead of the whole network. None (default): per block exactly for the networks FSDP2
    shards (a whole-network graph breaks at every sharded block's hooks), whole otherwise; True: per block wherever
    the network has blocks (identical blocks then share one compiled graph: shorter compiles for deep transformers);
    False: always whole.
    """

    networks: list[str] = attrs.Factory(list)
    mode: Optional[str] = None  # None | "default" | "reduce-overhead" | "max-autotune" | "max-autotune-no-cudagraphs"
    backend: str = "inductor"  # any torch.compile backend ("aot_eager" traces without code generation)
    dynamic: Optional[bool] = None
    fullgraph: bool = False
    per_block: Optional[bool] = None


@attrs.define(slots=False)
class LoRAConfig(ConfigNode):
    """Low-rank adapters on the student (fastgen.methods.lora): only they train and are checkpointed.

    The student's base weights stay frozen and are shared with the teacher (adapters disabled) when the teacher
    uses the student's architecture; DMD2-style fake scores become a second adapter on the same base
    (`fake_score_adapter`). Set on the command line with `- model.lora='{rank: 8}'`.
    """

    rank: int = 16
    alpha: Optional[float] = None  # scale alpha / rank of the update; None: alpha = rank (scale 1)
    # module names (suffix match, peft's rule); None: the standard attention projections of diffusers models
    target_modules: Optional[list[str]] = None
    dropout: float = 0.0
    fake_score_adapter: bool = True  # False: the fake score is a full trainable copy of the base (as without LoRA)


@attrs.define(slots=False)
class BaseModelConfig(ConfigNode):
    net: DictConfig = fresh(EDM_CIFAR10_Config)
    teacher: Optional[dict] = None  # separate teacher architecture (else the teacher uses `net`)
    guidance_scale: Optional[float] = None
    skip_layers: Optional[list[int]] = None
    net_optimizer: DictConfig = fresh(BaseOptimizerConfig)
    net_scheduler: DictConfig = fresh(BaseSchedulerConfig)
    sample_t_cfg: SampleTConfig = attrs.Factory(SampleTConfig)
    input_shape: list[int] = attrs.Factory(lambda: [3, 32, 32])
    device: str = "auto"  # "auto" (cuda if available, else cpu) | "cuda" | "cpu"; resolved by the model
    grad_scaler_enabled: bool = False
    grad_scaler_init_scale: float = 65536.0
    grad_scaler_growth_interval: int = 2000
    pretrained_model_path: str = ""
    pretrained_student_net_path: str = ""
    load_student_weights: bool = True
    enable_preprocessors: bool = True
    use_ema: Any = False  # bool or list of names starting with "ema" (Any: OmegaConf has no Union of containers)
    student_sample_steps: int = 1
    student_sample_type: str = "sde"  # "sde" | "ode"
    fsdp_meta_init: bool = False
    add_teacher_to_fsdp_dict: bool = True
    ddp_find_unused_parameters: bool = True
    precision: str = "float32"
    precision_amp: Optional[str] = None
    precision_amp_infer: Optional[str] = None
    precision_amp_enc: Optional[str] = None
    precision_fsdp: Optional[str] = None
    # speed and memory switches (fastgen/methods/README.md); all off by default: each trades something
    channels_last: bool = False  # 4-D conv weights (EDM/EDM2) in channels-last memory format (not with FSDP2)
    activation_checkpointing: bool = False  # recompute each network block's activations in backward
    teacher_precision: Optional[str] = None  # dtype of the frozen teacher's weights and passes, e.g. "bfloat16"
    compile: CompileConfig = attrs.Factory(CompileConfig)
    lora: Optional[LoRAConfig] = None  # None: the whole student trains; set: LoRA adapters only (see LoRAConfig)


@attrs.define(slots=False)
class BaseTrainerConfig(ConfigNode):
    cudnn: CuDNNConfig = attrs.Factory(CuDNNConfig)
    checkpointer: BaseCheckpointerConfig = attrs.Factory(BaseCheckpointerConfig)
    callbacks: DictConfig = attrs.Factory(lambda: DictConfig(copy.deepcopy(WANDB_CALLBACK)))
    save_ckpt_iter: int = 5000
    validation_iter: int = 1000
    logging_iter: int = 1000
    max_iter: int = 1000000
    # time budget of one run's training loop: stop (with a checkpoint) after the first iteration that reaches it, so
    # methods with different step costs can be compared at equal compute (benchmarks/fashion_mnist_table.py)
    max_minutes: Optional[float] = None
    # how max_minutes is counted: "wall" (elapsed time) or "cpu" (this process's CPU time divided by the torch thread
    # count: what the budget buys on an idle machine, so runs sharing a busy machine still get equal compute)
    max_minutes_clock: str = "wall"
    visualize_teacher: bool = False
    seed: int = 0
    val_seed: Optional[int] = None
    resume: bool = True
    ddp: bool = False
    fsdp: bool = False
    tf32_enabled: bool = True
    grad_accum_rounds: int = 1
    batch_size_global: Optional[int] = None  # if set, grad_accum_rounds = global / (batch_size * world_size)
    offload_module_in_decoding: bool = False
    fsdp_cpu_offload: bool = False
    fsdp_min_num_params: int = 10_000_000
    fsdp_sharding_group_size: Optional[int] = None
    global_vars: Optional[dict[str, Any]] = None
    global_vars_val: list[Optional[dict[str, Any]]] = attrs.Factory(lambda: [None])
    augment_pipe: Optional[dict] = None


@attrs.define(slots=False)
class BaseConfig(ConfigNode):
    log_config: LogConfig = attrs.Factory(LogConfig)
    trainer: BaseTrainerConfig = attrs.Factory(BaseTrainerConfig)
    model: BaseModelConfig = attrs.Factory(BaseModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.FastGenModel")(config=None))
    dataloader_train: DictConfig = attrs.Factory(cifar10_loader_config)
    dataloader_val: Optional[dict] = None
    eval: EvalConfig = attrs.Factory(EvalConfig)
