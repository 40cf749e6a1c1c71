"""Named callback sets: each is a dict `name -> LazyCall`, merged into `config.trainer.callbacks`.

Experiments combine them (`config.trainer.callbacks.update(EMA_CONST_CALLBACKS)`) and drop entries with
`~trainer.callbacks.<name>` on the command line. Assigning a set to a config copies it (see config.py), so editing
a run's callbacks never changes these module-level sets.
"""

from fastgen.utils import LazyCall as L

_CB = "fastgen.callbacks"

CTSchedule_CALLBACK = {
    "ct_schedule": L(f"{_CB}.ct_schedule.CTScheduleCallback")(q=2.0, ratio_limit=0.999, kimg_per_stage=12500),
}
EMA_CALLBACK = {
    "ema": L(f"{_CB}.ema.EMACallback")(
        type="constant", beta=0.9999, gamma=16.97, ema_halflife_kimg=500, ema_rampup_ratio=0.05, start_iter=0,
        ema_name="ema",
    ),
}
EMA_CONST_CALLBACKS = {
    f"ema_{tag}": L(f"{_CB}.ema.EMACallback")(type="constant", beta=beta, ema_name=f"ema_{tag}")
    for tag, beta in (("9999", 0.9999), ("99995", 0.99995), ("9996", 0.9996))
}
EMA_POWER_CALLBACKS = {
    f"ema_{tag}": L(f"{_CB}.ema.EMACallback")(type="power", gamma=gamma, ema_name=f"ema_{tag}")
    for tag, gamma in (("1", 96.99), ("5", 16.97), ("10", 6.94))
}
ForcedWeightNorm_CALLBACK = {
    "forced_weight_norm": L(f"{_CB}.forced_weight_norm.ForcedWeightNormCallback")(),
}
GradClip_CALLBACK = {
    "grad_clip": L(f"{_CB}.grad_clip.GradClipCallback")(grad_norm=10.0, model_key="all"),
}
# the reference's `gpu_stats` name, served by MemStatsCallback (works on CPU and GPU)
GPUStats_CALLBACK = {
    "gpu_stats": L(f"{_CB}.mem_stats.MemStatsCallback")(every_n=100),
}
MemStats_CALLBACK = GPUStats_CALLBACK
ParamCount_CALLBACK = {
    "param_count": L(f"{_CB}.param_count.ParamCountCallback")(),
}
TrainProfiler_CALLBACK = {
    "train_profiler": L(f"{_CB}.train_profiler.TrainProfilerCallback")(every_n=100),
}
WANDB_CALLBACK = {
    "wandb": L(f"{_CB}.wandb.WandbCallback")(sample_logging_iter=None),
}

# the set every method config starts from
STANDARD_CALLBACKS = {
    **GradClip_CALLBACK,
    **GPUStats_CALLBACK,
    **TrainProfiler_CALLBACK,
    **ParamCount_CALLBACK,
    **WANDB_CALLBACK,
}
