"""Compact text encoding of boolean tensors (keep-masks, block maps) for ``pruning.json``."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import torch

from ..errors import PruneConfigError

__all__ = ["encode_bits", "decode_bits"]


def encode_bits(mask: torch.Tensor) -> str:
    """packbits + zlib + base64 of the flattened tensor; the shape is stored separately."""
    bits = np.packbits(mask.reshape(-1).cpu().numpy().astype(np.uint8))
    return base64.b64encode(zlib.compress(bits.tobytes(), 9)).decode("ascii")


def decode_bits(text: str, shape) -> torch.Tensor:
    """Inverse of :func:`encode_bits`: a bool tensor of ``shape``."""
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii")))
    except Exception as e:
        raise PruneConfigError(f"corrupt mask encoding in pruning config: {type(e).__name__}: {e}") from None
    n = int(np.prod(shape)) if len(shape) else 1
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits.size < n:
        raise PruneConfigError(f"mask encoding too short for shape {list(shape)} in pruning config")
    return torch.from_numpy(bits[:n].astype(bool)).reshape(tuple(shape))
