"""Loading a user's ``path/to/file.py:function`` spec (models, data sets).

Calling a spec imports (runs) ``file.py``: the only outside Python code tvmprune executes.
It runs only files named explicitly, on the command line or in a pruned directory's
``pruning.json`` (which records the file's absolute path, so the same file runs whatever
the working directory); weights are never unpickled into code (safetensors,
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Callable


def is_factory_spec(spec: str) -> bool:
    """Whether ``spec`` is ``path/to/file.py:function`` (rather than a model or data set name)."""
    spec = str(spec).strip()
    head = spec.rpartition(":")[0]
    return bool(head) and (head.endswith(".py") or ".py" in head or os.sep in head or spec.endswith(")"))


def absolute_factory_spec(spec: str) -> str:
    """``file.py:function`` with the file's path made absolute (other specs unchanged)."""
    if not is_factory_spec(spec):
        return spec
    path, _, fn_name = str(spec).strip().rpartition(":")
    return f"{os.path.abspath(path)}:{fn_name}"


def call_factory(spec: str, error: Callable[[str], Exception], what: str) -> Any:
    """Import ``path/to/file.py`` from ``spec`` and return ``function()``'s result.

    Args:
        spec: ``path/to/file.py:function``.
        error: exception class (or factory) raised with a one-line message on any failure.
        what: what the file holds, for messages (``model``, ``data set``).
    """
    path, _, fn_name = spec.rpartition(":")
    if not os.path.isfile(path):
        raise error(f"{what} file {path!r} does not exist (from {spec!r})")
    kind = what.replace(" ", "_")
    mod_name = f"tvmprune_user_{kind}_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    try:
        s = importlib.util.spec_from_file_location(mod_name, path)
        assert s is not None and s.loader is not None
        module = importlib.util.module_from_spec(s)
        sys.modules[mod_name] = module
        s.loader.exec_module(module)
    except Exception as e:
        raise error(f"cannot import {what} file {path!r}: {type(e).__name__}: {e}") from None
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        raise error(f"{path!r} has no callable {fn_name!r}")
    try:
        return fn()
    except Exception as e:
        raise error(f"{spec}() raised {type(e).__name__}: {e}") from None
