"""The register tile of the blocked dense kernels: output channels as vectors x output pixels.

A tile holds ``pixels x vectors`` accumulator registers of ``lanes`` fp32 each; per reduction
step it loads ``vectors`` weight vectors and broadcasts ``pixels`` input values. The sizes come
from the target (lanes, architectural vector registers), not from constants.

Measured on AVX-512 (single thread, CPU time vs ONNX Runtime, 3x3 convs 64@56 / 256@14 /
512@7): 2 vectors x 7 pixels (14 accumulators) beat 2 x 14, 4 x 6..7, 3 x 7..9 and 1 x 28:
14 independent FMA chains hide the FMA latency, and the small pixel tile keeps the input patch
in L1 while the packed weight block streams. So the tile asks for about ``2 x pipes x latency``
accumulators, not for the whole register file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .target_params import n_vector_registers

if TYPE_CHECKING:
    from ..target import NamedTarget

# accumulators that hide FMA latency: 2 FMA pipes x 4 cycles latency, with some slack
_WANTED_ACCUMULATORS = 14


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


@dataclass(frozen=True)
class RegisterTile:
    """``vectors`` output-channel vectors of ``lanes`` fp32 x ``pixels`` output pixels."""

    lanes: int
    vectors: int
    pixels: int

    @property
    def channel_block(self) -> int:
        """Output channels per tile: the innermost dimension of the packed weight."""
        return self.lanes * self.vectors

    def padded_channels(self, cout: int) -> int:
        return round_up(cout, self.channel_block)

    def padded_pixels(self, extent: int) -> int:
        return round_up(extent, self.pixels)


def max_pixels(t: "NamedTarget", vectors: int) -> int:
    """Most pixels a tile of ``vectors`` channel vectors can hold: accumulators plus the
    weight vectors plus one broadcast register must fit the register file."""
    return max(1, (n_vector_registers(t) - vectors - 1) // vectors)


def pick_register_tile(pixels_extent: int, cout: int, t: "NamedTarget") -> RegisterTile:
    """The tile of a conv whose output rows are ``pixels_extent`` wide with ``cout`` channels.

    Two channel vectors where ``cout`` fills them (one otherwise); the pixel tile is the one
    nearest to :data:`_WANTED_ACCUMULATORS` / vectors that wastes the fewest padded pixels
    (exact divisors of the row need no padding).
    """
    lanes = t.vector_lanes
    vectors = 2 if cout > lanes else 1
    top = min(max_pixels(t, vectors), pixels_extent)
    want = max(1, _WANTED_ACCUMULATORS // vectors)

    def cost(p: int) -> tuple[float, int]:
        waste = round_up(pixels_extent, p) / pixels_extent
        return (waste + 0.5 * abs(p - want) / want, -p)

    pixels = min(range(1, top + 1), key=cost)
    return RegisterTile(lanes, vectors, pixels)
