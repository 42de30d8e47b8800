"""Sparse weight formats used by the sparse kernels.

* :class:`BSR` -- block compressed rows with blocks of ``n`` rows x 1 column ("1xN" in
  the pruning literature: N output channels share one reduction index). Rows are output
  channels (padded with zero rows up to a multiple of ``n``), columns are reduction indices.
* :class:`CSR` -- plain compressed sparse rows (``n == 1``).

Reduction-index ordering (the column of a conv weight):

* :func:`conv_weight_to_bsr` uses ``(kh, kw, cin)``, i.e. ``k = (kh * KW + kw) * Cin + cin``:
  the NHWC 1xN kernel reads one input pixel's channel vector per (kh, kw), so nonzeros that
  are neighbours in a row touch the same cache lines.
* :func:`conv_weight_to_csr` uses PyTorch's ``(cin, kh, kw)``, i.e.
  ``k = (cin * KH + kh) * KW + kw``: the direct sparse conv works on a channel-major copy of
  the input, where a row's nonzeros of one input channel hit neighbouring image rows.

Linear weights ``[out, in]`` use ``k = in`` for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BSR:
    """Block sparse rows, blocks of ``n`` rows x 1 column.

    Attributes:
        data: ``[nnz_blocks, n]`` float32 block values (``data[e, i]`` belongs to row
            ``r * n + i`` of block row ``r``).
        indices: ``[nnz_blocks]`` int32 column (reduction) index of each block.
        indptr: ``[n_block_rows + 1]`` int32 offsets into ``data`` / ``indices``.
        n: block height.
        rows: number of real rows (before padding up to a multiple of ``n``).
        cols: number of columns (reduction length).
    """

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    n: int
    rows: int
    cols: int

    @property
    def n_block_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz_blocks(self) -> int:
        return int(self.indptr[-1])

    @property
    def row_lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def max_row_length(self) -> int:
        return int(self.row_lengths.max()) if self.n_block_rows else 0

    @property
    def density(self) -> float:
        """Stored (block) density: stored values / dense size of the padded matrix."""
        return self.nnz_blocks * self.n / max(1, self.n_block_rows * self.n * self.cols)

    def kernel_info(self, weight: np.ndarray) -> dict:
        """What a block-sparse kernel reports about its weight (``KernelInstance.info``)."""
        return {
            "n": self.n,
            "density": float(np.count_nonzero(weight)) / max(1, weight.size),
            "block_density": self.density,
            "nnz_blocks": self.nnz_blocks,
            "max_row_length": max(1, self.max_row_length),
        }

    def to_dense(self) -> np.ndarray:
        """``[rows, cols]`` dense matrix (padding rows dropped)."""
        out = np.zeros((self.n_block_rows * self.n, self.cols), dtype=np.float32)
        for r in range(self.n_block_rows):
            for e in range(self.indptr[r], self.indptr[r + 1]):
                out[r * self.n : (r + 1) * self.n, self.indices[e]] = self.data[e]
        return out[: self.rows]


@dataclass
class CSR:
    """Compressed sparse rows: ``data`` / ``indices`` ``[nnz]``, ``indptr`` ``[rows + 1]``."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    rows: int
    cols: int

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def row_lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def max_row_length(self) -> int:
        return int(self.row_lengths.max()) if self.rows else 0

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.rows * self.cols)

    def to_dense(self) -> np.ndarray:
        out = np.zeros((self.rows, self.cols), dtype=np.float32)
        for r in range(self.rows):
            s, e = self.indptr[r], self.indptr[r + 1]
            out[r, self.indices[s:e]] = self.data[s:e]
        return out


def matrix_to_bsr(mat: np.ndarray, n: int) -> BSR:
    """``[rows, cols]`` matrix -> :class:`BSR` with ``n`` x 1 blocks (rows zero-padded)."""
    if n < 1:
        raise ValueError(f"block size n must be >= 1, got {n}")
    mat = np.asarray(mat, dtype=np.float32)
    rows, cols = mat.shape
    nb = -(-rows // n)
    padded = np.zeros((nb * n, cols), dtype=np.float32)
    padded[:rows] = mat
    blocks = padded.reshape(nb, n, cols)  # [r, i, k]
    mask = np.any(blocks != 0, axis=1)  # [r, k]
    rr, kk = np.nonzero(mask)  # row-major: sorted by r then k
    data = np.ascontiguousarray(blocks[rr, :, kk], dtype=np.float32).reshape(len(rr), n)
    indptr = np.zeros(nb + 1, dtype=np.int32)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    return BSR(data=data, indices=kk.astype(np.int32), indptr=indptr, n=n, rows=rows, cols=cols)


def matrix_to_csr(mat: np.ndarray) -> CSR:
    """``[rows, cols]`` matrix -> :class:`CSR`."""
    b = matrix_to_bsr(mat, 1)
    return CSR(data=b.data.reshape(-1), indices=b.indices, indptr=b.indptr, rows=b.rows, cols=b.cols)


def conv_weight_to_bsr(weight: np.ndarray, n: int) -> BSR:
    """Conv weight ``[Cout, Cin, KH, KW]`` -> 1xN :class:`BSR`, columns ordered ``(kh, kw, cin)``."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"conv weight must be [Cout, Cin, KH, KW], got shape {w.shape}")
    cout = w.shape[0]
    return matrix_to_bsr(w.transpose(0, 2, 3, 1).reshape(cout, -1), n)


def conv_weight_to_csr(weight: np.ndarray) -> CSR:
    """Conv weight ``[Cout, Cin, KH, KW]`` -> :class:`CSR`, columns ordered ``(cin, kh, kw)``."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"conv weight must be [Cout, Cin, KH, KW], got shape {w.shape}")
    return matrix_to_csr(w.reshape(w.shape[0], -1))


def kernel_arrays(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, ...]:
    """Arrays as the kernels read them: ``data`` / ``indices`` padded by ``max_row_length``
    (at least 1) trailing zero entries, so a row loop of static extent ``max_row_length``
    (the guarded form used before the loop is shrunk to the true row length) never reads
    out of bounds, and an all-zero layer still has non-empty buffers."""
    lens = np.diff(indptr)
    pad = max(1, int(lens.max()) if len(lens) else 1)
    d = np.concatenate([data, np.zeros((pad,) + data.shape[1:], dtype=np.float32)]).astype(np.float32)
    i = np.concatenate([indices, np.zeros(pad, dtype=np.int32)]).astype(np.int32)
    return np.ascontiguousarray(d), np.ascontiguousarray(i), np.ascontiguousarray(indptr.astype(np.int32))
