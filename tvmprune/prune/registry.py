"""The registry of pruning methods and pattern modifiers.

A *method* owns one pattern kind (``dense``, ``unstructured``, ``1xN``, ``filter``, ...):
how its pattern string reads (head, rate, options), what it needs (training data, the
compile target), how it prunes (:meth:`PruningMethod.apply`) and how a saved model is
rebuilt (:meth:`PruningMethod.restore`).  A *modifier* is an option that several sparse
kinds accept (``+guided``) and that wraps their ``apply``.

Adding a method is one file defining a :class:`PruningMethod` subclass plus one line in
:data:`METHODS` (kind -> ``module:Class`` under :mod:`tvmprune.prune`); a modifier is one
file plus one line in :data:`MODIFIERS`.  Entries are imported on first use.
:func:`register_method` / :func:`register_modifier` add one at run time (plugins, tests).
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Iterable

from torch import nn

from ..errors import PruneConfigError
from .pattern import Option
from .selection import check_rate

if TYPE_CHECKING:
    from .context import LoadContext, PruneContext
    from .graph import DependencyGraph
    from .pattern import PrunePattern
    from .result import PruneResult

__all__ = ["METHODS", "MODIFIERS", "PruningMethod", "PatternModifier", "GLOBAL", "get_method", "all_methods",
           "modifiers_for", "allowed_options", "canonical_options", "match_head", "register_method",
           "register_modifier", "resolve_method"]

# kind -> "module:Class" (module relative to tvmprune.prune); the order is the order of --help
METHODS: dict[str, str] = {
    "dense": "dense:DenseMethod",
    "unstructured": "unstructured:UnstructuredMethod",
    "1xN": "block:BlockMethod",
    "filter": "filter:FilterMethod",
    "interspace": "interspace.method:InterspaceMethod",
    "gator": "gator.method:GatorMethod",
}
# option name -> "module:Class"
MODIFIERS: dict[str, str] = {
    "guided": "guided.prune:GuidedModifier",
}

GLOBAL = Option("global", "rank units across all layers, at most max_layer_rate (0.95) of one layer")


class PruningMethod:
    """One pattern kind.  Subclasses set the class attributes and implement :meth:`apply`.

    Class attributes:
        kind: registry name, the pattern's ``kind`` (``1xN``).
        head: regex the text before ``@`` must match (default: the kind); its groups are
            handed to :meth:`n_from_head`.
        syntax: how to write it, for help and errors (``1xN@RATE``).
        options: the ``+options`` it accepts (modifiers add theirs).
        takes_rate: the pattern has ``@RATE``; ``default_rate`` for CLI shorthands.
        uses_n: the pattern has a block size ``n`` (else ``n`` must be 1).
        needs_data / needs_target: :func:`prune_model` must be given training data / a target.
        sparse: prunes by zeroing weights of the original architecture (sparse kernels
            apply; reports show sparsity); False for dense and for physically smaller models.
        aliases: extra bare names the CLI accepts for ``--pattern`` (``block`` for 1xN).
        fine_tunes: the method trains and fine-tunes its result itself (gator: gates, then the
            sliced model); ``compare`` adds no fine-tuning of its own on top.
    """

    kind: str = ""
    head: str | None = None
    syntax: str = ""
    options: tuple[Option, ...] = ()
    takes_rate: bool = True
    default_rate: float = 0.8
    uses_n: bool = False
    needs_data: bool = False
    needs_target: bool = False
    sparse: bool = True
    aliases: tuple[str, ...] = ()
    fine_tunes: bool = False

    # --- pattern strings ---------------------------------------------------------------------
    def head_regex(self) -> str:
        return self.head if self.head is not None else re.escape(self.kind.lower())

    def n_from_head(self, head: re.Match) -> int:
        """Block size encoded in the head (``1x8`` -> 8); 1 for kinds without one."""
        return 1

    def head_label(self, pattern: "PrunePattern") -> str:
        return self.kind

    def label(self, pattern: "PrunePattern") -> str:
        """``head@rate+options``; must parse back to ``pattern``."""
        from .pattern import format_rate

        s = self.head_label(pattern)
        if self.takes_rate:
            s += "@" + format_rate(pattern.rate)
        return s + "".join("+" + o for o in pattern.options)

    def validate(self, pattern: "PrunePattern") -> None:
        """Raise :class:`PruneConfigError` for a rate / block size this method cannot use."""
        if self.takes_rate:
            check_rate(pattern.rate, "pruning rate")
        elif pattern.rate != 0.0:
            raise PruneConfigError(f"{self.kind!r} takes no rate, got {pattern.rate!r}")
        if not self.uses_n and pattern.n != 1:
            raise PruneConfigError(f"{self.kind!r} patterns have no block size, got n={pattern.n!r}")

    def check_context(self, pattern: "PrunePattern", ctx: "PruneContext") -> None:
        """Fail before any work when the request lacks what this method needs."""
        if self.needs_data and ctx.data is None:
            raise PruneConfigError(f"pattern {pattern.label} needs training data (give data=... to prune_model, "
                                   "or a data set on the command line)")
        if self.needs_target and ctx.target is None:
            raise PruneConfigError(f"pattern {pattern.label} needs the compile target (give target=... to "
                                   "prune_model, or --target on the command line)")

    # --- pruning -----------------------------------------------------------------------------
    def apply(self, model: nn.Module, pattern: "PrunePattern", graph: "DependencyGraph",
              ctx: "PruneContext") -> "PruneResult":
        """Prune ``model`` (a private eval-mode copy: modify or replace it) and report.

        Returns a :class:`~tvmprune.prune.result.PruneResult` whose ``config`` holds this
        method's JSON-serialisable entries (masks, kept channels, ...); :func:`prune_model`
        adds the common ones (pattern, kind, rate, coupled groups).
        """
        raise NotImplementedError(f"pruning method {self.kind!r} does not implement apply()")

    def restore(self, model: nn.Module, config: dict, ctx: "LoadContext") -> nn.Module:
        """Reshape the freshly built dense ``model`` so the saved ``weights.safetensors`` fits it.

        The default does nothing (masked methods keep the architecture; their zeros are in
        the weights).  Methods that change modules (fewer channels, new module types) undo
        that here from their ``config`` entries.
        """
        return model


class PatternModifier:
    """An option several kinds accept (``+guided``) that wraps their method's ``apply``.

    Class attributes: ``option`` (the :class:`Option`), ``applies_to`` (kinds), and
    ``needs_data`` / ``needs_target`` like a method.  :meth:`apply` typically computes
    something (per-layer rates) and calls ``method.apply`` with a changed context.
    """

    option: Option = Option("")
    applies_to: tuple[str, ...] = ()
    needs_data: bool = False
    needs_target: bool = False

    def apply(self, method: PruningMethod, model: nn.Module, pattern: "PrunePattern", graph: "DependencyGraph",
              ctx: "PruneContext") -> "PruneResult":
        raise NotImplementedError(f"modifier +{self.option.name} does not implement apply()")


class _Modified:
    """``method`` with ``modifier`` wrapped around its ``apply``; everything else delegated."""

    def __init__(self, method: PruningMethod, modifier: PatternModifier) -> None:
        self.method, self.modifier = method, modifier
        self.needs_data = method.needs_data or modifier.needs_data
        self.needs_target = method.needs_target or modifier.needs_target

    def __getattr__(self, name: str):
        return getattr(self.method, name)

    check_context = PruningMethod.check_context

    def apply(self, model, pattern, graph, ctx):
        return self.modifier.apply(self.method, model, pattern, graph, ctx)


_methods: dict[str, PruningMethod] = {}
_modifiers: dict[str, PatternModifier] = {}


def _load(entry: str):
    module, cls = entry.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)()


def _ensure_loaded() -> None:
    for kind, entry in METHODS.items():
        if kind not in _methods:
            register_method(_load(entry))
    for name, entry in MODIFIERS.items():
        if name not in _modifiers:
            register_modifier(_load(entry))


def register_method(method: PruningMethod) -> PruningMethod:
    if not method.kind:
        raise PruneConfigError(f"{type(method).__name__} has no kind")
    _methods[method.kind] = method
    return method


def register_modifier(modifier: PatternModifier) -> PatternModifier:
    _modifiers[modifier.option.name] = modifier
    return modifier


def all_methods() -> list[PruningMethod]:
    _ensure_loaded()
    return list(_methods.values())


def get_method(kind: str) -> PruningMethod:
    """The method of ``kind``; :class:`PruneConfigError` listing the known kinds otherwise."""
    _ensure_loaded()
    if kind not in _methods:
        raise PruneConfigError(f"unknown pruning pattern kind {kind!r}; known: {', '.join(_methods)}")
    return _methods[kind]


def modifiers_for(kind: str) -> list[PatternModifier]:
    _ensure_loaded()
    return [m for m in _modifiers.values() if kind in m.applies_to]


def allowed_options(kind: str) -> list[Option]:
    """The method's options followed by those of the modifiers that apply to ``kind``."""
    return list(get_method(kind).options) + [m.option for m in modifiers_for(kind)]


def canonical_options(kind: str, tokens: Iterable[str]) -> tuple[str, ...]:
    """Validate ``tokens`` for ``kind``; return them deduplicated, in declaration order, without defaults."""
    specs = allowed_options(kind)
    chosen: dict[str, tuple[int, str]] = {}
    by_group: dict[str, str] = {}
    for tok in (str(t).strip().lower() for t in tokens):
        if not tok:
            continue
        idx = next((i for i, o in enumerate(specs) if o.matches(tok)), None)
        if idx is None:
            valid = ", ".join(o.describe() for o in specs) or "none"
            raise PruneConfigError(f"unknown option +{tok} for {kind} patterns; valid options: {valid}")
        spec = specs[idx]
        if spec.group is not None:
            if by_group.setdefault(spec.group, tok) != tok:
                raise PruneConfigError(f"options +{by_group[spec.group]} and +{tok} exclude each other "
                                       f"(both choose the {spec.group})")
            if spec.default:
                continue
        chosen[tok] = (idx, tok)
    return tuple(tok for _, tok in sorted(chosen.values()))


def match_head(head: str) -> tuple[PruningMethod, re.Match] | None:
    """The method whose head regex matches ``head`` (the text before ``@``), with the match."""
    for method in all_methods():
        m = re.fullmatch(method.head_regex(), head)
        if m is not None:
            return method, m
    return None


def resolve_method(pattern: "PrunePattern") -> PruningMethod:
    """The pattern's method, wrapped by the modifiers its options name (first option outermost)."""
    method = get_method(pattern.kind)
    mods = {m.option.name: m for m in modifiers_for(pattern.kind)}
    for tok in reversed(pattern.options):
        if tok in mods:
            method = _Modified(method, mods[tok])
    return method
