"""Writing files so that nothing half-written is ever left behind."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

import psutil

from ai_stack.errors import FileAccessError

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

    For a file the user names (``history export --out``). Only a regular file is replaced so. A
    symbolic link is followed (its target is written, the link stays); a pipe or a device
    (``/dev/null``, ``/dev/full``, a FIFO) is written through, as a shell redirection would: a
    rename would put a regular file in its place. Files in a results directory, whose names
    nobody chose, are written by :class:`OutputDir` instead, which follows no link."""
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


LOCK_NAME = ".ai-stack.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def unresolved(path: Path) -> Path:
    """``path`` made absolute with its parents resolved but not its own name, so a symbolic
    link at that name is seen (``Path.resolve`` would follow it).

    >>> unresolved(Path("/x/../y")).as_posix()
    '/y'
    """
    absolute = Path(os.path.abspath(path))
    return absolute.parent.resolve() / absolute.name if absolute.name else absolute.resolve()


class OutputDir:
    """A directory a batch or an eval writes its results into, held open by descriptor.

    A workflow may come from someone else, and its results directory sits beside it: a link
    planted there (``a.md -> ~/.bashrc``, or the directory itself a link) must not redirect
    a write. So the directory is opened without following a link at its name, every file is
    created inside it through that descriptor (a temporary file, then a rename, which replaces
    a name and never follows it), and a name that is a link is refused. While it is open, it is
    locked: a second run writing to the same directory would mix two runs' files, so it is
    refused, naming the process that holds it. The lock is the OS's (``flock``), released when
    the process ends however it ends; the lock file too is opened without following a link."""

    def __init__(self, path: Path, descriptor: int, lock: int | None) -> None:
        self.path = path
        self._fd = descriptor
        self._lock = lock
        self._children: list[OutputDir] = []

    @classmethod
    def open(cls, path: Path) -> OutputDir:
        """Make (if missing), open and lock the directory ``path``; a clear
        :class:`FileAccessError` when it is a link, not a directory, cannot be written or is
        in use by another process. Nothing is written into it but the lock file."""
        path = unresolved(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with suppress(FileExistsError):
                os.mkdir(path)
            descriptor = os.open(path, _DIRECTORY)
        except OSError as exc:
            raise _refusal(path, exc) from None
        try:
            return cls(path, descriptor, _lock(path, descriptor))
        except BaseException:
            os.close(descriptor)
            raise

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock and the descriptors (closing twice is harmless)."""
        for child in self._children:
            child.close()
        for descriptor in (self._lock, self._fd):
            if descriptor is not None and descriptor >= 0:
                os.close(descriptor)
        self._lock, self._fd = None, -1

    def subdir(self, name: str) -> OutputDir:
        """The directory ``name`` inside this one, made if missing, opened like this one (its
        lock is this one's); closed with it."""
        path = self.path / _single(name)
        try:
            with suppress(FileExistsError):
                os.mkdir(name, dir_fd=self._fd)
            child = OutputDir(path, os.open(name, _DIRECTORY, dir_fd=self._fd), None)
        except OSError as exc:
            raise _refusal(path, exc) from None
        self._children.append(child)
        return child

    def refuse_links(self, names: Iterable[str]) -> None:
        """Refuse now, before any work, names this directory holds as links (a later write
        would refuse them too, after the work)."""
        for name in names:
            self._kind(name)

    def exists(self, name: str) -> bool:
        return self._kind(name) is not None

    def read(self, name: str, limit: int) -> bytes | None:
        """The bytes of the regular file ``name`` (at most ``limit``; None when it holds
        more), never through a link."""
        self._kind(name)
        try:
            descriptor = os.open(name, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK, dir_fd=self._fd)
        except OSError as exc:
            raise _refusal(self.path / name, exc) from None
        with os.fdopen(descriptor, "rb", buffering=0) as handle:
            return read_limited(handle, limit)

    def write(self, name: str, text: str) -> None:
        """Write ``text`` to ``name`` in this directory atomically: a reader (or a crash) sees
        the old file or the new one, never half of one, and a link at ``name`` is refused."""
        if self._kind(name) == "directory":
            raise _refusal(self.path / name, IsADirectoryError(errno.EISDIR, "is a directory"))
        temporary = f".{name}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            descriptor = os.open(temporary, flags, 0o600, dir_fd=self._fd)
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(temporary, dir_fd=self._fd)
                raise
        except OSError as exc:
            raise _refusal(self.path / name, exc) from None

    def _kind(self, name: str) -> str | None:
        """What ``name`` is here (None: nothing); a link raises :class:`FileAccessError`."""
        try:
            mode = os.stat(_single(name), dir_fd=self._fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _refusal(self.path / name, exc) from None
        if stat.S_ISLNK(mode):
            raise _refusal(self.path / name, OSError(errno.ELOOP, "is a symbolic link"))
        return "directory" if stat.S_ISDIR(mode) else "file"


def _single(name: str) -> str:
    """A name inside the directory, never a path out of it."""
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"not a file name: {name!r}")
    return name


def _lock(path: Path, directory: int) -> int:
    """Lock ``path`` (open as ``directory``) for this process: the lock file's descriptor,
    holding this process's id for whoever is refused."""
    flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(LOCK_NAME, flags, 0o600, dir_fd=directory)
    except OSError as exc:
        raise _refusal(path, exc) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 64, 0).decode("ascii", "replace").strip()
        os.close(descriptor)
        raise FileAccessError(
            str(path),
            f"{path} is in use by another ai-stack run ({_describe(holder)}): two runs writing "
            "one results directory would mix their files.",
            hint="Wait for that run to finish, or write elsewhere with --out DIR.",
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
    return descriptor


def _describe(holder: str) -> str:
    """``pid 4242: ai-stack batch flow.yaml`` — the process holding a lock, as far as known."""
    if not holder.isdigit():
        return "its process id is unknown"
    try:
        command = " ".join(psutil.Process(int(holder)).cmdline())
    except psutil.Error:
        return f"pid {holder}"
    return f"pid {holder}: {command[:120]}" if command else f"pid {holder}"


def _refusal(path: Path, exc: OSError) -> FileAccessError:
    """One clear message for an output path that cannot be used (a link is named as one
    whatever the call said: opening one as a directory says ENOTDIR)."""
    code = errno.ELOOP if os.path.islink(path) else exc.errno
    why = {
        errno.ELOOP: "is a symbolic link; results are never written through a link",
        errno.ENOTDIR: "is not a directory",
        errno.EEXIST: "is not a directory",
        errno.EISDIR: "is a directory",
    }.get(code or 0, f"cannot be written ({exc.strerror or exc})")
    hint = "Write the results elsewhere with --out DIR."
    if code in (errno.ELOOP, errno.EISDIR):  # something in the way, and not a result of ours
        hint = "Remove it, or write the results elsewhere with --out DIR."
    return FileAccessError(str(path), f"{path} {why}.", hint=hint)
