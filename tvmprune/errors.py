"""Exceptions raised by tvmprune.

Every error a user can cause derives from :class:`TvmpruneError`; the CLI prints its
message (what was wrong and what to do) without a traceback.
"""


class TvmpruneError(Exception):
    """Base class of all user-facing tvmprune errors."""


class UnknownTargetError(TvmpruneError, ValueError):
    """A target name or target JSON that tvmprune cannot use."""


class UnknownModelError(TvmpruneError, ValueError):
    """A model name or ``file.py:factory`` spec that cannot be loaded."""


class InvalidInputShapeError(TvmpruneError, ValueError):
    """An input shape that is malformed or does not fit the model."""


class OutputDirError(TvmpruneError, OSError):
    """An output directory that cannot be created or written."""


class ModuleDirError(TvmpruneError, ValueError):
    """A compiled-module directory (``compile -o DIR``) that is missing files or is damaged."""


class PruneConfigError(TvmpruneError, ValueError):
    """A bad pruning request: pattern string, rate, block size, or a saved pruning config."""


class TraceError(TvmpruneError, RuntimeError):
    """A model that cannot be traced by ``torch.export`` / ``torch.fx``."""


class UnsupportedLayerError(TvmpruneError, ValueError):
    """A layer (op) that a requested conversion or kernel does not support."""


class TuningError(TvmpruneError, RuntimeError):
    """Tuning failed: bad log directory, no tasks, or no candidate could be measured."""


class RPCConnectionError(TvmpruneError, ConnectionError):
    """An RPC tracker or server that cannot be reached or does not answer in time."""


class BundleError(TvmpruneError, RuntimeError):
    """A runtime bundle (``compile --bundle``, ``tvmprune run``) that cannot be built or run."""


class BoardLostError(RPCConnectionError):
    """The RPC board(s) under a key stopped answering during a run (tune, compare, calibrate)."""


class MissingDependencyError(TvmpruneError, ImportError):
    """An optional package (an extra such as ``onnx``) that a request needs is not installed."""


class WeightsFileError(TvmpruneError, ValueError):
    """A weights file (``weights.safetensors``) that is malformed or cannot be read or written."""


class NoTorchReferenceError(TvmpruneError, ValueError):
    """``bench --vs-torch``: the PyTorch model a module directory was compiled from cannot be rebuilt."""
