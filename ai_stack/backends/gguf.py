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
