"""Reading and writing the safetensors file format (no third-party package).

Layout of a file::

    8 bytes      N, the header length, unsigned little-endian
    N bytes      JSON header: {name: {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
                 plus an optional "__metadata__": {str: str}; padded with spaces
    rest         the tensors' raw bytes, little-endian, C order; offsets count from the
                 first byte after the header, ``end`` exclusive

Unlike a pickle (``torch.load``), reading a file can only ever produce tensors.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np
import torch

from .errors import WeightsFileError

__all__ = ["DTYPES", "read_safetensors", "write_safetensors"]

# format name -> torch dtype, element size
DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "BOOL": (torch.bool, 1), "U8": (torch.uint8, 1), "I8": (torch.int8, 1), "I16": (torch.int16, 2),
    "I32": (torch.int32, 4), "I64": (torch.int64, 8), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
    "F32": (torch.float32, 4), "F64": (torch.float64, 8),
}
_NAME_OF = {dt: name for name, (dt, _) in DTYPES.items()}
# bit-identical integer views for dtypes numpy lacks (bfloat16) or that need a fixed byte order
_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}
_MAX_HEADER = 100 * 1024 * 1024
_ALIGN = 8


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    size = DTYPES[_NAME_OF[t.dtype]][1]
    if size == 1:
        return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    arr = t.view(_VIEW[size]).numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def write_safetensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> tensor of a dtype in :data:`DTYPES`) to ``path``.

    Raises:
        WeightsFileError: a dtype the format has no name for, a reserved name, or a write error.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise WeightsFileError("a tensor cannot be named '__metadata__' (reserved by the safetensors format)")
        if not isinstance(t, torch.Tensor) or t.dtype not in _NAME_OF:
            what = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise WeightsFileError(f"cannot store {name!r} ({what}) in safetensors: dtypes are {', '.join(DTYPES)}")
        data = _tensor_bytes(t)
        header[name] = {"dtype": _NAME_OF[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % _ALIGN)
    try:
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for b in blobs:
                f.write(b)
    except OSError as e:
        raise WeightsFileError(f"cannot write {path}: {e}") from None


def _read_header(path: str, raw: bytes) -> tuple[dict[str, Any], int]:
    bad = f"{path} is not a safetensors file"
    if len(raw) < 8:
        raise WeightsFileError(f"{bad}: {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(_MAX_HEADER, len(raw) - 8):
        raise WeightsFileError(f"{bad}: header length {n} exceeds the file ({len(raw)} bytes)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WeightsFileError(f"{bad}: header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise WeightsFileError(f"{bad}: header is not a JSON object")
    return header, 8 + n


def _check_entry(path: str, name: str, entry: Any, data_len: int) -> tuple[str, list[int], int, int]:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise WeightsFileError(f"{where}: entry must have exactly dtype, shape and data_offsets")
    dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise WeightsFileError(f"{where}: unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise WeightsFileError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)
            or not 0 <= offs[0] <= offs[1] <= data_len):
        raise WeightsFileError(f"{where}: data_offsets {offs!r} are not [begin, end] within the {data_len} data bytes")
    need = int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype][1]
    if offs[1] - offs[0] != need:
        raise WeightsFileError(f"{where}: {offs[1] - offs[0]} bytes for shape {shape} of {dtype} (needs {need})")
    return dtype, shape, offs[0], offs[1]


def _decode(dtype: str, shape: list[int], data: bytes) -> torch.Tensor:
    tdt, size = DTYPES[dtype]
    if size == 1:
        flat = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
    else:
        arr = np.frombuffer(data, dtype=np.dtype(f"<i{size}")).astype(f"=i{size}")
        flat = torch.from_numpy(arr.copy())
    return flat.view(tdt).reshape(shape)


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file; returns ``(name -> tensor, metadata)`` (tensors on the CPU, in file order).

    Raises:
        WeightsFileError: the file is missing, truncated, or its header is malformed (bad JSON,
            unknown dtype, offsets outside the data or overlapping, sizes that do not fit the shape).
    """
    if not os.path.isfile(path):
        raise WeightsFileError(f"weights file {path} does not exist")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise WeightsFileError(f"cannot read {path}: {e}") from None
    header, start = _read_header(path, raw)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise WeightsFileError(f"{path}: __metadata__ is not a JSON object")
    data = memoryview(raw)[start:]
    spans, out = [], {}
    for name, entry in header.items():
        dtype, shape, b, e = _check_entry(path, name, entry, len(data))
        spans.append((b, e, name))
        out[name] = _decode(dtype, shape, bytes(data[b:e]))
    spans.sort()
    for (b0, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise WeightsFileError(f"{path}: tensors {n0!r} and {n1!r} overlap in the data")
    return out, {str(k): str(v) for k, v in metadata.items()}
