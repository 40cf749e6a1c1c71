"""Distillation and training methods. Classes are imported on first access so `import fastgen.methods` stays cheap.

`from fastgen.methods import DMD2Model` works; a method whose module is not installed fails with an ImportError
naming the module that provides it.
"""

import importlib

_EXPORTS = {
    "FastGenModel": "fastgen.methods.model",
    "SFTModel": "fastgen.methods.fine_tuning.sft",
    "CausalSFTModel": "fastgen.methods.causal.sft",
    "KDModel": "fastgen.methods.knowledge_distillation.kd",
    "CausalKDModel": "fastgen.methods.causal.kd",
    "CMModel": "fastgen.methods.consistency_model.cm",
    "SCMModel": "fastgen.methods.consistency_model.scm",
    "TCMModel": "fastgen.methods.consistency_model.tcm",
    "MeanFlowModel": "fastgen.methods.consistency_model.mean_flow",
    "DMD2Model": "fastgen.methods.distribution_matching.dmd2",
    "FdistillModel": "fastgen.methods.distribution_matching.f_distill",
    "LADDModel": "fastgen.methods.distribution_matching.ladd",
    "SiDModel": "fastgen.methods.distribution_matching.sid",
    "CausVidModel": "fastgen.methods.causal.causvid",
    "SelfForcingModel": "fastgen.methods.causal.self_forcing",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fastgen.methods' has no attribute '{name}'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ImportError(f"fastgen.methods.{name} is provided by '{module_name}', which is not available") from e
        raise
    return getattr(module, name)
