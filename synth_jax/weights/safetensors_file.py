"""The safetensors file format, read and written with numpy (no PyTorch, no extra dependency).

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header
length N, then N bytes of JSON `{name: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
"__metadata__": {str: str}}` (padded with spaces to a multiple of 8), then the tensors' raw
little-endian bytes; offsets count from the end of the header and cover the data exactly.
bfloat16 arrays use ml_dtypes' numpy type (installed with JAX).
"""

from __future__ import annotations

import json
import os
import struct

import ml_dtypes
import numpy as np

from synth_jax import files
from synth_jax.errors import UsageError

DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
MAX_HEADER = 100 * 2**20  # the reference implementation's limit


def read(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors {name: array}, metadata) of the file at `path`.

    Raises UsageError (one line naming the file) for a truncated or malformed file.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise UsageError(f"{path}: not a safetensors file ({size} bytes, no header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise UsageError(
                    f"{path}: truncated or not a safetensors file (the header says {n} bytes, "
                    f"the file has {size - 8}); copy the file again"
                )
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: cannot read a safetensors header ({type(e).__name__})") from e
    if not isinstance(header, dict):
        raise UsageError(f"{path}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start, data_size = 8 + n, size - 8 - n
    spans = []
    for name, entry in header.items():
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                f"{path}: tensor {name!r} has a bad header entry {entry!r} (dtype one of "
                f"{', '.join(DTYPES)})"
            ) from None
        if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or begin > end:
            raise UsageError(f"{path}: tensor {name!r}: offsets {begin}..{end} do not fit {shape}")
        spans.append((begin, end, name, dtype, shape))
    spans.sort()
    covered = 0
    for begin, end, name, _, _ in spans:
        if begin != covered:
            raise UsageError(f"{path}: tensor {name!r} does not start where the previous ends")
        covered = end
    if covered > data_size:
        raise UsageError(
            f"{path}: truncated (the header promises {covered} bytes of tensor data, the file "
            f"holds {data_size}); copy the file again"
        )
    if covered < data_size:
        raise UsageError(f"{path}: {data_size - covered} bytes after the last tensor")
    tensors = {}
    if covered:
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(covered,))
        for begin, end, name, dtype, shape in spans:
            tensors[name] = np.array(raw[begin:end]).view(dtype).reshape(shape)
        del raw
    else:
        tensors = {name: np.zeros(shape, dtype) for _, _, name, dtype, shape in spans}
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _little_endian(array) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.byteorder == ">":
        return array.astype(array.dtype.newbyteorder("<"))
    return array


def header_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """The 8-byte length and the padded JSON header for `tensors`, stored in sorted-name order."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        array = _little_endian(tensors[name])
        if array.dtype not in _NAMES:
            raise ValueError(f"tensor {name!r}: dtype {array.dtype} has no safetensors name")
        header[name] = {
            "dtype": _NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None):
    """Writes `tensors` atomically: a reader never sees a half-written file."""
    with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header_bytes(tensors, metadata))
        for name in sorted(tensors):
            array = np.ascontiguousarray(_little_endian(tensors[name])).reshape(-1)
            f.write(array.view(np.uint8).data)
        f.flush()
        os.fsync(f.fileno())
