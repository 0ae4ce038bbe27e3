"""A minimal reader for GGUF metadata (the key/value header of a llama.cpp model file).

Enough to validate a file and estimate its memory footprint without loading it. The ``gguf``
package from llama.cpp can do this too, but it maps every tensor and token and took seconds per
file here; this reads only the header and skips large arrays, in milliseconds.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from ai_stack.errors import GGUFError

MAGIC = b"GGUF"
_SCALARS = {  # value type -> struct format (little-endian)
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAYS_UP_TO = 1024  # longer arrays (token lists) are skipped, read back as None
# ggml tensor type -> (elements per block, bytes per block), for the size of the last tensor
_BLOCKS = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 36),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
}


def read_metadata(path: Path) -> dict[str, Any]:
    """Every metadata key of a GGUF file; long arrays (vocabularies) come back as ``None``."""
    with path.open("rb") as handle:
        if handle.read(4) != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file")
        version = _read(handle, "<I")
        if version < 2:
            raise GGUFError(f"{path} uses GGUF version {version}; only 2 and later are supported")
        _read(handle, "<Q")  # tensor count
        count = _read(handle, "<Q")
        metadata: dict[str, Any] = {}
        try:
            for _ in range(count):
                key = _read_string(handle)
                metadata[key] = _read_value(handle, _read(handle, "<I"))
        except (struct.error, UnicodeDecodeError) as exc:
            raise GGUFError(f"{path} has a damaged GGUF header ({exc})") from None
        return metadata


def expected_size(path: Path) -> int:
    """How many bytes the file must have for every tensor its header lists: where the data
    starts plus the last tensor's offset and size (its offset only, for a type not known
    here). A download cut short is smaller."""
    with path.open("rb") as handle:
        try:
            handle.seek(8)  # magic, version (read_metadata has checked both)
            tensors = _read(handle, "<Q")
            alignment = 32
            for _ in range(_read(handle, "<Q")):
                key = _read_string(handle)
                value = _read_value(handle, _read(handle, "<I"))
                if key == "general.alignment" and isinstance(value, int) and value > 0:
                    alignment = value
            end = 0
            for _ in range(tensors):
                _read_string(handle)
                shape = [_read(handle, "<Q") for _ in range(_read(handle, "<I"))]
                kind, offset = _read(handle, "<I"), _read(handle, "<Q")
                elements, size = _BLOCKS.get(kind, (1, 0))
                count = 1
                for dimension in shape:
                    count *= dimension
                end = max(end, offset + count // elements * size)
        except (struct.error, UnicodeDecodeError) as exc:
            raise GGUFError(f"{path} has a damaged GGUF header ({exc})") from None
        start = -(-handle.tell() // alignment) * alignment
        return start + end


def _read(handle: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise struct.error("unexpected end of file")
    return struct.unpack(fmt, data)[0]


def _read_string(handle: BinaryIO) -> str:
    length = _read(handle, "<Q")
    data = handle.read(length)
    if len(data) != length:
        raise struct.error("unexpected end of file")
    return data.decode("utf-8")


def _read_value(handle: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(handle, _SCALARS[kind])
    if kind == _STRING:
        return _read_string(handle)
    if kind == _ARRAY:
        item_kind = _read(handle, "<I")
        length = _read(handle, "<Q")
        if length > _KEEP_ARRAYS_UP_TO:
            _skip_array(handle, item_kind, length)
            return None
        return [_read_value(handle, item_kind) for _ in range(length)]
    raise struct.error(f"unknown value type {kind}")


def _skip_array(handle: BinaryIO, kind: int, length: int) -> None:
    if kind in _SCALARS:
        handle.seek(struct.calcsize(_SCALARS[kind]) * length, 1)
    elif kind == _STRING:
        for _ in range(length):
            handle.seek(_read(handle, "<Q"), 1)
    else:
        for _ in range(length):
            _read_value(handle, kind)
