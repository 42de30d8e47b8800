"""tvmprune's cache directory: ``$TVMPRUNE_CACHE_DIR`` or ``~/.cache/tvmprune``.

Holds what is measured or built once per machine and target: calibrated perf-model parameters
(``perf_model/``), measured kernel times (``kernel_times/``), gator latency tables (``latency/``),
cross-built board runtimes (``runtime/``).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache root, or the folder ``parts`` below it (not created)."""
    root = Path(os.environ.get("TVMPRUNE_CACHE_DIR") or Path.home() / ".cache" / "tvmprune")
    return root.joinpath(*parts)


def target_key(target: object) -> str:
    """``<target name>-<hash of its TVM target JSON>``: one folder per distinct target
    (``target`` is a :class:`tvmprune.target.NamedTarget`)."""
    import hashlib
    import json
    import re

    digest = hashlib.sha1(json.dumps(target.target_dict, sort_keys=True).encode()).hexdigest()[:10]  # type: ignore[attr-defined]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', target.name)}-{digest}"  # type: ignore[attr-defined]
