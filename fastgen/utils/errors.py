"""Error types shared by every layer (utils imports nothing of ours above it, so networks and methods can raise them
and the CLI can map them without importing either)."""


class BadInputError(ValueError):
    """The user's input cannot work (e.g. a causal method given a non-causal network, a KV cache larger than the
    memory): found past config resolution, reported like a config error (one line, exit code 2)."""
