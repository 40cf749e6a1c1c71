"""Training callbacks. Configs name them by dotted path (e.g. `fastgen.callbacks.ema.EMACallback`), so importing
this package loads only the base classes; each callback module is imported when its config is instantiated."""

from fastgen.callbacks.callback import Callback, CallbackDict

__all__ = ["Callback", "CallbackDict"]
