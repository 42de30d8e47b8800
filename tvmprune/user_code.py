"""Loading a user's ``path/to/file.py:function`` spec (models, data sets)."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Callable


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
