"""ONNX Runtime session settings that a model artifact asks for, shared by the server and the compress toolkit.

A weight-only compressed graph (``compress.weight_only``) stores its weights INT8/INT4 behind
``DequantizeLinear`` and marks itself with :data:`DEQUANTIZE_ON_LOAD`. ORT keeps DequantizeLinear nodes
unfolded by default (so QDQ models can fuse them into integer kernels); with ``session.disable_quant_qdq`` it
constant-folds them once at session creation, and the session runs FP32 kernels on FP32 weights. Without the
setting the same graph re-dequantizes every weight on every call (2x slower per query, measured).
"""

from __future__ import annotations

import mmap
from pathlib import Path

DEQUANTIZE_ON_LOAD = "shopinfer.dequantize_weights_on_load"  # ONNX metadata_props key, value "1"
_METADATA_PROPS = 14  # ModelProto field number of metadata_props


def _varint(buf: mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def model_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path``, read without parsing the graph.

    Walks the top-level protobuf fields of the memory-mapped file and skips every other one by its length, so the
    weights are neither parsed nor paged in: a model load does not read its file twice.
    """
    from onnx import StringStringEntryProto

    props: dict[str, str] = {}
    if path.stat().st_size == 0:  # mmap refuses empty files; an empty file has no metadata (ORT rejects it later)
        return props
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos, end = 0, len(buf)
        while pos < end:
            tag, pos = _varint(buf, pos)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, pos = _varint(buf, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _varint(buf, pos)
                if field == _METADATA_PROPS:
                    entry = StringStringEntryProto.FromString(buf[pos : pos + size])
                    props[entry.key] = entry.value
                pos += size
            else:
                raise ValueError(f"{path}: not an ONNX model (protobuf wire type {wire} at byte {pos})")
    return props


def wants_dequantize_on_load(path: Path) -> bool:
    """Whether the ONNX file at ``path`` is marked weight-only (read from its metadata, not its name)."""
    return model_metadata(path).get(DEQUANTIZE_ON_LOAD) == "1"


def session_config(path: Path) -> dict[str, str]:
    """Session config entries ``path`` needs: none for ordinary graphs (QDQ fusion stays on)."""
    return {"session.disable_quant_qdq": "1"} if wants_dequantize_on_load(path) else {}
