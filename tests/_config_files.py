"""The shipped config files, for parametrised tests."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ["sft", "kd", "cm", "scm", "tcm", "mean_flow", "dmd2", "f_distill", "ladd", "causvid", "self_forcing",
           "sft_causal", "kd_causal", "sid"]
# every shipped experiment config, whichever family (EDM, EDM2, Toy, ...)
EXPERIMENT_FILES = sorted(str(p.relative_to(REPO)) for p in (REPO / "fastgen/configs/experiments").glob("*/config_*.py"))
METHOD_FILES = [f"fastgen/configs/methods/config_{m}.py" for m in METHODS]
