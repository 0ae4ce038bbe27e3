"""Writing files so that nothing half-written is ever left behind."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

CHUNK = 64 * 1024


def read_limited(handle: BinaryIO, limit: int) -> bytes | None:
    """At most ``limit`` bytes of ``handle``, read in chunks; None when it holds more. Never
    trusts a size the file system reports: a device or a pipe reports 0 and may never end.

    >>> import io
    >>> read_limited(io.BytesIO(b"abc"), 3), read_limited(io.BytesIO(b"abcd"), 3)
    (b'abc', None)
    """
    chunks, size = [], 0
    while size <= limit:
        chunk = handle.read(min(CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > limit else b"".join(chunks)


def read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path``, at most ``limit`` (None when it holds more). Only a regular
    file is read: a directory, a pipe or a device raises :class:`NotARegularFile` before any
    read (a FIFO would block, ``/dev/zero`` never ends)."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO: no wait
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a pipe or a device"
            raise NotARegularFile(errno.EINVAL, f"is {kind}, not a regular file", str(path))
        return read_limited(handle, limit)


class NotARegularFile(OSError):
    """A path where a regular file is expected names a directory, a pipe or a device."""


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: a reader (or a crash) sees
    the old file or the new one, never half of one.

    Only a regular file is replaced so. A symbolic link is followed (its target is written, the
    link stays); a pipe or a device (``/dev/null``, ``/dev/full``, a FIFO) is written through,
    as a shell redirection would: a rename would put a regular file in its place."""
    if path.is_symlink():
        path = path.resolve()
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        with open(path, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
