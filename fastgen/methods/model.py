"""FastGenModel: the interface between a training method and the trainer.

A method subclasses FastGenModel and implements `single_train_step(data, iteration) -> (loss_map, outputs)`.
Everything else the trainer needs is here: building the networks from the config (student, optional frozen teacher,
EMA copies), precision and autocast, optimizers / LR schedules / grad scaler, which optimizers step at an iteration,
what is checkpointed (`model_dict`: never the frozen teacher), and the few-step sampler `generator_fn`.

Order of use (the trainer does this; tests and scripts can too):
    model = SFTModel(config.model)      # builds nets on CPU in `precision`
    model.on_train_begin()              # moves checkpointed nets + teacher to (device, precision)
    model.init_optimizers()             # optimizers/schedulers/grad scaler over the moved parameters
    loss_map, outputs = model.single_train_step(batch, iteration)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from collections.abc import Mapping
from typing import Any

import torch
from loguru import logger
from torch import nn

from fastgen.utils import instantiate

PRECISION_MAP = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}
DEVICE_TYPES = ("auto", "cpu", "cuda")


def to_dtype(name: str | None, field: str) -> torch.dtype | None:
    """'float32' -> torch.float32 (None stays None); an unknown name is a clear error naming the config field."""
    if name is None:
        return None
    if isinstance(name, torch.dtype):
        return name
    if name not in PRECISION_MAP:
        raise ValueError(f"model.{field}={name!r} is not supported; expected one of {', '.join(PRECISION_MAP)}")
    return PRECISION_MAP[name]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' -> cuda when available (the current device, i.e. LOCAL_RANK's under torchrun) else cpu."""
    spec = "auto" if device is None else str(device)
    kind = spec.split(":")[0]
    if kind not in DEVICE_TYPES:
        raise ValueError(f"model.device={spec!r} is not supported; expected one of {DEVICE_TYPES} (or 'cuda:N')")
    if kind == "auto":
        chosen = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        logger.info(f"model.device=auto: using {chosen} ({'CUDA available' if chosen.type == 'cuda' else 'no GPU'})")
        return chosen
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"model.device={spec!r} but no CUDA GPU is available; use model.device=auto or cpu")
        return torch.device(spec) if ":" in spec else torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """Floating tensors (also inside tuples/lists) cast to dtype; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_floats(v, dtype) for v in value)
    return value


def run_in_dtype(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Make a frozen network compute in `dtype` for callers in another dtype: x_t is cast in, the outputs (and
    features) are cast back to x_t's dtype. Time and condition tensors keep theirs (embeddings stay float32)."""

    def cast_in(module, args, kwargs):
        if args:
            module._caller_dtype = args[0].dtype
            return (_cast_floats(args[0], dtype), *args[1:]), kwargs
        module._caller_dtype = kwargs["x_t"].dtype
        return args, {**kwargs, "x_t": _cast_floats(kwargs["x_t"], dtype)}

    def cast_out(module, args, kwargs, output):
        return _cast_floats(output, module._caller_dtype)

    net.register_forward_pre_hook(cast_in, with_kwargs=True)
    net.register_forward_hook(cast_out, with_kwargs=True)
    return net


def ema_names(use_ema: bool | str | list | None) -> list[str]:
    """use_ema: False/None -> []; True -> ['ema']; 'ema_x' or ['ema', 'ema_2', ...] -> those (must start with 'ema')."""
    if use_ema is None or use_ema is False:
        return []
    if use_ema is True:
        return ["ema"]
    names = [use_ema] if isinstance(use_ema, str) else list(use_ema)
    for name in names:
        if not isinstance(name, str) or not name.startswith("ema") or not name.isidentifier():
            raise ValueError(f"model.use_ema entries must be identifiers starting with 'ema'; got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"model.use_ema has duplicate names: {names}")
    return names


def load_weights_file(path: str, key_map: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors` or a torch file loaded with weights_only=True (never runs code).

    A fastgen checkpoint (dict with 'model') yields its 'net' weights. `key_map` renames key prefixes
    (`{"model.": ""}` strips a wrapper's prefix). An `s3://bucket/key` path is downloaded once into the verified
    cache $FASTGEN_OUTPUT_ROOT/.cache/s3 (re-used while its ETag and sha256 match; fastgen.utils.s3).
    """
    if not path:
        raise ValueError("no pretrained weights path given")
    if str(path).startswith("s3://"):
        from fastgen.utils.s3 import cached_download

        path = cached_download(str(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        from fastgen.utils.checkpointer import safe_torch_load

        state = safe_torch_load(path)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping) and "iteration" in state:
        state = state["model"]["net"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    if key_map:
        renamed = {}
        for key, value in state.items():
            for src, dst in key_map.items():
                if key.startswith(src):
                    key = dst + key[len(src):]
                    break
            renamed[key] = value
        state = renamed
    return dict(state)


def load_weights_into(module: nn.Module, path: str, name: str, key_map: Mapping[str, str] | None = None) -> None:
    """Load `path` into `module` (non-strict, mismatching keys reported by name)."""
    state = load_weights_file(path, key_map)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        logger.warning(f"loading {path} into '{name}': missing keys {result.missing_keys[:8]}, "
                       f"unexpected keys {result.unexpected_keys[:8]}")
    logger.info(f"loaded pretrained weights for '{name}' from {path}")


class FastGenModel(nn.Module):
    """Base of every method. Subclasses implement `single_train_step`; most add networks in `build_model`.

    Extension points for methods:
      - `needs_teacher` (class attribute): build `self.teacher` (frozen) from `config.teacher or config.net`.
      - `extra_checkpointed` (class attribute): names of further trained networks (e.g. "fake_score",
        "discriminator") that `model_dict` includes when present.
      - `build_model()`: call super() then add networks; `init_optimizers()`: call super() then
        `self.add_optimizer(name, module, optimizer_config, scheduler_config)`.
      - `active_optimizer_names(iteration)`: which optimizers step at an iteration (e.g. DMD2's alternation).
    """

    needs_teacher: bool = False
    extra_checkpointed: tuple[str, ...] = ()
    supports_lora: bool = False  # methods checked to work on LoRA views (model.lora); others refuse it clearly

    def __init__(self, config: Any):
        super().__init__()
        if config is None:
            raise ValueError("FastGenModel needs its model config (config.model); got None")
        self.config = config
        self.device = resolve_device(getattr(config, "device", "auto"))
        self.set_precision(
            precision=config.precision,
            precision_amp=config.precision_amp,
            precision_amp_infer=config.precision_amp_infer,
            precision_amp_enc=config.precision_amp_enc,
        )
        self.ema_names = ema_names(config.use_ema)
        self.resume_iter = 0  # iteration of a pretrained stage checkpoint, if any (EMA / CT schedules use it)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.grad_scaler: torch.amp.GradScaler | None = None
        self.teacher: nn.Module | None = None
        self.random_teacher = False  # a teacher built without weights (see build_teacher)
        self.build_model()

    # --- precision ----------------------------------------------------------------------------------------------
    def set_precision(self, precision: str, precision_amp: str | None = None, precision_amp_infer: str | None = None,
                      precision_amp_enc: str | None = None) -> None:
        """Parameter/data dtype, and autocast dtypes (an AMP dtype equal to `precision` means autocast off)."""
        self.precision = to_dtype(precision, "precision")

        def amp(name, field):
            dtype = to_dtype(name, field)
            return None if dtype == self.precision else dtype

        self.precision_amp = amp(precision_amp, "precision_amp")
        self.precision_amp_infer = amp(precision_amp_infer, "precision_amp_infer")
        self.precision_amp_enc = amp(precision_amp_enc, "precision_amp_enc")
        if self.precision_amp is not None and self.precision != torch.float32:
            logger.warning(f"autocast to {self.precision_amp} with parameters in {self.precision}: AMP normally "
                           "keeps float32 parameters (set model.precision=float32)")

    def autocast(self, dtype: torch.dtype | None | str = "train"):
        """Autocast context for training (`precision_amp`), or a given dtype; a no-op context when off."""
        dtype = self.precision_amp if dtype == "train" else dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # --- networks ------------------------------------------------------------------------------------------------
    def build_net(self, net_config: Any) -> nn.Module:
        """Instantiate a network config (a LazyCall) in `precision` on CPU."""
        net = instantiate(net_config)
        if not isinstance(net, nn.Module):
            raise TypeError(f"network config built a {type(net).__name__}, expected a torch.nn.Module")
        return net.to(dtype=self.precision)

    @property
    def lora_config(self) -> Any:
        """model.lora (None: full fine-tuning of the student)."""
        return getattr(self.config, "lora", None)

    def build_model(self) -> None:
        """Student `net` (trainable), the frozen teacher when `needs_teacher`, student weights, then EMA copies."""
        if self.lora_config is not None:
            self.build_lora_model()
            return
        self.net = self.build_net(self.config.net)
        self.net.train().requires_grad_(True)
        if getattr(self.config, "enable_preprocessors", True) and hasattr(self.net, "init_preprocessors"):
            self.net.init_preprocessors()
        if self.needs_teacher:
            self.teacher = self.build_teacher()
        self.load_student_weights()
        self.setup_ema()

    def build_lora_model(self) -> None:
        """LoRA student (fastgen.methods.lora): one frozen base `lora_base` holding adapter "net" (the student) and
        one adapter per EMA name; the teacher is the base with adapters off when it shares the student's
        architecture (config.teacher None), else its own network as without LoRA."""
        from fastgen.methods.lora import TEACHER, LoRAView, add_adapter, copy_adapter

        if not self.supports_lora:
            raise ValueError(f"model.lora is not supported by {type(self).__name__} yet (supported: SFT, KD and the "
                             "distribution-matching methods DMD2, f-distill, SiD, LADD); remove model.lora")
        config = self.config
        shares_teacher = self.needs_teacher and config.teacher is None
        if shares_teacher and config.pretrained_student_net_path:
            raise ValueError("model.lora trains adapters on the teacher's own frozen weights; "
                             "model.pretrained_student_net_path cannot be used with it (leave it empty)")
        base = self.build_net(config.net)
        if getattr(config, "enable_preprocessors", True) and hasattr(base, "init_preprocessors"):
            base.init_preprocessors()
        path = config.pretrained_student_net_path or config.pretrained_model_path
        if path and config.load_student_weights:
            load_weights_into(base, path, "lora_base")
        elif shares_teacher and any(True for _ in base.parameters()):
            logger.warning("model.pretrained_model_path is empty: the LoRA base (= the teacher) keeps its random "
                           "initialisation")
        self.lora_base = base.eval()  # registered: moved and broadcast with the model, never checkpointed
        self.net = add_adapter(base, self.lora_config, "net").train().requires_grad_(True)
        if self.needs_teacher:
            self.teacher = LoRAView(base, TEACHER).eval() if shares_teacher else self.build_teacher()
        for name in self.ema_names:
            ema = add_adapter(base, self.lora_config, name)
            copy_adapter(ema, self.net)
            setattr(self, name, ema.eval().requires_grad_(False))

    def build_teacher(self) -> nn.Module:
        """Frozen teacher from `config.teacher` (else `config.net`), loaded from `pretrained_model_path` if set."""
        teacher_config = self.config.teacher if self.config.teacher is not None else self.config.net
        teacher = self.build_net(teacher_config)
        if self.config.pretrained_model_path:
            load_weights_into(teacher, self.config.pretrained_model_path, "teacher")
        # a random teacher matters only to training: on_train_begin warns (evaluation scripts never see it)
        self.random_teacher = not self.config.pretrained_model_path and any(True for _ in teacher.parameters())
        return teacher.eval().requires_grad_(False)

    def load_student_weights(self) -> None:
        """Student init: pretrained_student_net_path, else the teacher's weights, else pretrained_model_path."""
        config = self.config
        if not config.load_student_weights:
            return
        if config.pretrained_student_net_path:
            load_weights_into(self.net, config.pretrained_student_net_path, "net")
        elif self.teacher is not None and config.pretrained_model_path:
            result = self.net.load_state_dict(self.teacher.state_dict(), strict=False)
            if result.missing_keys:
                logger.warning(f"student initialised from the teacher; keys missing there: {result.missing_keys[:8]}")
        elif config.pretrained_model_path:
            load_weights_into(self.net, config.pretrained_model_path, "net")

    def setup_ema(self) -> None:
        """One frozen deep copy of `net` per EMA name (the EMA update itself is the EMA callback's job)."""
        for name in self.ema_names:
            ema = copy.deepcopy(self.net).eval().requires_grad_(False)
            setattr(self, name, ema)

    def checkpointed_names(self) -> list[str]:
        names = ["net", *self.ema_names]
        names += [n for n in self.extra_checkpointed if isinstance(getattr(self, n, None), nn.Module)]
        return names

    @property
    def model_dict(self) -> nn.ModuleDict:
        """Networks saved in checkpoints: net, EMA copies, extra trained nets; never the frozen teacher."""
        return nn.ModuleDict({name: getattr(self, name) for name in self.checkpointed_names()})

    @property
    def ema_dict(self) -> nn.ModuleDict:
        return nn.ModuleDict({name: getattr(self, name) for name in self.ema_names})

    @property
    def fsdp_dict(self) -> nn.ModuleDict:
        """What FSDP shards: model_dict plus the teacher when `add_teacher_to_fsdp_dict`."""
        modules = dict(self.model_dict.items())
        if self.teacher is not None and getattr(self.config, "add_teacher_to_fsdp_dict", True):
            modules["teacher"] = self.teacher
        return nn.ModuleDict(modules)

    @property
    def net_inference(self) -> nn.Module:
        """The network to sample from: the first EMA copy if any, else net."""
        return getattr(self, self.ema_names[0]) if self.ema_names else self.net

    def on_train_begin(self, is_fsdp: bool = False) -> None:
        """Move checkpointed networks and the teacher to (device, precision) before optimizers are built.

        With FSDP the wrapper places sharded networks itself; only the unsharded ones (EMA, teacher) move here.
        """
        if self.random_teacher and self.resume_iter == 0:  # no stage checkpoint loaded it either
            logger.warning("model.pretrained_model_path is empty: the teacher keeps its random initialisation")
        modules = dict(self.fsdp_dict.items())
        if self.teacher is not None:
            modules["teacher"] = self.teacher
        for name, module in modules.items():
            if is_fsdp and not name.startswith("ema") and name in self.fsdp_dict:
                continue
            module.to(device=self.device, dtype=self.precision)
        if self.lora_config is not None:
            if is_fsdp:
                raise ValueError("model.lora is not supported with trainer.fsdp=True yet (the adapters share one "
                                 "base network); use trainer.ddp=True")
            self.lora_base.to(device=self.device, dtype=self.precision)
        for name in ("vae", "text_encoder", "image_encoder"):
            sub = getattr(self.net, name, None)
            if isinstance(sub, nn.Module):
                sub.to(device=self.device, dtype=self.precision)
        self.apply_speed_switches(is_fsdp)

    # --- speed and memory switches -------------------------------------------------------------------------------
    def step_networks(self) -> dict[str, nn.Module]:
        """Every network a training step may run: the checkpointed ones, the teacher and method-specific frozen ones
        (whatever `fsdp_dict` holds)."""
        modules = dict(self.fsdp_dict.items())
        if self.teacher is not None:
            modules["teacher"] = self.teacher
        return modules

    def uses_forward_ad(self) -> bool:
        """Whether a step runs `net` under torch.func.jvp (sCM / MeanFlow with autograd JVPs); such passes run
        eagerly when `net` is compiled."""
        return False

    def apply_speed_switches(self, is_fsdp: bool = False) -> None:
        """model.teacher_precision, channels_last, activation_checkpointing and compile (after the move to the
        device, so compiled code and memory formats see the final placement)."""
        config = self.config
        teacher_dtype = to_dtype(getattr(config, "teacher_precision", None), "teacher_precision")
        if teacher_dtype is not None and self.teacher is not None:
            run_in_dtype(self.teacher.to(dtype=teacher_dtype), teacher_dtype)
        if getattr(config, "channels_last", False):
            if is_fsdp:
                logger.warning("model.channels_last is ignored under FSDP2 (sharded parameters stay contiguous)")
            elif self.uses_forward_ad():  # torch 2.13: group_norm's forward-AD rule fails on channels-last input
                logger.warning("model.channels_last is ignored: this method runs torch.func.jvp through the network, "
                               "whose forward-mode AD does not support channels-last GroupNorm (use "
                               "loss_config.use_jvp_finite_diff=true to combine them)")
            else:
                for module in self.step_networks().values():
                    module.to(memory_format=torch.channels_last)
        if getattr(config, "activation_checkpointing", False):
            for name, module in self.step_networks().items():
                if not name.startswith("ema") and hasattr(module, "enable_activation_checkpointing"):
                    count = module.enable_activation_checkpointing()
                    logger.info(f"activation checkpointing: {count} blocks of '{name}'")
        self.compile_networks(is_fsdp)

    def compile_networks(self, is_fsdp: bool = False) -> None:
        """torch.compile of model.compile.networks, whole (`nn.Module.compile`) or block by block
        (`fastgen.utils.compile.compile_blocks` on the network's `fsdp_units()`); state_dict keys unchanged either way
        (no `_orig_mod`). `compile.per_block=None` compiles per block exactly the networks FSDP2 sharded per block
        (whole-network graphs would break at every sharded block's hooks); True/False force it either way."""
        from fastgen.utils.compile import compile_blocks

        compile_cfg = getattr(self.config, "compile", None)
        names = list(getattr(compile_cfg, "networks", None) or [])
        available = self.step_networks()
        sharded = set(self.fsdp_dict) if is_fsdp else set()
        per_block = getattr(compile_cfg, "per_block", None)
        done = []
        for name in names:
            if name not in available or name.startswith("ema"):
                raise ValueError(f"model.compile.networks names {name!r}; this method's networks are "
                                 f"{sorted(n for n in available if not n.startswith('ema'))}")
            kwargs = {"backend": compile_cfg.backend, "dynamic": compile_cfg.dynamic, "fullgraph": compile_cfg.fullgraph}
            if compile_cfg.mode is not None:
                kwargs["mode"] = compile_cfg.mode
            module = available[name]
            units = module.fsdp_units() if callable(getattr(module, "fsdp_units", None)) else []
            if units and (per_block if per_block is not None else name in sharded):
                done.append(f"{name} ({compile_blocks(units, **kwargs)} blocks)")
            else:
                module.compile(**kwargs)
                done.append(name)
        if names:
            logger.info(f"torch.compile ({compile_cfg.backend}, mode={compile_cfg.mode}): {', '.join(done)}")
        if "net" in names and self.uses_forward_ad():
            logger.warning("model.compile: the torch.func.jvp pass of 'net' runs eagerly (TorchDynamo does not trace "
                           "forward-mode AD); its other passes are compiled")

    # --- optimizers ----------------------------------------------------------------------------------------------
    def add_optimizer(self, name: str, module: nn.Module, optimizer_config: Any, scheduler_config: Any) -> None:
        """Build `instantiate(optimizer_config, model=module)` and its LambdaLR schedule, registered under `name`."""
        from fastgen.configs.opt import get_scheduler

        optimizer = instantiate(optimizer_config, model=module)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer config for '{name}' built a {type(optimizer).__name__}, not an optimizer")
        self.optimizers[name] = optimizer
        self.schedulers[name] = get_scheduler(optimizer, scheduler_config)

    def init_optimizers(self) -> None:
        """The student's optimizer/schedule and the grad scaler. Subclasses add theirs after calling super()."""
        self.add_optimizer("net", self.net, self.config.net_optimizer, self.config.net_scheduler)
        fp16_in_use = torch.float16 in (self.precision, self.precision_amp)
        enabled = bool(self.config.grad_scaler_enabled) and fp16_in_use
        if fp16_in_use and not enabled:
            logger.warning("float16 training without a grad scaler (model.grad_scaler_enabled=False): "
                           "small gradients may underflow")
        self.grad_scaler = torch.amp.GradScaler(
            device=self.device.type,
            init_scale=self.config.grad_scaler_init_scale,
            growth_interval=self.config.grad_scaler_growth_interval,
            enabled=enabled,
        )

    @property
    def optimizer_dict(self) -> dict[str, torch.optim.Optimizer]:
        return dict(self.optimizers)

    @property
    def scheduler_dict(self) -> dict[str, Any]:
        return dict(self.schedulers)

    def active_optimizer_names(self, iteration: int) -> list[str]:
        """Names of the optimizers that step at `iteration` (default: all). Override for alternating updates."""
        return list(self.optimizers)

    def get_optimizers(self, iteration: int) -> list[torch.optim.Optimizer]:
        return [self.optimizers[name] for name in self.active_optimizer_names(iteration)]

    def get_lr_schedulers(self, iteration: int) -> list[Any]:
        return [self.schedulers[name] for name in self.active_optimizer_names(iteration) if name in self.schedulers]

    def optimizers_zero_grad(self, iteration: int) -> None:
        """Clear the gradients of every optimizer's parameters (inactive ones too: nothing leaks to a later step)."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def should_use_grad_scaler(self, optimizer: torch.optim.Optimizer) -> bool:
        """The scaler can unscale only float32 gradients (fp16 *parameters* are stepped without it)."""
        if self.grad_scaler is None or not self.grad_scaler.is_enabled():
            return False
        return all(p.grad is None or p.grad.dtype == torch.float32 for g in optimizer.param_groups for p in g["params"])

    def optimizers_schedulers_step(self, iteration: int) -> None:
        """Step the active optimizers (through the grad scaler when enabled), then their LR schedules."""
        scaled = False
        for optimizer in self.get_optimizers(iteration):
            if self.should_use_grad_scaler(optimizer):
                self.grad_scaler.step(optimizer)
                scaled = True
            else:
                optimizer.step()
        if scaled:
            self.grad_scaler.update()
        for scheduler in self.get_lr_schedulers(iteration):
            scheduler.step()

    # --- training ------------------------------------------------------------------------------------------------
    def _prepare_training_data(self, data: Mapping[str, Any]) -> tuple[torch.Tensor, Any, Any]:
        """(real, condition, neg_condition) of a batch; missing conditions become None."""
        if "real" not in data:
            raise KeyError(f"training batch has no 'real' entry; it has {sorted(data)}")
        return data["real"], data.get("condition"), data.get("neg_condition")

    def encode_batch(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Raw images / prompts of a batch -> latents / embeddings with the network's frozen encoders (no_grad,
        `precision_amp_enc` autocast), when `enable_preprocessors` and the network has them (`preprocess_batch`);
        batches that already hold latents and embeddings pass unchanged."""
        preprocess = getattr(self.net, "preprocess_batch", None)
        if not getattr(self.config, "enable_preprocessors", True) or preprocess is None:
            return data
        with torch.no_grad(), self.autocast(self.precision_amp_enc):
            return preprocess(data)

    def gen_data_from_net(self, net: nn.Module, x_t: torch.Tensor, t: torch.Tensor, condition: Any = None, **kw):
        """The network's x0 prediction at (x_t, t)."""
        return net(x_t, t, condition=condition, fwd_pred_type="x0", **kw)

    def single_train_step(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        """One forward pass: (loss_map with 'total_loss', outputs such as 'gen_rand' and 'input_rand')."""
        raise NotImplementedError(f"{type(self).__name__} must implement single_train_step(data, iteration)")

    def forward(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        """Calls single_train_step, so DDP's `__call__` hooks fire when the trainer wraps the model."""
        return self.single_train_step(data, iteration)

    # --- sampling ------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def inference_mode(self, net: nn.Module, precision_amp: torch.dtype | None | str = "infer"):
        """no_grad + eval mode for `net` (its train flag is restored afterwards) + inference autocast."""
        was_training = net.training
        dtype = self.precision_amp_infer if precision_amp == "infer" else precision_amp
        net.eval()
        try:
            with torch.no_grad(), self.autocast(dtype):
                yield
        finally:
            net.train(was_training)

    def student_t_list(self, net: nn.Module, student_sample_steps: int, t_list=None) -> torch.Tensor:
        """`t_list` (or config.sample_t_cfg.t_list, or the schedule's default grid), checked to have steps+1 entries."""
        if t_list is None:
            t_list = self.config.sample_t_cfg.t_list
        if t_list is None:
            return net.noise_scheduler.get_t_list(student_sample_steps, device=self.device)
        t_list = torch.as_tensor(list(t_list), dtype=torch.float64, device=self.device)
        if len(t_list) != student_sample_steps + 1 or float(t_list[-1]) != 0.0:
            raise ValueError(f"sample_t_cfg.t_list must have student_sample_steps+1={student_sample_steps + 1} "
                             f"entries ending in 0; got {t_list.tolist()}")
        return t_list

    def generator_fn(self, net: nn.Module, noise: torch.Tensor, condition: Any = None, student_sample_steps: int = 1,
                     t_list=None, sample_type: str | None = None, precision_amp: Any = "infer",
                     generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor:
        """Few-step student sampling (samplers.student_sample): x = noise*sigma(t0); x0 = net(x, t); re-noise to the
        next t with fresh ("sde") or implied ("ode") noise. Returns the last x0 in noise's dtype."""
        from fastgen.networks.samplers import student_sample

        sample_type = sample_type or self.config.student_sample_type
        t_list = self.student_t_list(net, student_sample_steps, t_list)

        def x0_fn(x, t):
            return self.gen_data_from_net(net, x, t, condition=condition, **kwargs)

        with self.inference_mode(net, precision_amp):
            return student_sample(x0_fn, noise, t_list, net.noise_scheduler, sample_type=sample_type,
                                  generator=generator)

    def sample(self, net: nn.Module, noise: torch.Tensor, condition: Any = None, neg_condition: Any = None,
               num_steps: int = 35, **kwargs: Any) -> torch.Tensor:
        """Multi-step (teacher-style) sampling with the configured classifier-free guidance."""
        with self.inference_mode(net):
            return net.sample(noise, condition=condition, neg_condition=neg_condition,
                              guidance_scale=self.config.guidance_scale, num_steps=num_steps, **kwargs)

    def sample_outputs(self, noise: torch.Tensor, condition: Any = None, **kwargs: Any) -> dict[str, Any]:
        """`outputs` entries for logging: a deferred few-step sample of the inference net and its input noise."""
        gen = functools.partial(self.generator_fn, self.net_inference, noise, condition=condition,
                                student_sample_steps=self.config.student_sample_steps, **kwargs)
        return {"gen_rand": gen, "input_rand": noise}
