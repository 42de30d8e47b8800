"""The safetensors reader / writer: round trips, the format's byte layout, damaged files."""

import json
import struct

import pytest
import torch

from tvmprune.errors import WeightsFileError
from tvmprune.safetensors_file import read_safetensors, write_safetensors


def _file(tmp_path, header, data=b"", name="w.safetensors"):
    text = json.dumps(header).encode()
    p = tmp_path / name
    p.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return str(p)


def test_round_trip_keeps_dtype_shape_values(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "mask": torch.rand(4, 5, generator=g) > 0.5,
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),  # 0-d
        "index": torch.tensor([-(2 ** 40), 0, 3], dtype=torch.int64),
        "half": torch.randn(3, generator=g).half(),
        "bf16": torch.randn(2, 2, generator=g).bfloat16(),
        "i32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "f64": torch.tensor([1e-300], dtype=torch.float64),
        "empty": torch.zeros(0, 4),
        "strided": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous
    }
    p = str(tmp_path / "w.safetensors")
    write_safetensors(p, tensors, metadata={"format": "x", "n": 3})
    back, meta = read_safetensors(p)
    assert list(back) == list(tensors)
    assert meta == {"format": "x", "n": "3"}
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape, k
        assert torch.equal(back[k], t), k


def test_byte_layout_is_the_safetensors_format(tmp_path):
    p = str(tmp_path / "w.safetensors")
    write_safetensors(p, {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([True, False, True])})
    raw = open(p, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header["a"] == {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    assert header["b"] == {"dtype": "BOOL", "shape": [3], "data_offsets": [8, 11]}
    assert raw[8 + n:] == struct.pack("<2f", 1.0, 2.0) + b"\x01\x00\x01"
    # and a file written by hand to the spec (as the safetensors package does) reads back
    q = _file(tmp_path, {"__metadata__": {"k": "v"}, "x": {"dtype": "I64", "shape": [1, 2], "data_offsets": [0, 16]}},
              struct.pack("<2q", -5, 9), "hand.safetensors")
    back, meta = read_safetensors(q)
    assert meta == {"k": "v"} and torch.equal(back["x"], torch.tensor([[-5, 9]]))


@pytest.mark.parametrize("header,data,message", [
    ({"x": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unknown dtype 'F33'"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "needs 8"),
    ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 4, "within the 4 data bytes"),
    ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "non-negative integers"),
    ({"x": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "exactly dtype, shape and data_offsets"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "overlap"),
    ({"__metadata__": [1]}, b"", "__metadata__ is not a JSON object"),
    ([1, 2], b"", "not a JSON object"),
])
def test_bad_header_errors(tmp_path, header, data, message):
    with pytest.raises(WeightsFileError, match=message):
        read_safetensors(_file(tmp_path, header, data))


def test_bad_file_errors(tmp_path):
    with pytest.raises(WeightsFileError, match="does not exist"):
        read_safetensors(str(tmp_path / "missing.safetensors"))
    short = tmp_path / "short"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(WeightsFileError, match="shorter than the 8-byte header length"):
        read_safetensors(str(short))
    huge = tmp_path / "huge"
    huge.write_bytes(struct.pack("<Q", 10 ** 12) + b"{}")
    with pytest.raises(WeightsFileError, match="exceeds the file"):
        read_safetensors(str(huge))
    pickle_like = tmp_path / "weights.pt"
    torch.save({"a": torch.ones(2)}, pickle_like)  # a zip / pickle, not safetensors
    with pytest.raises(WeightsFileError, match="not a safetensors file"):
        read_safetensors(str(pickle_like))
    notjson = tmp_path / "nj"
    notjson.write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(WeightsFileError, match="not JSON"):
        read_safetensors(str(notjson))


def test_writer_errors(tmp_path):
    p = str(tmp_path / "w.safetensors")
    with pytest.raises(WeightsFileError, match="complex64"):
        write_safetensors(p, {"c": torch.zeros(2, dtype=torch.complex64)})
    with pytest.raises(WeightsFileError, match="reserved"):
        write_safetensors(p, {"__metadata__": torch.zeros(1)})
    with pytest.raises(WeightsFileError, match="cannot write"):
        write_safetensors(str(tmp_path / "no" / "dir" / "w.safetensors"), {"a": torch.zeros(1)})
