"""Filter pruning through channel shuffles: permutation-only regions of a traced model.

ShuffleNet's trunk goes through ``chunk`` / ``torch.cat`` / channel shuffle (``view(N, g, C/g, H, W)``,
``transpose``, ``view``).  :mod:`.channel_trace` freezes the spaces a channel-splitting reshape (or a
split inside a space) touches: where a trunk channel ends up depends on the trunk's width, so it
cannot be described by offsets alone.  A :class:`ShuffleRegion` follows them exactly instead, by
running the traced graph on *labels*: every conv of the region's *producers* (the modules whose
output groups the reshape froze) emits, for each output channel, a distinct positive number, constant
over a 1x1 spatial extent; BatchNorms, depthwise convs and activations pass the labels on, the
shuffle / split / concat ops run for real.  The labels at the input of each *reader* (the members of
the frozen groups that are indexed by the channels: consumer columns, BatchNorm / depthwise rows)
say which producer channel every reader position holds.

Run once at the model's widths and once with each producer at its pruned width, every producer
channel gets a *destiny* (the readers it reaches).  A pruned producer keeps, for each destiny, as
many channels as the pruned structure routes there (the highest-scoring ones), so the smaller
model computes what the original does with the removed filters zeroed.  Producers are re-indexed
by their kept rows (in the order the pruned structure wants), readers by the positions of the
kept channels.  A region whose labels reach the model output, or any op that mixes them, or whose
pruned structure routes more channels to a destiny than it has, stays dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from ..errors import PruneConfigError
from .channel_index import is_depthwise, reindex_module
from .channel_trace import _BINARY_FUNCS, _BINARY_METHODS

__all__ = ["ShuffleRegion", "RegionInfeasible", "find_regions"]

_BITS = 20  # label = producer code << _BITS | (channel + 1); float64 holds it exactly
_REGION_REASONS = ("passes through unsupported op reshape", "split inside a channel group")
_PASS_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.Identity, nn.Dropout)


class RegionInfeasible(Exception):
    """The label pass shows the region cannot be pruned exactly; ``producer``: the one that failed, if known."""

    def __init__(self, msg: str, producer: str | None = None) -> None:
        super().__init__(msg)
        self.producer = producer


def _carries_labels(args) -> bool:
    """Whether any tensor in the (nested) ``args`` holds a producer's label."""
    tensors: list[torch.Tensor] = []
    fx.node.map_aggregate(args, lambda a: tensors.append(a) if isinstance(a, torch.Tensor) else None)
    return any(bool(((t.long() >> _BITS) > 0).any()) for t in tensors)


class _LabelPass(fx.Interpreter):
    """Run ``gm`` on 1x1 label tensors; record the labels at the input of ``readers``.

    ``widths``: output channels per producer (others keep their traced width).
    """

    def __init__(self, gm: fx.GraphModule, codes: dict[str, int], widths: dict[str, int], readers: set[str]):
        super().__init__(gm)
        self.codes, self.widths, self.readers = codes, widths, readers
        self.seen: dict[str, torch.Tensor] = {}
        self.meta = {n.target: n.meta.get("tensor_meta") for n in gm.graph.nodes if n.op == "call_module"}

    def call_module(self, target, args, kwargs):
        mod, x = self.fetch_attr(target), args[0]
        if target in self.readers:
            self.seen[target] = x.reshape(x.shape[0], x.shape[1], -1)[0, :, 0].clone()
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and not is_depthwise(mod):
            shape = list(self.meta[target].shape)
            n = self.widths.get(target, shape[1])
            code = self.codes.get(target, 0)
            lab = (code << _BITS) + torch.arange(1, n + 1, dtype=torch.float64)
            return lab.reshape(1, n, *([1] * (len(shape) - 2)))
        if is_depthwise(mod) or isinstance(mod, _PASS_MODULES):
            return x
        return mod(x)

    def call_function(self, target, args, kwargs):
        if target in _BINARY_FUNCS:
            self._refuse_arithmetic(target, args, kwargs)
        return super().call_function(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        if target in _BINARY_METHODS:
            self._refuse_arithmetic(target, args, kwargs)
        return super().call_method(target, args, kwargs)

    @staticmethod
    def _refuse_arithmetic(target, args, kwargs) -> None:
        """Arithmetic on labels would make other labels: a region is permutations only."""
        if _carries_labels((args, kwargs)):
            raise RegionInfeasible(f"producer channels pass through {getattr(target, '__name__', target)}")

    def output(self, target, args, kwargs):
        if _carries_labels(args):
            raise RegionInfeasible("producer channels reach the model output")
        return super().output(target, args, kwargs)

    def run_labels(self) -> dict[str, torch.Tensor]:
        ph = next(n for n in self.module.graph.nodes if n.op == "placeholder")
        n_in = int(ph.meta["tensor_meta"].shape[1])
        self.run(torch.arange(1, n_in + 1, dtype=torch.float64).reshape(1, n_in, 1, 1))
        return self.seen


@dataclass
class ShuffleRegion:
    """Producers (conv names, with their output group ids) and readers of one permutation region."""

    gm: fx.GraphModule
    producers: dict[str, int]  # module -> group id of its output channels
    readers: dict[str, str]  # module -> role: "in" (weight columns), "bn" / "dw" (rows)

    @property
    def codes(self) -> dict[str, int]:
        return {p: i + 1 for i, p in enumerate(self.producers)}

    def _labels(self, widths: dict[str, int]) -> dict[str, torch.Tensor]:
        try:
            with torch.no_grad():
                seen = _LabelPass(self.gm, self.codes, widths, set(self.readers)).run_labels()
        except RegionInfeasible:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError) as e:  # a width the reshape cannot take, ...
            raise RegionInfeasible(f"{type(e).__name__}: {e}") from None
        for name, lab in seen.items():
            if bool(((lab.long() >> _BITS) == 0).any()) or len(set(lab.tolist())) != lab.numel():
                raise RegionInfeasible(f"reader {name} sees channels that are not one producer channel each")
        return seen

    def _destinies(self, seen: dict[str, torch.Tensor]) -> dict[int, frozenset]:
        dest: dict[int, set] = {}
        for name, lab in seen.items():
            for v in lab.long().tolist():
                dest.setdefault(v, set()).add(name)
        return {v: frozenset(s) for v, s in dest.items()}

    def check(self) -> None:
        """Raise :class:`RegionInfeasible` unless the full-width label pass is clean."""
        seen = self._labels({})
        if set(seen) != set(self.readers):
            raise RegionInfeasible("some readers are not reached in the eval forward")

    def select(self, scores: dict[str, torch.Tensor], kept: dict[str, int]) -> dict[str, torch.Tensor]:
        """Kept rows per producer (``kept[p]`` of them, highest ``scores[p]`` per destiny), in pruned order.

        Raises :class:`RegionInfeasible` when the pruned structure routes more channels to a destiny than exist.
        """
        full, pruned = self._destinies(self._labels({})), self._destinies(self._labels(kept))
        rows = {}
        for p, code in self.codes.items():
            n = kept.get(p, scores[p].numel())
            want: dict[frozenset, list[int]] = {}
            for i in range(n):
                want.setdefault(pruned.get((code << _BITS) + i + 1, frozenset()), []).append(i)
            have: dict[frozenset, list[int]] = {}
            for j in range(scores[p].numel()):
                have.setdefault(full.get((code << _BITS) + j + 1, frozenset()), []).append(j)
            out = torch.empty(n, dtype=torch.long)
            for d, pos in want.items():
                cand = torch.tensor(have.get(d, []), dtype=torch.long)
                if cand.numel() < len(pos):
                    raise RegionInfeasible(f"{p}: pruned structure routes {len(pos)} channels to {sorted(d)}, "
                                           f"the model has {cand.numel()}", p)
                best = cand[torch.argsort(scores[p][cand], descending=True, stable=True)[:len(pos)]]
                out[torch.tensor(pos)] = torch.sort(best).values
            rows[p] = out
        return rows

    def select_nearest(self, scores: dict[str, torch.Tensor], kept: dict[str, int],
                       tries: int = 32) -> dict[str, torch.Tensor]:
        """:meth:`select`, keeping one channel more in every producer as wide as the failing one (a stage of
        ShuffleNet) when the pruned structure does not fit, at most ``tries`` times."""
        kept = dict(kept)
        for _ in range(tries):
            try:
                return self.select(scores, kept)
            except RegionInfeasible as e:
                if e.producer is None:
                    raise
                width = scores[e.producer].numel()
                same = [p for p in kept if scores[p].numel() == width and kept[p] < width]
                if not same:
                    raise
                for p in same:
                    kept[p] += 1
        return self.select(scores, kept)

    def apply(self, model: nn.Module, rows: dict[str, torch.Tensor]) -> None:
        """Re-index producers' rows and readers' channels of ``model`` in place (``rows`` from :meth:`select`)."""
        widths = {p: int(r.numel()) for p, r in rows.items()}
        try:
            full, pruned = self._labels({}), self._labels(widths)
        except RegionInfeasible as e:
            raise PruneConfigError(f"kept channels do not fit the channel shuffle: {e}") from None
        mods = dict(model.named_modules())
        for p, r in rows.items():
            reindex_module(p, mods[p], [(0, 1, self._width(p), r)], [])
        for name, role in self.readers.items():
            idx = self._reader_index(full[name], pruned[name], rows)
            entry = [(0, 1, int(full[name].numel()), idx)]
            reindex_module(name, mods[name], [] if role == "in" else entry, entry if role == "in" else [])

    def removed_positions(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per reader, the input positions holding removed producer channels (for masking)."""
        full = self._labels({})
        kept = {(self.codes[p] << _BITS) + int(j) + 1 for p, r in rows.items() for j in r}
        gone = {(self.codes[p] << _BITS) + j + 1 for p in rows for j in range(self._width(p))} - kept
        return {name: torch.tensor([k for k, v in enumerate(lab.long().tolist()) if v in gone], dtype=torch.long)
                for name, lab in full.items()}

    def _width(self, p: str) -> int:
        return int(next(n for n in self.gm.graph.nodes if n.op == "call_module" and n.target == p)
                   .meta["tensor_meta"].shape[1])

    def _reader_index(self, full: torch.Tensor, pruned: torch.Tensor, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        by_code = {self.codes[p]: r for p, r in rows.items()}
        pos = {v: k for k, v in enumerate(full.long().tolist())}
        out = []
        for v in pruned.long().tolist():
            code, i = v >> _BITS, (v & ((1 << _BITS) - 1)) - 1
            j = int(by_code[code][i]) if code in by_code else i
            if (code << _BITS) + j + 1 not in pos:
                raise PruneConfigError(f"kept channel {j} of a producer is routed by the channel shuffle to where "
                                       "the model does not route it: the kept rows must come from "
                                       "ShuffleRegion.select (or a pruning.json written with them)")
            out.append(pos[(code << _BITS) + j + 1])
        return torch.tensor(out, dtype=torch.long)


def find_regions(graph, gm: fx.GraphModule) -> list[ShuffleRegion]:
    """The permutation region of ``graph`` (groups frozen by a channel-splitting reshape), if it is clean."""
    groups = [g for g in graph.groups if g.frozen and g.reason and g.reason.startswith(_REGION_REASONS)]
    producers, readers = {}, {}
    for g in groups:
        for m in g.members:
            if m.role == "out":
                producers[m.module] = g.gid
            elif m.role in ("in", "bn", "dw"):
                readers[m.module] = m.role
    mods = dict(gm.named_modules())
    if not producers or not all(isinstance(mods.get(p), nn.Conv2d) and mods[p].groups == 1 for p in producers):
        return []  # grouped producers / readers would need their rows kept evenly per group
    if any(role == "in" and getattr(mods.get(name), "groups", 1) != 1 for name, role in readers.items()):
        return []
    if any(m.mult != 1 or m.role in ("param", "ln") for g in groups for m in g.members):
        return []
    region = ShuffleRegion(gm, producers, readers)
    try:
        region.check()
    except RegionInfeasible:
        return []
    return [region]
