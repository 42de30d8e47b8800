"""Compile a (pruned) PyTorch model into a deployable TVM module, export it, load it back.

Pipeline: :func:`frontend.importer.import_model` (torch.export -> Relax, BN folded, NHWC)
-> :func:`frontend.lowering.lower_to_kernels` (each conv / linear becomes a dense or
sparse kernel chosen by the planner) -> each kernel gets its schedule (tuned record if a
database has one, else the kernel's default schedule) -> ``tvm.compile`` for the target
-> ``export_library`` (cross-compiled for ARM targets).

An exported module directory holds:

* ``model.so``  -- the Relax VM executable with the weights embedded;
* ``meta.json`` -- model, input shape / dtype, target, versions, per-layer formats.

It loads in a fresh process with nothing but TVM: ``tvm.runtime.load_module`` and
``relax.VirtualMachine`` (see :func:`load_compiled`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .errors import ModuleDirError, OutputDirError, TvmpruneError
from .frontend.lowering import LayerPlan, Planner, lower_to_kernels
from .kernels.base import KernelInstance
from .target import NamedTarget, get_target

MODULE_FILE = "model.so"
META_FILE = "meta.json"

# Returns a scheduled PrimFunc for a kernel, or None to use its default schedule.
ScheduleSource = Callable[[KernelInstance, NamedTarget], Any]


@dataclass
class CompiledModel:
    """A compiled model, ready to run (on the host) or export.

    Attributes:
        executable: the ``tvm.compile`` result (Relax VM executable).
        target: where it runs.
        plans: per conv / linear layer: chosen format, reason, kernel.
        input_shape: NCHW input shape.
        meta: what goes to ``meta.json``.
    """

    executable: Any
    target: NamedTarget
    plans: list[LayerPlan]
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    relax_mod: Any = None
    op_schedules: list[Any] = field(default_factory=list)  # tvmprune.schedule.ScheduleRecord per non-kernel op

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run on this machine (host targets only). ``x`` is NCHW float32; returns the first output."""
        import tvm
        from tvm import relax

        if not self.target.runs_on_host:
            raise TvmpruneError(f"a {self.target.name} module cannot run on this {os.uname().machine} machine")
        vm = relax.VirtualMachine(self.executable, tvm.cpu())
        return _first_output(vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype="float32"))))

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


def ensure_writable_dir(path: "str | os.PathLike[str]") -> Path:
    """Create ``path`` if needed and check a file can be written there.

    Raises:
        OutputDirError: it exists as a file, or it cannot be created or written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputDirError(f"output path {p} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".tvmprune_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputDirError(f"output directory {p} is not writable ({e.strerror}); choose another with -o") from None
    return p


def _first_output(out: Any) -> np.ndarray:
    if hasattr(out, "numpy"):
        return out.numpy()
    return out[0].numpy()


def compile_model(
    model: Any,
    input_shape: tuple[int, ...],
    target: "NamedTarget | str",
    planner: Planner | None = None,
    schedule_source: ScheduleSource | None = None,
    model_spec: str = "",
    pattern: str = "dense",
    extra_meta: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> CompiledModel:
    """Compile a PyTorch model (pruned or not) for ``target``.

    Args:
        model: ``torch.nn.Module`` (eval mode is set).
        input_shape: NCHW input shape.
        target: named target or :class:`NamedTarget`.
        planner: per-layer format choice (default: the roofline model,
            :func:`tvmprune.perf_model.choose_format`).
        schedule_source: gives a tuned schedule for a kernel (from a tuning database), or
            None for the default schedule.
        model_spec, pattern, extra_meta: recorded in ``meta.json``.
        log: progress messages (e.g. ``print``).
    """
    import tvm

    from .frontend.importer import import_model
    from .perf_model import choose_format

    t = get_target(target)
    say = log or (lambda s: None)
    planner = planner or choose_format
    t0 = time.time()
    imported = import_model(model, input_shape)
    say(f"imported model into Relax ({time.time() - t0:.1f} s, BN folded: {imported.bn_folded})")
    t0 = time.time()
    mod, plans = lower_to_kernels(imported.mod, t, planner, imported.layer_names)
    tuned = 0
    for p in plans:
        if p.kernel is None:
            continue
        func = schedule_source(p.kernel, t) if schedule_source else None
        if func is not None:
            tuned += 1
        else:
            func = p.kernel.scheduled()
        mod[mod.get_global_var(p.kernel.name)] = func.with_attr("global_symbol", p.kernel.name)
    say(f"lowered {len(plans)} conv/linear layers to kernels ({time.time() - t0:.1f} s, {tuned} tuned schedules)")
    # --- tvmprune.schedule: legalise + fuse the remaining Relax ops and give each PrimFunc a CPU schedule ---
    from .schedule import fuse_and_schedule

    mod, op_schedules = fuse_and_schedule(mod, t, [p.kernel.name for p in plans if p.kernel is not None])
    say(f"scheduled {len(op_schedules)} fused non-kernel ops")
    # --- end tvmprune.schedule ---
    t0 = time.time()
    try:
        ex = tvm.compile(mod, target=t.tvm_target)
    except Exception as e:
        raise TvmpruneError(f"TVM could not build the model for {t.name}: {str(e).splitlines()[-1]}") from None
    say(f"built for {t.name} ({time.time() - t0:.1f} s)")
    meta = {
        "tvmprune_version": __version__,
        "tvm_version": tvm.__version__,
        "model": model_spec,
        "pattern": pattern,
        "input_shape": list(input_shape),
        "input_dtype": "float32",
        "input_layout": "NCHW",
        "target": t.to_json(),
        "tuned_kernels": tuned,
        "layers": [p.to_json() for p in plans],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    meta.update(extra_meta or {})
    return CompiledModel(executable=ex, target=t, plans=plans, input_shape=tuple(input_shape), meta=meta,
                         relax_mod=mod, op_schedules=op_schedules)


@dataclass
class LoadedModule:
    """A module directory loaded for running on this machine."""

    vm: Any
    meta: dict[str, Any]
    device: Any

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run on an NCHW float32 array; returns the first output as numpy."""
        import tvm

        return _first_output(self.vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype="float32"))))


def read_meta(module_dir: "str | os.PathLike[str]") -> dict[str, Any]:
    """Read ``meta.json`` of a module directory (raises ModuleDirError with what is missing)."""
    d = Path(module_dir)
    if not d.is_dir():
        raise ModuleDirError(f"{d} is not a directory; give the -o directory of `tvmprune compile`")
    mp = d / META_FILE
    if not mp.is_file():
        raise ModuleDirError(f"{d} has no {META_FILE}: not a `tvmprune compile` output directory")
    try:
        return json.loads(mp.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModuleDirError(f"{mp} is damaged (not JSON: {e}); compile again") from None


def load_compiled(module_dir: "str | os.PathLike[str]") -> LoadedModule:
    """Load ``model.so`` + ``meta.json`` from ``module_dir`` for running on this machine."""
    import tvm
    from tvm import relax

    from .target import host_arch

    meta = read_meta(module_dir)
    arch = meta.get("target", {}).get("arch", "x86_64")
    if arch != host_arch():
        raise ModuleDirError(
            f"{module_dir} holds a module for {arch} ({meta['target'].get('name')}); this machine is {host_arch()}. "
            "Copy it to the board, or run `tvmprune bench` there."
        )
    so = Path(module_dir) / MODULE_FILE
    if not so.is_file():
        raise ModuleDirError(f"{module_dir} has no {MODULE_FILE}; compile again")
    try:
        lib = tvm.runtime.load_module(str(so))
    except Exception as e:
        raise ModuleDirError(f"cannot load {so}: {str(e).splitlines()[0]}") from None
    dev = tvm.cpu()
    return LoadedModule(vm=relax.VirtualMachine(lib, dev), meta=meta, device=dev)
