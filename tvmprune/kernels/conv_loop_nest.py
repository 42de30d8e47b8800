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
from .target_params import l2_bytes, n_vector_registers

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


def _rows_in_registers(spec: "ConvSpec", tile: RegisterTile, t: "NamedTarget") -> int:
    """Output rows of the default register tile: 2 for a KxK conv (KH > 1) with an even row count
    whose doubled tile still fits the register file with its weight vectors and one broadcast
    (AVX-512's 2 x 7 pixels x 2 vectors = 28 accumulators), else 1. Both rows use each weight
    vector, so the packed weight block (9 x Cin x CB floats: more than L1 holds) streams from L2
    once per two rows. Measured (1 thread, CPU time, AVX-512): 0.90-0.93x the time on
    densenet121's 128->32 3x3 at 56 / 28 and resnet50's 64->64 at 56, 0.98-1.00x at 28 / 14;
    1x1 convs (1.10x at 64->256 @56) and the unrolled short reductions (the 7x7 stem: 1.07x) lose
    with it, so they keep one row; so does a conv left with fewer than 4 parallel tasks per core."""
    blocks = tile.padded_channels(spec.cout) // tile.channel_block
    if spec.kh == 1 or spec.kh * spec.kw * spec.cin <= _SHORT_REDUCTION or spec.out_h % 2:
        return 1
    if spec.batch * blocks * (spec.out_h // 2) < 4 * t.cores:
        return 1
    fits = 2 * tile.pixels * tile.vectors + tile.vectors + 1 <= n_vector_registers(t)
    return 2 if fits and 2 <= _MAX_REG_ROWS else 1


def _channel_blocks_per_task(spec: "ConvSpec", tile: RegisterTile, t: "NamedTarget") -> int:
    """How many channel blocks one parallel task walks (``c_seq``): all of them when re-reading the
    input once per block costs more than re-reading the weights once per output row, else 1.

    Channel blocks outermost (``c_seq = 1``) keep one weight block in cache over all rows but
    stream the input map once per block; rows outermost (``c_seq = blocks``) read each input row
    once for every block and stream the whole weight once per row. Traffic counted past L2: the
    input's ``blocks x`` when it exceeds half of L2, the weight's ``OH x`` (halved when the weight
    fits half of L2, it then comes from L2). Measured (1 thread, CPU time, AVX-512): rows
    outermost takes 0.73x / 0.88-0.94x / 0.89x the time on densenet121's 1x1 128->128 @56 /
    256->128 @56 / 480->128 @28, 0.89x on 512->256 @28, 0.93x on resnet50's 64->256 @56; the rule
    keeps blocks outermost where that wins (1.02-1.33x with rows outermost: 1024->128 @14, resnet50
    3x3 64@56 / 256@14 / 512@7, 2048->512 @7)."""
    blocks = tile.padded_channels(spec.cout) // tile.channel_block
    ph, pw = spec.in_h + spec.padding[0] + spec.padding[2], spec.in_w + spec.padding[1] + spec.padding[3]
    in_bytes = 4 * spec.batch * ph * pw * spec.cin
    w_bytes = 4 * spec.kh * spec.kw * spec.cin * blocks * tile.channel_block
    l2 = l2_bytes(t)
    w_cost = spec.out_h * w_bytes * (0.5 if w_bytes <= l2 // 2 else 1.0)
    if blocks == 1 or in_bytes <= l2 // 2 or blocks * in_bytes <= w_cost:
        return 1
    # the parallel loop keeps at least 4 tasks per core: split the blocks across tasks if the rows do not
    par = next(d for d in range(1, blocks + 1) if blocks % d == 0 and (d * spec.batch * spec.out_h >= 4 * t.cores
                                                                       or d == blocks))
    return blocks // par


def default_nest(spec: "ConvSpec", tile: RegisterTile, t: "NamedTarget") -> ConvNest:
    """The heuristic point: the register tile of :func:`.register_tile.pick_register_tile`
    (from the target's lanes and registers) as ``rows x pixels x vectors`` (two rows for KxK
    convs, :func:`_rows_in_registers`), one parallel task per (image, channel block(s), output
    row(s)) and the whole reduction per tile; a task walks every channel block of its rows when
    the input map is the larger traffic (:func:`_channel_blocks_per_task`); a short reduction
    (<= :data:`_SHORT_REDUCTION` taps x channels: small-Cin 1x1 expansions, the stem) is
    auto-unrolled, which removes its loop overhead (measured 1 thread, AVX-512: efficientnet_b0
    16->96 @112 0.57x, 24->144 @56 0.80x, resnet50 64->256 @56 0.91x the time; long reductions
    gain nothing). (K blocks, chosen from the L1 size, lost to this on the measured layers.)"""
    owp = tile.padded_pixels(spec.out_w)
    blocks = tile.padded_channels(spec.cout) // tile.channel_block
    y_reg = _rows_in_registers(spec, tile, t)
    c_seq = _channel_blocks_per_task(spec, tile, t)
    return ConvNest(rows=(spec.out_h // y_reg, 1, y_reg), pixels=(owp // tile.pixels, tile.pixels),
                    vectors=(blocks // c_seq, c_seq, tile.vectors), k=(1, spec.cin),
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
