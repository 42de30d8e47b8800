"""Pruning pattern strings: ``KIND[@RATE][+OPTION...]``, e.g. ``1x8@0.8+global``.

The same strings are used by every CLI command (``prune``, ``compile --prune``, ``tune``,
``compare``).  The grammar is generic; what each part means belongs to the pattern's
method in :mod:`.registry`:

* ``KIND`` names the method; a method may read a parameter from it (``1x8``: the 1xN
  method with block size N=8);
* ``@RATE`` is the fraction of units (weights, blocks, filters) removed, in [0, 1);
  required unless the method takes no rate (``dense``);
* ``+OPTION`` are the method's own options (``+norearrange``, ``+global``) and those of
  modifiers registered for the kind (e.g. ``+guided``); anything else is an error listing
  the valid ones.  Options of one group exclude each other; a group's default option may
  be written but is left out of the label.

:attr:`PrunePattern.label` is canonical: ``parse_pattern(p.label) == p`` for every pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import PruneConfigError
from .criteria import BLOCK_SIZES

__all__ = ["BLOCK_SIZES", "Option", "PrunePattern", "parse_pattern", "parse_patterns", "format_rate"]


@dataclass(frozen=True)
class Option:
    """A ``+option`` a method (or a modifier) accepts.

    Attributes:
        name: the token as written after ``+`` (for valued options: a display name, e.g. ``1xN``).
        help: one line for error messages and ``--help``.
        regex: full-match regular expression for valued options (e.g. ``1x\\d+``); None: ``name`` only.
        group: options of the same group exclude each other (e.g. ``objective``).
        default: this option is the group's default: implied when none is given, not in labels.
    """

    name: str
    help: str = ""
    regex: str | None = None
    group: str | None = None
    default: bool = False

    def matches(self, token: str) -> bool:
        return bool(re.fullmatch(self.regex, token)) if self.regex else token == self.name

    def describe(self) -> str:
        return f"+{self.name}" + (f" ({self.help})" if self.help else "")


def format_rate(rate: float) -> str:
    """Shortest text that parses back to exactly ``rate`` (``0.8``, ``0.125``, ``1e-05``)."""
    short = f"{rate:g}"
    return short if float(short) == rate else repr(float(rate))


@dataclass(frozen=True)
class PrunePattern:
    """A parsed pruning request.

    Attributes:
        kind: the method's registry name: ``dense``, ``unstructured``, ``1xN``, ``filter``, ...
        rate: fraction of weights / blocks / filters removed, in [0, 1).
        n: block height (output channels per block) for block patterns; 1 otherwise.
        options: the ``+options`` in canonical order (method options, then modifiers),
            without group defaults.

    Construction validates everything through the kind's method (unknown kind, rate,
    block size, options), raising :class:`PruneConfigError`.
    """

    kind: str
    rate: float = 0.0
    n: int = 1
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from .registry import canonical_options, get_method

        method = get_method(self.kind)
        if isinstance(self.rate, (int, float)) and not isinstance(self.rate, bool):
            object.__setattr__(self, "rate", float(self.rate))
        opts = self.options.split("+") if isinstance(self.options, str) else self.options
        object.__setattr__(self, "options", canonical_options(self.kind, opts))
        method.validate(self)

    # --- options -----------------------------------------------------------------------------
    def has(self, option: str) -> bool:
        return option in self.options

    def choice(self, group: str) -> str | None:
        """The chosen option of ``group`` (or the group's default; None if the kind has no such group)."""
        from .registry import allowed_options

        specs = [o for o in allowed_options(self.kind) if o.group == group]
        for tok in self.options:
            if any(o.matches(tok) for o in specs):
                return tok
        return next((o.name for o in specs if o.default), None)

    def with_options(self, *add: str, remove: tuple[str, ...] = ()) -> "PrunePattern":
        """A copy with options added / removed (validated like a new pattern)."""
        opts = [o for o in self.options if o not in remove] + list(add)
        return PrunePattern(self.kind, self.rate, self.n, tuple(opts))

    @property
    def global_(self) -> bool:
        """Rank units across all layers instead of per layer (``+global``)."""
        return "global" in self.options

    @property
    def rearrange(self) -> bool:
        """1xN: permute filters by L1 before pruning (Lin et al. 2021); off with ``+norearrange``."""
        return "norearrange" not in self.options

    @property
    def label(self) -> str:
        """Canonical string, e.g. ``1x8@0.8+global``; ``parse_pattern(label) == self``."""
        from .registry import get_method

        return get_method(self.kind).label(self)

    def __str__(self) -> str:
        return self.label


_GRAMMAR = re.compile(r"^(?P<head>[a-z0-9_]+)(?:@(?P<rate>[^+@]*))?(?P<opts>(?:\+[a-z0-9_.]+)*)$")


def _syntax_help() -> str:
    from .registry import all_methods

    forms = ", ".join(m.syntax for m in all_methods())
    return f"use {forms}, e.g. 1x8@0.8, optionally followed by +OPTION (e.g. +global)"


def parse_pattern(text: str) -> PrunePattern:
    """Parse a pattern string such as ``1x8@0.8`` or ``unstructured@0.9+global``.

    Raises:
        PruneConfigError: unknown kind / option (listing the valid ones), bad or missing rate.
    """
    from .registry import match_head

    s = str(text).strip().lower().replace(" ", "")
    m = _GRAMMAR.match(s)
    found = match_head(m.group("head")) if m else None
    if found is None:
        raise PruneConfigError(f"cannot parse pruning pattern {text!r}; {_syntax_help()}")
    method, head = found
    rate = m.group("rate")
    if not method.takes_rate:
        if rate is not None and (not _is_number(rate) or float(rate) != 0.0):
            raise PruneConfigError(f"{method.kind!r} takes no rate (got {text!r})")
        r = 0.0
    elif rate is None:
        raise PruneConfigError(f"pattern {text!r} needs a rate, e.g. {m.group('head')}@{method.default_rate:g}")
    elif not _is_number(rate):
        raise PruneConfigError(f"bad rate {rate!r} in pattern {text!r}; give a number in [0, 1) such as 0.8")
    else:
        r = float(rate)
    opts = tuple(o for o in m.group("opts").split("+") if o)
    try:
        return PrunePattern(method.kind, r, method.n_from_head(head), opts)
    except PruneConfigError as e:
        raise PruneConfigError(f"pattern {text!r}: {e}") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def parse_patterns(text: str) -> list[PrunePattern]:
    """Parse a comma-separated list, e.g. ``dense,1x8@0.8,filter@0.5``."""
    items = [p for p in str(text).split(",") if p.strip()]
    if not items:
        raise PruneConfigError("empty pattern list; give e.g. dense,1x8@0.8")
    return [parse_pattern(p) for p in items]
