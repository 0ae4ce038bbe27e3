"""A minimal reader for GGUF metadata (the key/value header of a llama.cpp model file).

Enough to validate a file and estimate its memory footprint without loading it. The ``gguf``
package from llama.cpp can do this too, but it maps every tensor and token and took seconds per
file here; this reads only the header and skips large arrays, in milliseconds.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
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
    with path.open("rb") as handle, _damaged(path):
        reader = _Reader(handle)
        if handle.read(4) != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file")
        version = reader.scalar("<I")
        if version < 2:
            raise GGUFError(f"{path} uses GGUF version {version}; only 2 and later are supported")
        reader.scalar("<Q")  # tensor count
        return reader.metadata()


def expected_size(path: Path) -> int:
    """How many bytes the file must have for every tensor its header lists: where the data
    starts plus the last tensor's offset and size (its offset only, for a type not known
    here). A download cut short is smaller."""
    with path.open("rb") as handle, _damaged(path):
        reader = _Reader(handle)
        handle.seek(8)  # magic, version (read_metadata has checked both)
        tensors = reader.count("<Q", _TENSOR_INFO_BYTES)
        alignment = reader.metadata().get("general.alignment")
        if not isinstance(alignment, int) or alignment <= 0:
            alignment = 32
        end = 0
        for _ in range(tensors):
            reader.string(keep=False)
            dimensions = reader.scalar("<I")
            if dimensions > _MAX_DIMENSIONS:
                raise _Damage(f"a tensor with {dimensions} dimensions")
            shape = [reader.scalar("<Q") for _ in range(dimensions)]
            kind, offset = reader.scalar("<I"), reader.scalar("<Q")
            elements, size = _BLOCKS.get(kind, (1, 0))
            end = max(end, offset + math.prod(shape) // elements * size)
        start = -(-handle.tell() // alignment) * alignment
        return start + end


class _Damage(Exception):
    """What makes a header unreadable; ``read_metadata`` names the file."""


@contextmanager
def _damaged(path: Path) -> Iterator[None]:
    try:
        yield
    except _Damage as exc:
        raise GGUFError(f"{path} has a damaged GGUF header ({exc})") from None
    except UnicodeDecodeError as exc:
        raise GGUFError(f"{path} has a damaged GGUF header ({exc.reason})") from None


# Bounds for a header someone may have crafted: each is far above what llama.cpp writes (a few
# dozen keys, one level of arrays, chat templates of some KiB, vocabularies of some 10^5 items).
_MAX_KEYS = 1 << 16
_MAX_DEPTH = 3  # an array of arrays of arrays
_MAX_STRING = 16 << 20  # bytes of one string kept
_MAX_TEXT = 64 << 20  # bytes of all the strings kept
_MAX_VALUES = 1 << 22  # values read or skipped in one header: the total work
_MAX_KEPT = 1 << 16  # items of the short arrays kept (nested ones could multiply)
_MAX_DIMENSIONS = 4  # GGML_MAX_DIMS
_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # the least a tensor's entry can take: an empty name, ...


class _Reader:
    """Reads a GGUF header within the bounds above. No count is trusted before it is checked
    against the bytes left in the file, so a crafted length fails at once instead of making
    the reader allocate, recurse or loop without end."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.size = os.fstat(handle.fileno()).st_size
        self.values = 0
        self.kept = 0
        self.text = 0

    def metadata(self) -> dict[str, Any]:
        count = self.count("<Q", 8 + 4)  # each key: its length, its value's type
        if count > _MAX_KEYS:
            raise _Damage(f"{count:,} keys")
        found: dict[str, Any] = {}
        for _ in range(count):
            key = self.string()
            found[key] = self.value(self.scalar("<I"), depth=0)
        return found

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = self.handle.read(size)
        if len(data) != size:
            raise _Damage("unexpected end of file")
        return struct.unpack(fmt, data)[0]

    def count(self, fmt: str, each: int) -> int:
        """A count of items, each at least ``each`` bytes: more than the file holds is damage."""
        number: int = self.scalar(fmt)
        if number * each > self.size - self.handle.tell():
            raise _Damage(f"a count of {number:,} that what is left of the file cannot hold")
        return number

    def string(self, *, keep: bool = True) -> str:
        length = self.count("<Q", 1)
        self.work(1)
        if not keep:
            self.handle.seek(length, 1)
            return ""
        self.text += length
        if length > _MAX_STRING or self.text > _MAX_TEXT:
            raise _Damage(f"a string of {length:,} bytes")
        return self.handle.read(length).decode("utf-8")

    def value(self, kind: int, depth: int) -> Any:
        if kind in _SCALARS:
            self.work(1)
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise _Damage(f"unknown value type {kind}")
        if depth >= _MAX_DEPTH:
            raise _Damage(f"arrays nested deeper than {_MAX_DEPTH}")
        item = self.scalar("<I")
        length = self.count("<Q", struct.calcsize(_SCALARS.get(item, "<Q")))
        if length > _KEEP_ARRAYS_UP_TO:
            self.skip(item, length, depth + 1)
            return None
        self.kept += length
        if self.kept > _MAX_KEPT:
            raise _Damage(f"more than {_MAX_KEPT:,} items in short arrays")
        return [self.value(item, depth + 1) for _ in range(length)]

    def skip(self, kind: int, length: int, depth: int) -> None:
        if kind in _SCALARS:
            self.work(1)
            self.handle.seek(struct.calcsize(_SCALARS[kind]) * length, 1)
        elif kind == _STRING:
            for _ in range(length):
                self.string(keep=False)
        else:
            for _ in range(length):
                self.value(kind, depth)

    def work(self, values: int) -> None:
        self.values += values
        if self.values > _MAX_VALUES:
            raise _Damage(f"more than {_MAX_VALUES:,} values")
