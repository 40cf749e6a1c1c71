"""Weights & Biases logging: losses, learning rates, other callbacks' scalars and sample grids.

Rank 0 opens one W&B run per run directory (trainer.run_dir, else trainer.save_path, else log_config.save_path). Its id is kept in `{run_dir}/wandb_id.txt`, so a resumed training
continues the same run (`resume="allow"`). The mode comes from `$WANDB_MODE` if set, else
`config.log_config.wandb_mode` ("online" | "offline" | "disabled"; disabled opens no run and writes no W&B files).
The API key comes from `$WANDB_API_KEY` or the `log_config.wandb_credential` file; it is never logged, and the
config sent to W&B is the redacted one (`fastgen.configs.config_utils.public_config_dict`).

Scalars: losses of `loss_map` are averaged over each logging interval (and over ranks); learning rates are read
from the active optimizers when they step; every sibling callback's `logs` dict is collected and cleared at each
logging iteration (`iteration % logging_iter == 0` and iteration 1). All rows carry `iteration`, which is the
x-axis (a custom step metric, so rows re-logged after a resume are not dropped by W&B's monotonic `_step`).
Sample grids (`outputs["gen_rand"]`) go to W&B and, unless `save_png=False`, to `{run_dir}/samples/*.png`.
Video samples ([N, C, T, H, W]) go as a `wandb.Video` (one h264 mp4 whose frames are the batch's grids, encoded by
fastgen.utils.video through PyAV; no moviepy needed) under `.../videos`, plus a contact sheet (a row of frames per
sample) as the image under `.../samples`; the files are `{run_dir}/samples/*.mp4` and `*.png`. With
`trainer.visualize_teacher=True` the teacher's samples from the same noise go beside them (`train_media/teacher`).
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from loguru import logger

from fastgen.callbacks.callback import (
    Callback,
    active_optimizers,
    is_rank0,
    logging_interval,
    unwrap_model,
    unwrap_module,
)
from fastgen.utils.image_grid import make_image_grid, save_image_grid
from fastgen.utils.video import (
    encode_mp4,
    make_contact_sheet,
    make_video_grid,
    save_contact_sheet,
    write_bytes_atomic,
)

WANDB_MODES = ("online", "offline", "disabled")
_ENV_MODE_ALIASES = {"dryrun": "offline", "run": "online"}
RUN_ID_FILE = "wandb_id.txt"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def generate_run_id(length: int = 8) -> str:
    """A random W&B-style run id (wandb >= 0.28 no longer exports `wandb.util.generate_id`)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def read_or_create_run_id(run_dir: str | os.PathLike) -> str:
    """The id stored in `{run_dir}/wandb_id.txt`, or a new one written there atomically."""
    path = Path(run_dir) / RUN_ID_FILE
    if path.is_file():
        run_id = path.read_text().strip()
        if run_id:
            return run_id
        logger.warning(f"{path} is empty; starting a new W&B run id")
    run_id = generate_run_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id


def resolve_wandb_mode(config_mode: str | None) -> str:
    """$WANDB_MODE wins over the config (so `WANDB_MODE=offline python train.py ...` works); both are checked."""
    env_mode = os.environ.get("WANDB_MODE")
    mode = _ENV_MODE_ALIASES.get(env_mode, env_mode) if env_mode else (config_mode or "online")
    if mode not in WANDB_MODES:
        source = "$WANDB_MODE" if env_mode else "log_config.wandb_mode"
        raise ValueError(f"{source} got {mode!r}; expected one of {', '.join(WANDB_MODES)}")
    return mode


def _plain(obj: Any) -> Any:
    """Best-effort plain-data view of a config (used only when the config helpers are unavailable)."""
    import attrs
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if attrs.has(type(obj)):
        return {f.name: _plain(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
    if isinstance(obj, (DictConfig, ListConfig)):
        return _plain(OmegaConf.to_container(obj, resolve=False))
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def public_config(config: Any) -> dict:
    """The config as W&B may see it: secrets redacted."""
    from fastgen.utils.env import redact

    if config is None:
        return {}
    try:
        from fastgen.configs.config_utils import public_config_dict

        return public_config_dict(config)
    except Exception as e:  # noqa: BLE001 - logging must not stop training; the fallback is redacted too
        logger.warning(f"public_config_dict failed ({e.__class__.__name__}); sending a plain redacted config to W&B")
        return redact(_plain(config))


def _first(condition: Any, n: int) -> Any:
    """The first n samples of a condition (a tensor, or a mapping of tensors); anything else unchanged."""
    if isinstance(condition, torch.Tensor):
        return condition[:n]
    if isinstance(condition, Mapping):
        return {k: _first(v, n) for k, v in condition.items()}
    return condition


class _Averager:
    """Sums of scalar losses kept on their device (no host sync per iteration) and how often each was seen."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, loss_map: Mapping[str, Any] | None) -> None:
        for key, value in (loss_map or {}).items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    continue
                value = value.detach().float().reshape(())
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = torch.tensor(float(value))
            else:
                continue
            self.sums[key] = self.sums[key] + value.to(self.sums[key].device) if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        """Averages over everything added (and over ranks when torch.distributed runs); then resets."""
        keys = sorted(self.sums)
        if not keys:
            return {}
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        device = "cuda" if distributed and torch.distributed.get_backend() == "nccl" else "cpu"
        sums = torch.stack([self.sums[k].to(device=device, dtype=torch.float64) for k in keys])
        counts = torch.tensor([float(self.counts[k]) for k in keys], dtype=torch.float64, device=device)
        if distributed:
            torch.distributed.all_reduce(sums)
            torch.distributed.all_reduce(counts)
        self.sums, self.counts = {}, {}
        return {k: v for k, v in zip(keys, (sums / counts.clamp_min(1)).tolist())}


class WandbCallback(Callback):
    """Args:
    sample_logging_iter: log sample grids every this many iterations (None -> trainer.logging_iter; 0 -> never).
    validation_logging_step: which validation step (1-based) provides the validation sample grid (0 -> none).
    num_grid_samples: images per grid.
    num_video_samples: videos per logged video grid (decoded videos are large: kept separate and small).
    save_png: also write grids as PNG (videos: mp4 + contact-sheet PNG) under {run_dir}/samples/ (for users
        without W&B).
    video_fps: frame rate of logged video samples.
    """

    order = 100  # after every other callback, so their scalars of this iteration are ready

    def __init__(self, sample_logging_iter: int | None = None, validation_logging_step: int = 1,
                 num_grid_samples: int = 16, save_png: bool = True, video_fps: float = 16,
                 num_video_samples: int = 4):
        super().__init__()
        self.sample_logging_iter = sample_logging_iter
        self.validation_logging_step = validation_logging_step
        self.num_grid_samples = num_grid_samples
        self.num_video_samples = num_video_samples
        self.save_png = save_png
        self.video_fps = float(video_fps)
        self.run: Any = None
        self.run_id: str | None = None
        self.mode: str | None = None
        self.last_logged: dict[str, Any] = {}
        self._train = _Averager()
        self._val = _Averager()
        self._lrs: dict[str, float] = {}
        self._val_iteration: int | None = None
        self._val_pass = 0
        self._val_step = 0
        self._val_images: torch.Tensor | None = None
        self._warned_no_teacher = False

    # --- setup -----------------------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        run_dir = getattr(self.trainer, "run_dir", None) or getattr(self.trainer, "save_path", None)
        if run_dir is None:
            log_config = getattr(self.config, "log_config", None)
            if log_config is None:
                raise ValueError("WandbCallback needs a run directory: trainer.run_dir / trainer.save_path or "
                                 "config.log_config.save_path")
            run_dir = log_config.save_path
        return Path(run_dir)

    def _logging_iter(self) -> int:
        return logging_interval(self.trainer, self.config)

    def _sample_iter(self) -> int:
        return self._logging_iter() if self.sample_logging_iter is None else int(self.sample_logging_iter)

    def init_run(self) -> None:
        """Open the W&B run on rank 0 (idempotent). Called from on_app_begin and, as a fallback, later hooks."""
        if self.run is not None or self.mode == "disabled" or not is_rank0():
            return
        log_config = getattr(self.config, "log_config", None)
        self.mode = resolve_wandb_mode(getattr(log_config, "wandb_mode", None))
        if self.mode == "disabled":
            logger.info("W&B logging disabled")
            return
        import wandb

        from fastgen.utils.env import load_wandb_credential

        credential = getattr(log_config, "wandb_credential", None)
        if credential:
            load_wandb_credential(credential)  # only if WANDB_API_KEY is unset; the key itself is never logged
        run_dir = self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = read_or_create_run_id(run_dir)
        try:
            self.run = wandb.init(
                project=getattr(log_config, "project", "fastgen"),
                group=getattr(log_config, "group", None),
                name=getattr(log_config, "name", None),
                id=self.run_id,
                resume="allow",
                dir=str(run_dir),
                mode=self.mode,
                config=public_config(self.config),
                settings=wandb.Settings(console="off"),
            )
        except Exception as e:
            raise RuntimeError(
                f"W&B init in {self.mode} mode failed ({e.__class__.__name__}: {e}). Set WANDB_API_KEY or put the key "
                f"in {credential}, or use log_config.wandb_mode=offline|disabled (or WANDB_MODE=offline)"
            ) from e
        self.run.define_metric("iteration")
        self.run.define_metric("*", step_metric="iteration")
        if os.environ.get("WANDB_UPLOAD_CODE", "").strip().lower() in ("1", "true", "yes"):
            self.run.log_code(".")
        logger.info(f"W&B run {self.run_id} ({self.mode}) in {run_dir}")

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    # --- hooks -------------------------------------------------------------------------------------------------------
    def on_app_begin(self, **kwargs: Any) -> None:
        self.init_run()

    def on_train_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        self.init_run()

    def on_optimizer_step_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        for name, optimizer in active_optimizers(model, iteration).items():
            self._lrs[name] = float(optimizer.param_groups[0]["lr"])

    def on_training_step_end(self, model: Any, data: Any = None, outputs: Any = None, loss_map: Any = None,
                             iteration: int = 0, **kwargs: Any) -> None:
        self._train.add(loss_map)
        row: dict[str, Any] = {}
        if iteration % self._logging_iter() == 0 or iteration == 1:
            row.update({f"train/{k}": v for k, v in self._train.means().items()})
            row.update({f"lr/{k}": v for k, v in self._lrs.items()})
            row.update(self.collect_sibling_logs())
        sample_iter = self._sample_iter()
        if sample_iter > 0 and iteration % sample_iter == 0:
            images = self.sample_images(model, outputs)
            if images is not None:
                row.update(self._media("train_media/samples", images, f"iter_{iteration:07d}.png"))
            teacher = self.teacher_images(model, outputs, data)
            if teacher is not None:
                row.update(self._media("train_media/teacher", teacher, f"teacher_iter_{iteration:07d}.png"))
        if row:
            self.log(row, iteration)

    def on_validation_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        # several passes at one iteration (global_vars_val) are logged as val, val1, val2, ...
        self._val_pass = self._val_pass + 1 if self._val_iteration == iteration else 0
        self._val_iteration = iteration
        self._val_step = 0
        self._val_images = None
        self._val = _Averager()

    def on_validation_step_end(self, model: Any, data: Any = None, outputs: Any = None, loss_map: Any = None,
                               iteration: int = 0, **kwargs: Any) -> None:
        self._val.add(loss_map)
        self._val_step += 1
        if self._val_step == self.validation_logging_step:
            self._val_images = self.sample_images(model, outputs)

    def on_validation_end(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        prefix = "val" if self._val_pass == 0 else f"val{self._val_pass}"
        row: dict[str, Any] = {f"{prefix}/{k}": v for k, v in self._val.means().items()}
        if self._val_images is not None:
            row.update(self._media(f"{prefix}_media/samples", self._val_images, f"{prefix}_iter_{iteration:07d}.png"))
            self._val_images = None
        if row:
            self.log(row, iteration)

    def on_train_end(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        self.finish()

    def on_app_end(self, **kwargs: Any) -> None:
        self.finish()

    # --- logging -----------------------------------------------------------------------------------------------------
    def collect_sibling_logs(self) -> dict[str, float]:
        """Take (and clear) the scalars other callbacks recorded since the last logging iteration."""
        row: dict[str, float] = {}
        callbacks = self.siblings if self.siblings is not None else getattr(self.trainer, "callbacks", None)
        for callback in (callbacks.values() if callbacks is not None else ()):
            if callback is self:
                continue
            logs = getattr(callback, "logs", None)
            if logs:
                row.update(logs)
                logs.clear()
        return row

    def log(self, row: dict[str, Any], iteration: int) -> None:
        """Send one row to W&B (rank 0 with an open run; a no-op otherwise)."""
        self.last_logged = {**row, "iteration": iteration}
        if self.run is not None:
            self.run.log(self.last_logged)

    @torch.no_grad()
    def sample_images(self, model: Any, outputs: Any) -> torch.Tensor | None:
        """Images [N, C, H, W] or videos [N, C, T, H, W] in [-1, 1] from outputs["gen_rand"] (called if callable,
        on every rank: with FSDP sampling needs all of them), VAE-decoded when the net has a VAE and the channels
        are not 1 or 3; None if the outputs hold no images (e.g. toy vector data)."""
        generated = outputs.get("gen_rand") if isinstance(outputs, Mapping) else None
        if callable(generated):
            generated = generated()
        return self._as_images(model, generated)

    @torch.no_grad()
    def teacher_images(self, model: Any, outputs: Any, data: Any) -> torch.Tensor | None:
        """With trainer.visualize_teacher: the teacher's multi-step samples (FastGenModel.sample, with the model's
        guidance) from the same noise as the student's grid (`outputs["input_rand"]`) and the batch's condition."""
        if not getattr(getattr(self.config, "trainer", None), "visualize_teacher", False):
            return None
        root = unwrap_model(model)
        teacher = getattr(root, "teacher", None)
        noise = outputs.get("input_rand") if isinstance(outputs, Mapping) else None
        if teacher is None or not isinstance(noise, torch.Tensor) or not hasattr(root, "sample"):
            if not self._warned_no_teacher:
                logger.warning("trainer.visualize_teacher=True, but this method has no teacher network (or its "
                               "outputs no 'input_rand' noise): only student samples are logged")
                self._warned_no_teacher = True
            return None
        n = min(self.num_video_samples if noise.ndim == 5 else self.num_grid_samples, noise.shape[0])
        data = data if isinstance(data, Mapping) else {}
        samples = root.sample(teacher, noise[:n], condition=_first(data.get("condition"), n),
                              neg_condition=_first(data.get("neg_condition"), n))
        return self._as_images(model, samples)

    def _as_images(self, model: Any, generated: Any) -> torch.Tensor | None:
        if not isinstance(generated, torch.Tensor):
            return None
        images = generated[: self.num_video_samples if generated.ndim == 5 else self.num_grid_samples]
        if images.ndim not in (4, 5):
            return None
        if images.shape[1] not in (1, 3):
            net = getattr(unwrap_model(model), "net", None)
            vae = getattr(unwrap_module(net), "vae", None) if isinstance(net, torch.nn.Module) else None
            if vae is not None and hasattr(vae, "decode"):
                images = vae.decode(images)  # a video VAE decodes the whole [N, C, T, h, w] latent
            elif images.ndim == 5 and getattr(unwrap_module(net), "has_preprocessors", False):
                # diffusers-backed video nets (HFNetwork) keep their VAE among the encoders; a latent video has no
                # viewable form otherwise (image grids show latent channels as they are)
                images = unwrap_module(net).decode_latents(images)
            if images.ndim == 5 and images.shape[1] not in (1, 3):
                return None  # latent video without a VAE (e.g. pre-encoded data, encoders off): nothing to show
        return images.detach().float().cpu()

    def _media(self, key: str, images: torch.Tensor, png_name: str) -> dict[str, Any]:
        if not is_rank0():
            return {}
        if images.ndim == 5:
            return self._video_media(key, images, png_name)
        if self.save_png:
            save_image_grid(images, self.run_dir / "samples" / png_name)
        if self.run is None:
            return {}
        import wandb

        return {key: wandb.Image(make_image_grid(images))}

    def _video_media(self, key: str, videos: torch.Tensor, png_name: str) -> dict[str, Any]:
        """Videos [N, C, T, H, W]: the grid video (mp4) under `.../videos` and a contact sheet under `key`."""
        mp4 = encode_mp4(make_video_grid(videos), fps=self.video_fps)
        sheet = make_contact_sheet(videos)
        if self.save_png:
            write_bytes_atomic((self.run_dir / "samples" / png_name).with_suffix(".mp4"), mp4)
            save_contact_sheet(videos, self.run_dir / "samples" / png_name)
        if self.run is None:
            return {}
        import io

        import wandb

        video_key = key.rsplit("/", 1)[0] + "/videos"
        return {key: wandb.Image(sheet), video_key: wandb.Video(io.BytesIO(mp4), format="mp4")}

    # --- state -------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"run_id": self.run_id} if self.run_id else {}

    def load_state_dict(self, state_dict: Any) -> None:
        saved = (state_dict or {}).get("run_id")
        if saved and self.run_id and saved != self.run_id:
            logger.warning(f"checkpoint was written by W&B run {saved}, this run logs to {self.run_id} "
                           f"(from {RUN_ID_FILE}); the curves continue in the new run")
