"""The build stage: rewrite Relax to call the scheduled kernels, ``tvm.compile`` for the target,
and the :class:`CompiledModel` record that runs on this machine or exports a module directory."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..errors import TvmpruneError
from ..plan.layer import LayerPlan
from ..schedule.schedule import ScheduledModel
from ..target import NamedTarget
from .module_dir import META_FILE, MODULE_FILE, ensure_writable_dir, first_output
from .rewrite import rewrite_to_kernels


@dataclass
class CompiledModel:
    """A compiled model, ready to run (on the host) or export.

    Attributes:
        executable: the ``tvm.compile`` result (Relax VM executable).
        target: where it runs.
        plans: per conv / linear layer: chosen format, reason, kernel.
        input_shape: NCHW input shape.
        meta: what goes to ``meta.json``.
        relax_mod: the Relax module that was compiled.
        op_schedules: the rule applied to each non-kernel PrimFunc (``schedule.ops.ScheduleRecord``).
    """

    executable: Any
    target: NamedTarget
    plans: list[LayerPlan]
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    relax_mod: Any = None
    op_schedules: list[Any] = field(default_factory=list)  # schedule.ops.ScheduleRecord per non-kernel op

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run on this machine (host targets only). ``x`` is NCHW float32; returns the first output."""
        import tvm
        from tvm import relax

        if not self.target.runs_on_host:
            raise TvmpruneError(f"a {self.target.name} module cannot run on this {os.uname().machine} machine")
        vm = relax.VirtualMachine(self.executable, tvm.cpu())
        return first_output(vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype="float32"))))

    def export(self, out_dir: "str | os.PathLike[str]") -> Path:
        """Write ``model.so`` (cross-compiled for ARM targets) and ``meta.json`` into ``out_dir``."""
        out = ensure_writable_dir(out_dir)
        so = out / MODULE_FILE
        kwargs = {}
        if self.target.cross_compiler:
            from tvm.support import cc

            kwargs["fcompile"] = cc.cross_compiler(self.target.cross_compiler)
        try:
            self.executable.export_library(str(so), **kwargs)
        except Exception as e:
            hint = ""
            if self.target.cross_compiler:
                hint = (f" (is the cross compiler {self.target.cross_compiler!r} installed? "
                        "scripts/install_toolchains.sh installs it)")
            raise TvmpruneError(f"linking {so} failed{hint}: {str(e).splitlines()[0]}") from None
        with open(out / META_FILE, "w", encoding="utf-8") as f:
            json.dump(self.meta, f, indent=2)
        return out


def build_meta(scheduled: ScheduledModel, model_spec: str, pattern: str,
               extra_meta: dict[str, Any] | None) -> dict[str, Any]:
    """What goes to ``meta.json``."""
    import tvm

    planned = scheduled.planned
    meta = {
        "tvmprune_version": __version__,
        "tvm_version": tvm.__version__,
        "model": model_spec,
        "pattern": pattern,
        "input_shape": list(planned.lowered.input_shape),
        "input_dtype": "float32",
        "input_layout": "NCHW",
        "target": planned.target.to_json(),
        "tuned_kernels": scheduled.tuned,
        "layers": [p.to_json() for p in planned.plans],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    meta.update(extra_meta or {})
    return meta


def build(scheduled: ScheduledModel, model_spec: str = "", pattern: str = "dense",
          extra_meta: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> CompiledModel:
    """Compile a scheduled model for its target (``model_spec``, ``pattern``, ``extra_meta``: for ``meta.json``)."""
    import tvm

    planned = scheduled.planned
    t = planned.target
    mod = rewrite_to_kernels(scheduled)
    # The generic CPU schedule of the remaining (non-kernel) PrimFuncs after legalisation hooks in here.
    from ..schedule.ops import fuse_and_schedule

    kernel_names = [p.kernel.name for p in planned.plans if p.kernel is not None]
    mod, op_schedules = fuse_and_schedule(mod, t, kernel_names)
    if log:
        log(f"scheduled {len(op_schedules)} fused non-kernel ops")
    t0 = time.time()
    try:
        ex = tvm.compile(mod, target=t.tvm_target)
    except Exception as e:
        raise TvmpruneError(f"TVM could not build the model for {t.name}: {str(e).splitlines()[-1]}") from None
    if log:
        log(f"built for {t.name} ({time.time() - t0:.1f} s)")
    return CompiledModel(executable=ex, target=t, plans=planned.plans, input_shape=planned.lowered.input_shape,
                         meta=build_meta(scheduled, model_spec, pattern, extra_meta), relax_mod=mod,
                         op_schedules=op_schedules)
