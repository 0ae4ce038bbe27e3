"""Writing files so that nothing half-written is ever left behind."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


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
