"""The file-access policy: the one gate every file passes before it becomes model context.

A model's context can reach a remote server (``OLLAMA_HOST``) and is stored in the history, and
a workflow file may come from someone else. So a file is read only if:

- its real path (symlinks resolved first) lies inside an allowed directory — the workflow's own
  directory, or one the user allowed (``--allow-path DIR``, ``files.allow_paths``); files the
  user names on the command line are allowed by naming them;
- it is not in a secret location (keys, credentials, keychains, browser profiles, ``.env``
  files, ...; names compared without regard to case, as macOS and Windows file systems do),
  unless the user named that path, or a directory holding it, with ``--allow-sensitive PATH``;
- it is text (UTF-8, no NUL bytes) and within the size limits, per file and in total.

docs/files.md lists the rules; keep the two in step.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ai_stack.errors import FileAccessError
from ai_stack.files import read_regular

KIB = 1024

# Secret locations under the home directory (a directory covers everything in it).
SENSITIVE_IN_HOME = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".kube",
    ".docker/config.json",
    ".netrc",
    ".pgpass",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".password-store",
    ".config/gh",
    ".config/git/credentials",
    ".cache/huggingface/token",
    ".huggingface/token",
    ".vault-token",
    "Library/Keychains",
    ".mozilla",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".config/microsoft-edge",
    "snap/firefox",
    "Library/Application Support/Google/Chrome",
    "Library/Application Support/Firefox",
    "Library/Safari",
)
# Secret files wherever they are, by name.
SENSITIVE_NAMES = (
    ".env",
    ".env.*",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.keychain",
    "*.keychain-db",
)
SENSITIVE_ABSOLUTE = (
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ssh",
    "/private/etc/master.passwd",
)


def sensitive_reason(path: Path, home: Path) -> str | None:
    """Why ``path`` (resolved) is a secret location, or None. Case does not matter: on a file
    system that ignores it (macOS, Windows) ``~/.SSH/ID_RSA`` is ``~/.ssh/id_rsa``, and a
    ``server.PEM`` holds what a ``server.pem`` does.

    >>> home = Path("/home/u")
    >>> sensitive_reason(Path("/home/u/.ssh/config"), home)
    '~/.ssh holds secrets'
    >>> sensitive_reason(Path("/srv/app/.env.local"), home)
    'files named .env.* hold secrets'
    >>> sensitive_reason(Path("/srv/app/ID_RSA"), home)
    'files named id_rsa* hold secrets'
    >>> sensitive_reason(Path("/srv/app/notes.txt"), home) is None
    True
    """
    folded = _folded(path)
    for name in SENSITIVE_IN_HOME:
        if _within(folded, _folded(home / name)):
            return f"~/{name} holds secrets"
    for pattern in SENSITIVE_NAMES:
        if fnmatch.fnmatchcase(folded.name, pattern):
            return f"files named {pattern} hold secrets"
    for name in SENSITIVE_ABSOLUTE:
        if _within(folded, _folded(Path(name))):
            return f"{name} holds secrets"
    return None


@dataclass
class FilePolicy:
    """Decides which files may be read as model context, and reads them.

    ``roots`` empty means files are allowed by being named (the command line); otherwise a file
    must lie inside one of them. ``read`` counts bytes against ``max_total_bytes`` across calls.
    """

    roots: tuple[Path, ...] = ()
    allowed_sensitive: frozenset[Path] = frozenset()
    max_file_bytes: int = 512 * KIB
    max_total_bytes: int = 2048 * KIB
    home: Path = field(default_factory=Path.home)
    read_bytes: int = 0

    @classmethod
    def create(
        cls,
        roots: Iterable[Path] = (),
        allowed_sensitive: Iterable[Path] = (),
        *,
        max_file_kb: int = 512,
        max_total_kb: int = 2048,
        home: Path | None = None,
    ) -> FilePolicy:
        return cls(
            tuple(_real(root) for root in roots),
            frozenset(_real(path) for path in allowed_sensitive),
            max_file_kb * KIB,
            max_total_kb * KIB,
            _real(home or Path.home()),
        )

    def check(self, path: Path) -> Path:
        """The real path of ``path`` if it may be read; a FileAccessError saying why not."""
        real = _real(path)
        if self.roots and not any(_within(real, root) for root in self.roots):
            where = " or ".join(str(root) for root in self.roots)
            raise FileAccessError(
                str(path),
                f"{_shown(path, real)} is outside the allowed directories ({where}).",
                hint="Allow its directory with --allow-path DIR (or files.allow_paths).",
            )
        reason = sensitive_reason(real, self.home)
        if reason is not None and not any(_within(real, p) for p in self.allowed_sensitive):
            raise FileAccessError(
                str(path),
                f"Refusing to read {_shown(path, real)}: {reason}.",
                hint=f"If you really mean to send it to a model, name it: --allow-sensitive {real}",
            )
        return real

    def read(self, path: Path) -> str:
        """The text of ``path``, checked and within the limits. Only a regular file is read: a
        pipe or a device named as a file (``-f /dev/stdin``, ``-f /dev/zero``) would block or
        never end."""
        try:
            mode = os.stat(path.expanduser()).st_mode
        except OSError:
            mode = None  # missing or unreadable: said below, after the policy's own checks
        if mode is not None and not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "a pipe or a device"
            raise FileAccessError(
                str(path),
                f"{path} is {what}, not a regular file.",
                hint="Pipe what it holds into ai-stack instead: cat FILE | ai-stack TASK",
            )
        real = self.check(path)
        try:
            size = real.stat().st_size
            if not real.is_file():
                raise FileAccessError(str(path), f"{path} is not a file.")
            if size > self.max_file_bytes:
                raise FileAccessError(
                    str(path),
                    f"{path} is {_kib(size)}, over the {_kib(self.max_file_bytes)} limit for one "
                    "file.",
                    hint="Raise files.max_file_kb in the config, or pass a smaller excerpt.",
                )
            if self.read_bytes + size > self.max_total_bytes:
                raise FileAccessError(
                    str(path),
                    f"Reading {path} would bring the files to {_kib(self.read_bytes + size)}, "
                    f"over the {_kib(self.max_total_bytes)} limit in total.",
                    hint="Raise files.max_total_kb in the config, or attach fewer files.",
                )
            data = read_regular(real, self.max_file_bytes)
            if data is None:  # it grew past the limit since its size was read
                raise FileAccessError(str(path), f"{path} is over the limit for one file.")
        except FileNotFoundError:
            raise FileAccessError(str(path), f"File not found: {path}") from None
        except PermissionError:
            raise FileAccessError(str(path), f"Permission denied: {path}") from None
        except OSError as exc:
            raise FileAccessError(str(path), f"Cannot read {path}: {exc.strerror}") from None
        return self.admit(str(path), data)

    def admit(self, name: str, data: bytes) -> str:
        """``data`` as text if it may become model context: text, and within the limits. For
        input that is not a named file (piped stdin), and the last step of :meth:`read`."""
        if len(data) > self.max_file_bytes:
            raise FileAccessError(
                name,
                f"{name} is {_kib(len(data))}, over the {_kib(self.max_file_bytes)} limit for one "
                "file.",
                hint="Raise files.max_file_kb in the config, or pass a smaller excerpt.",
            )
        if b"\0" in data[: 8 * KIB]:
            raise FileAccessError(
                name, f"{name} is a binary file; only text can be given to a model."
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FileAccessError(
                name, f"{name} is not UTF-8 text.", hint="Convert it to UTF-8 first."
            ) from None
        if self.read_bytes + len(data) > self.max_total_bytes:
            raise FileAccessError(
                name,
                f"Reading {name} would bring the files to {_kib(self.read_bytes + len(data))}, "
                f"over the {_kib(self.max_total_bytes)} limit in total.",
                hint="Raise files.max_total_kb in the config, or attach fewer files.",
            )
        self.read_bytes += len(data)
        return text


def _within(path: Path, place: Path) -> bool:
    """Whether ``path`` is ``place`` or lies inside it."""
    return path == place or place in path.parents


def _folded(path: Path) -> Path:
    return Path(str(path).casefold())


def _shown(path: Path, real: Path) -> str:
    """``path`` as a message names it: with where it really points when that differs (a link,
    or a link among its directories), so a refusal says what it refused."""
    if real != Path(os.path.normpath(Path(path).expanduser().absolute())):
        return f"{path} (a link to {real})"
    return str(path)


def _real(path: Path) -> Path:
    return Path(path).expanduser().resolve()


def _kib(n: int) -> str:
    return f"{n / KIB:,.0f} KiB" if n < 1024 * KIB else f"{n / KIB / 1024:,.1f} MiB"


__all__ = ["FilePolicy", "sensitive_reason"]
