"""The register tile of the depthwise and grouped conv kernels: rows x pixels x channel vectors.

Both kernels compute an NHWC output whose every output channel reads a few input channels
only (one for depthwise, ``Cin/groups`` for grouped), so the tile blocks over output *pixels*
(``rows x pixels`` of the output) and over ``vectors`` channel vectors of ``lanes`` fp32; all
``rows x pixels x vectors`` accumulators live in registers while the taps (and the group's
input channels) stream past them. Loop nest of the conv stage (padded to whole tiles)::

    parallel for (b, oh_o, c_par) [in chunks]:        # c_par: channel blocks run in parallel
      for c_seq:                                      # channel blocks one thread runs in turn
        for ow_o:
          acc[rows, pixels, vectors] = 0              # registers
          for kh, kw[, ci] (unrolled taps):
            for r, p, v (unrolled):  acc[r, p, v] += X[...] * W[...]    # lanes vectorised
          out[...] = act(acc + bias + residual)      # epilogue at the tile

The default tile comes from the target (lanes, vector register count); ``schedule_space``
samples rows, pixels, the channel split (parallel / sequential / vectors per tile), the
parallel chunk and the unroll depth, all as random variables, so that MetaSchedule replays
and mutates the trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .register_tile import round_up
from .target_params import n_vector_registers

if TYPE_CHECKING:
    from ..target import NamedTarget

# accumulator registers a broadcast-FMA tile aims at on a 32-register file: enough independent
# FMA chains to hide the latency (2 pipes x 4 cycles), registers left for weights and inputs
_WANTED_ACCUMULATORS = 14
PIXEL_CHOICES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16)
ROW_CHOICES = (1, 2, 3, 4)
CHUNK_CHOICES = (1, 2, 4)
UNROLL_CHOICES = (0, 16, 64)  # deeper auto-unroll of the grouped ci loop takes minutes in LLVM


def vector_width(channels: int, lanes: int) -> int:
    """Widest power-of-two vector (at most ``lanes``) dividing ``channels``: a tile's vectors
    never straddle the end of the channels (or, grouped, a group)."""
    v = lanes
    while v > 1 and channels % v:
        v //= 2
    return v


@dataclass(frozen=True)
class ChannelTile:
    """``rows x pixels`` output pixels x ``vectors`` channel vectors of ``lanes`` fp32."""

    lanes: int
    vectors: int
    rows: int
    pixels: int

    @property
    def accumulators(self) -> int:
        return self.rows * self.pixels * self.vectors

    def padded(self, out_h: int, out_w: int) -> tuple[int, int]:
        """The conv stage's output extent: whole tiles of rows and pixels."""
        return round_up(out_h, self.rows), round_up(out_w, self.pixels)


def pick_channel_tile(out_w: int, lanes: int, vectors: int, accumulators: int, rows: int = 1) -> ChannelTile:
    """Default tile of ``rows`` output rows x ``vectors`` channel vectors with about
    ``accumulators`` registers: the pixel count near ``accumulators / (rows x vectors)`` that
    wastes the fewest padded pixels of an ``out_w`` wide row."""
    target = max(1, accumulators // (rows * vectors))
    top = max(1, min(out_w, target + 2))

    def cost(p: int) -> tuple[float, int]:
        return (round_up(out_w, p) / out_w + 0.5 * abs(p - target) / target, -p)

    return ChannelTile(lanes, vectors, rows, min(range(1, top + 1), key=cost))


def gemm_accumulators(t: "NamedTarget") -> int:
    """Accumulators of a broadcast-FMA tile (grouped conv): :data:`_WANTED_ACCUMULATORS` for a
    32-register file, scaled to the target's."""
    return max(4, _WANTED_ACCUMULATORS * n_vector_registers(t) // 32)


def _out_block(sch: Any) -> tuple[Any, Any]:
    """(conv block, the block that writes the output) after caching the accumulators locally."""
    conv = sch.get_sblock("conv")
    writeback = sch.cache_write(conv, 0, "local")
    try:
        out_block = sch.get_sblock("epilogue")
        sch.compute_inline(writeback)  # the epilogue reads the accumulators
    except Exception:  # no epilogue stage: the write-back copies the accumulators out
        out_block = writeback
    return conv, out_block


def schedule_channel_tile(sch: Any, lanes: int, n_reduction: int, rows: Any, pixels: Any, channels: Any,
                          chunk: Any = 1, unroll: Any = 0, pad_at: str = "inline") -> None:
    """The loop nest of the module docstring on the stages ``pad? -> conv -> epilogue?``.

    ``rows`` / ``pixels``: the inner split factor of the output rows / columns; ``channels``:
    ``[c_par, c_seq, vectors]`` over the ``C / lanes`` channel vectors, or a function of that
    loop returning them (the sampler); ``chunk``: inner split
    of the fused parallel loop (1: one task per iteration); ``unroll``: auto-unroll depth;
    ``pad_at``: where the zero padding is computed (:func:`_schedule_pad`).
    Each is an int (default schedule) or a sampled random variable (tuning).
    ``n_reduction``: 2 (kh, kw) for depthwise, 3 (kh, kw, ci) for grouped.
    """
    conv, out_block = _out_block(sch)
    n, y, x, c, *red = sch.get_loops(conv)
    assert len(red) == n_reduction
    y_o, y_i = sch.split(y, factors=[None, rows])
    x_o, x_i = sch.split(x, factors=[None, pixels])
    c_vec, c_l = sch.split(c, factors=[None, lanes])
    c_par, c_seq, c_v = sch.split(c_vec, factors=list(channels(c_vec) if callable(channels) else channels))
    sch.reorder(n, y_o, c_par, c_seq, x_o, *red, y_i, x_i, c_v, c_l)
    sch.reverse_compute_at(out_block, x_o)
    outer = sch.fuse(n, y_o, c_par)
    if isinstance(chunk, int) and chunk == 1:
        par = outer
    else:
        par, _ = sch.split(outer, factors=[None, chunk])
    sch.parallel(par)
    for loop in (*red[:2], y_i, x_i, c_v):
        sch.unroll(loop)
    sch.vectorize(c_l)
    init = sch.decompose_reduction(conv, red[0])
    sch.vectorize(sch.get_loops(init)[-1])
    _, lane = sch.split(sch.get_loops(out_block)[-1], factors=[None, lanes])
    sch.vectorize(lane)
    _schedule_pad(sch, lanes, pad_at)
    if not isinstance(unroll, int) or unroll:
        sch.annotate(par, "pragma_auto_unroll_max_step", unroll)
        sch.annotate(par, "pragma_unroll_explicit", 1)


def _schedule_pad(sch: Any, lanes: int, pad_at: str) -> None:
    """The zero-padded input: parallel over (batch, rows) at the root with channels vectorised,
    then ``pad_at``: ``"root"`` keeps it there, ``"inline"`` reads the input through the
    padding condition inside the conv (no copy), ``"sample"`` samples the place (root, inline
    or a loop of the conv) as a compute-location random variable (tuning)."""
    try:
        pad = sch.get_sblock("pad")
    except Exception:  # nothing padded
        return
    loops = sch.get_loops(pad)
    sch.parallel(sch.fuse(loops[0], loops[1]))
    channels = int(sch.get(loops[-1]).extent)
    sch.vectorize(sch.split(loops[-1], factors=[None, vector_width(channels, lanes)])[1])
    if pad_at == "inline":
        sch.compute_inline(pad)
    elif pad_at == "sample":
        sch.compute_at(pad, sch.sample_compute_location(pad))


def default_channel_split(vector_count: int, vectors: int) -> list[int]:
    """``[c_par, c_seq, vectors]`` of the default schedule: every channel block in parallel."""
    return [-(-vector_count // vectors), 1, vectors]


def sample_channel_tile(sch: Any, lanes: int, n_reduction: int, t: "NamedTarget") -> None:
    """The tuning space: rows, pixels, channel split, parallel chunk, unroll and the padding's
    place sampled, then :func:`schedule_channel_tile`. Tile sizes that are not divisors of the padded output are
    valid (the split guards the tail)."""
    max_vectors = max(1, min(4, (n_vector_registers(t) - 2) // 4))

    def channels(c_vec: Any) -> Any:
        return sch.sample_perfect_tile(c_vec, n=3, max_innermost_factor=max_vectors)

    uniform = lambda k: [1.0 / k] * k  # noqa: E731
    rows = sch.sample_categorical(list(ROW_CHOICES), probs=uniform(len(ROW_CHOICES)))
    pixels = sch.sample_categorical(list(PIXEL_CHOICES), probs=uniform(len(PIXEL_CHOICES)))
    chunk = sch.sample_categorical(list(CHUNK_CHOICES), probs=uniform(len(CHUNK_CHOICES)))
    unroll = sch.sample_categorical(list(UNROLL_CHOICES), probs=uniform(len(UNROLL_CHOICES)))
    schedule_channel_tile(sch, lanes, n_reduction, rows, pixels, channels, chunk, unroll, pad_at="sample")
