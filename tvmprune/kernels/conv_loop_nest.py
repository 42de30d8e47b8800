"""The loop nest of the blocked dense convolution (every KxK, the 1x1 GEMM included) and its knobs.

The conv stage is ``conv[n, y, x, c] = sum_{kh, kw, ci} pad[n, y*s+kh, x*s+kw, ci] * Wp[c // CB,
kh, kw, ci, c % CB]`` over the padded output ``[B, OH, OW_p, Cout_p]`` (see :mod:`.dense_conv2d`).
Output rows ``y``, output columns ``x``, output-channel vectors ``c / lanes`` and the reduction
``ci`` are split by the factors of a :class:`ConvNest`; the nest is::

    parallel for (n, c_par, y_par):               # tasks: channel blocks x row blocks
      for c_seq, y_seq, x_seq:                    # the register tiles of one task
        acc[y_reg, x_reg, c_reg*lanes] = 0        # y_reg x x_reg x c_reg accumulator registers
        for k_out:                                # Cin block: its input patch over all taps stays in L1
          for kh, kw, k_in:
            for y_reg, x_reg, c_reg (unrolled), lanes (vector):
              acc[...] += pad[...] * Wp[...]
        out[tile] = act(acc + bias + residual)    # fused epilogue, straight from the registers

The accumulators of a register tile live in registers for the whole reduction and the epilogue
is applied to them before they are stored. (Measured on AVX-512, 1 thread: moving the
accumulators of a whole row or task to L1 to share a K-blocked weight panel between pixel
tiles -- the GEMM way -- was 1-18% slower on every resnet50 / convnext / efficientnet 1x1
and 3x3 layer tried: one row of tiles already reuses the panel from L1/L2, and the
register-resident epilogue saves a pass over the accumulators.) Loop order is chosen by the
factors themselves: a task walks channel blocks first when ``c_seq > 1``, rows / pixel tiles
when ``y_seq`` / ``x_seq > 1``; parallel granularity is how much of ``Cout`` and ``OH`` goes
to ``c_par`` / ``y_par``; ``k_out > 1`` moves the taps inside the Cin blocks.

Every knob is a split factor (``sample_perfect_tile``) or the unroll depth
(``sample_categorical``), so a MetaSchedule trace replays any point without Python branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .register_tile import RegisterTile, max_pixels

if TYPE_CHECKING:
    from ..target import NamedTarget
    from .base import ConvSpec

UNROLL_STEPS = (0, 16, 64, 512)
# reductions up to this many steps (KH*KW*Cin) are auto-unrolled by the default, to this depth
_SHORT_REDUCTION, _SHORT_UNROLL = 160, 64
# most output rows / channel vectors one register tile takes (more spills the register file)
_MAX_REG_ROWS, _MAX_REG_VECTORS = 4, 4


@dataclass(frozen=True)
class ConvNest:
    """Split factors of one point. ``rows``: (parallel, sequential, register) of OH; ``pixels``:
    (sequential, register) of OW_p; ``vectors``: (parallel, sequential, register) of
    Cout_p / lanes; ``k``: (outer, inner) of Cin; ``unroll``: auto-unroll depth. Each entry is an
    int (default schedule) or a sampled ExprRV (tuning)."""

    rows: tuple[Any, Any, Any]
    pixels: tuple[Any, Any]
    vectors: tuple[Any, Any, Any]
    k: tuple[Any, Any]
    unroll: Any = 0


def default_nest(spec: "ConvSpec", tile: RegisterTile, t: "NamedTarget") -> ConvNest:
    """The heuristic point: the register tile of :func:`.register_tile.pick_register_tile`
    (from the target's lanes and registers) as ``1 x pixels x vectors``, one parallel task per
    (image, channel block, output row) and the whole reduction per tile; a short reduction
    (<= :data:`_SHORT_REDUCTION` taps x channels: small-Cin 1x1 expansions, the stem) is
    auto-unrolled, which removes its loop overhead (measured 1 thread, AVX-512: efficientnet_b0
    16->96 @112 0.57x, 24->144 @56 0.80x, resnet50 64->256 @56 0.91x the time; long reductions
    gain nothing). (Rows per task and K blocks, chosen from the cores and the L1 size, lost to
    this on the measured layers.)"""
    owp = tile.padded_pixels(spec.out_w)
    blocks = tile.padded_channels(spec.cout) // tile.channel_block
    return ConvNest(rows=(spec.out_h, 1, 1), pixels=(owp // tile.pixels, tile.pixels),
                    vectors=(blocks, 1, tile.vectors), k=(1, spec.cin),
                    unroll=_SHORT_UNROLL if spec.kh * spec.kw * spec.cin <= _SHORT_REDUCTION else 0)


def sample_nest(sch: Any, tile: RegisterTile, t: "NamedTarget") -> ConvNest:
    """A sampled point over the conv stage's loops ``(n, y, x, c, kh, kw, ci)``; the channel
    loop is split into vectors first (its lanes are never a knob)."""
    conv = sch.get_sblock("conv")
    _, y, x, c, _, _, ci = sch.get_loops(conv)
    c_vec, _ = sch.split(c, factors=[None, tile.lanes])
    rows = sch.sample_perfect_tile(y, n=3, max_innermost_factor=_MAX_REG_ROWS)
    pixels = sch.sample_perfect_tile(x, n=2, max_innermost_factor=max_pixels(t, 2))
    vectors = sch.sample_perfect_tile(c_vec, n=3, max_innermost_factor=_MAX_REG_VECTORS)
    k = sch.sample_perfect_tile(ci, n=2, max_innermost_factor=int(sch.get(ci).extent))
    unroll = sch.sample_categorical(list(UNROLL_STEPS), probs=[1.0 / len(UNROLL_STEPS)] * len(UNROLL_STEPS))
    return ConvNest(tuple(rows), tuple(pixels), tuple(vectors), tuple(k), unroll)


def _output_block(sch: Any, conv: Any) -> Any:
    writeback = sch.cache_write(conv, 0, "local")
    try:
        out_block = sch.get_sblock("epilogue")
    except Exception:  # no epilogue stage: the write-back is the output
        return writeback
    sch.compute_inline(writeback)  # the epilogue reads the accumulators
    return out_block


def apply_nest(sch: Any, spec: "ConvSpec", tile: RegisterTile, nest: ConvNest) -> None:
    """Schedule the conv (+ epilogue, + pad) stages as the nest of the module docstring."""
    conv = sch.get_sblock("conv")
    out_block = _output_block(sch, conv)
    loops = sch.get_loops(conv)
    if len(loops) == 7:  # not yet split into vectors by sample_nest
        n, y, x, c, kh, kw, ci = loops
        c_vec, c_l = sch.split(c, factors=[None, tile.lanes])
    else:
        n, y, x, c_vec, c_l, kh, kw, ci = loops
    y_p, y_s, y_r = sch.split(y, factors=list(nest.rows))
    x_s, x_r = sch.split(x, factors=list(nest.pixels))
    c_p, c_s, c_r = sch.split(c_vec, factors=list(nest.vectors))
    k_o, k_i = sch.split(ci, factors=list(nest.k))
    sch.reorder(n, c_p, y_p, c_s, y_s, x_s, k_o, kh, kw, k_i, y_r, x_r, c_r, c_l)
    sch.reverse_compute_at(out_block, x_s)
    outer = sch.fuse(n, c_p, y_p)
    sch.parallel(outer)
    for loop in (y_r, x_r, c_r):
        sch.unroll(loop)
    sch.vectorize(c_l)
    init = sch.decompose_reduction(conv, k_o)
    sch.vectorize(sch.get_loops(init)[-1])
    if spec.cout % tile.lanes == 0:
        sch.vectorize(sch.split(sch.get_loops(out_block)[-1], factors=[None, tile.lanes])[1])
    _schedule_pad(sch, spec, tile)
    if not isinstance(nest.unroll, int) or nest.unroll:
        sch.annotate(outer, "pragma_auto_unroll_max_step", nest.unroll)
        sch.annotate(outer, "pragma_unroll_explicit", 1)


def _schedule_pad(sch: Any, spec: "ConvSpec", tile: RegisterTile) -> None:
    try:
        pad = sch.get_sblock("pad")
    except Exception:  # nothing padded
        return
    loops = sch.get_loops(pad)
    sch.parallel(sch.fuse(loops[0], loops[1]))
    if spec.cin % tile.lanes == 0:
        sch.vectorize(sch.split(loops[-1], factors=[None, tile.lanes])[1])
