"""Expose an intermediate tensor of a serialised ONNX model as an extra graph output, without the `onnx` package.

The attack check's span head reads the encoder's token states, which the shipped graph pools away. Re-exporting the
encoder would add another 22 MB to git history for the same weights, and the `onnx` package is not a runtime
dependency, so the output is appended in the protobuf wire format: ModelProto.graph (field 7) gains one
GraphProto.output (field 12), a ValueInfoProto {name: 1, type: 2 {tensor_type: 1 {elem_type: 1}}}. Every other byte
of the model is kept as it is.
"""

from __future__ import annotations

FLOAT = 1  # onnx.TensorProto.FLOAT
_LEN = 2  # protobuf wire type of length-delimited fields


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated ONNX model (varint past the end)")
        b = buf[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return n, i
        shift += 7


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def with_output(model: bytes, name: str, elem_type: int = FLOAT) -> bytes:
    """`model` (a serialised ModelProto) with the tensor `name` added to its graph's outputs."""
    tensor_type = _varint(1 << 3) + _varint(elem_type)  # TypeProto.Tensor.elem_type, a varint
    value_info = _field(1, name.encode()) + _field(2, _field(1, tensor_type))
    out = bytearray()
    i, found = 0, False
    while i < len(model):
        start = i
        key, i = _read_varint(model, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _read_varint(model, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == _LEN:
            size, j = _read_varint(model, i)
            i = j + size
            if i > len(model):
                raise ValueError("truncated ONNX model (field past the end)")
            if number == 7:
                out += _field(7, model[j:i] + _field(12, value_info))
                found = True
                continue
        else:
            raise ValueError(f"not an ONNX model (protobuf wire type {wire})")
        out += model[start:i]
    if not found:
        raise ValueError("not an ONNX model (no graph)")
    return bytes(out)
