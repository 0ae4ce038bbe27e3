"""The file tools: read a file, list a directory, search files — all through the file-access
policy (:mod:`ai_stack.access`), the same gate as ``-f``.

The policy's roots are the working directory and the user's ``files.allow_paths`` (which a
project's config may only narrow, :mod:`ai_stack.trust`); secret locations are refused unless
the user named them with ``--allow-sensitive``; every read counts against the policy's per-file
and total limits, so a run's tool calls cannot read more than ``-f`` could attach. Paths the
model gives are relative to the working directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ai_stack.access import FilePolicy, sensitive_reason
from ai_stack.errors import FileAccessError
from ai_stack.files import read_regular
from ai_stack.tools.base import Tool, ToolError

MAX_LINES = 400  # lines read_file returns at once; more with start_line
MAX_ENTRIES = 200  # entries list_dir returns
MAX_MATCHES = 50  # matching lines search_files returns
MAX_SCANNED = 2000  # files search_files looks at
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv"})


def _path(root: Path, given: Any) -> Path:
    if not isinstance(given, str) or not given.strip():
        raise ToolError("path must be a non-empty string")
    path = Path(given.strip()).expanduser()
    return path if path.is_absolute() else root / path


def _shown(root: Path, path: Path) -> str:
    """``path`` as the model should name it: relative to the working directory where inside."""
    try:
        return str(path.resolve().relative_to(root.resolve())) or "."
    except ValueError:
        return str(path)


def file_tools(policy: FilePolicy, root: Path) -> list[Tool]:
    """``read_file``, ``list_dir`` and ``search_files`` over ``policy``, paths relative to
    ``root`` (the working directory)."""

    def read_file(args: Mapping[str, Any]) -> str:
        path = _path(root, args.get("path"))
        start = int(args.get("start_line") or 1)
        try:
            text = policy.read(path)
        except FileAccessError as error:
            raise ToolError(error.message) from None
        lines = text.splitlines()
        first = max(start, 1) - 1
        part = lines[first : first + MAX_LINES]
        body = "\n".join(f"{first + i + 1:>5}  {line}" for i, line in enumerate(part))
        more = len(lines) - first - len(part)
        if more > 0:
            body += f"\n[{more} more lines: call read_file with start_line={first + len(part) + 1}]"
        return f"{_shown(root, path)} ({len(lines)} lines)\n{body}"

    def list_dir(args: Mapping[str, Any]) -> str:
        path = _path(root, args.get("path") or ".")
        try:
            real = policy.check(path)
        except FileAccessError as error:
            raise ToolError(error.message) from None
        if not real.is_dir():
            raise ToolError(f"{_shown(root, path)} is not a directory")
        entries = []
        for entry in sorted(real.iterdir(), key=lambda p: p.name):
            if sensitive_reason(entry, policy.home) is not None:
                continue  # not even its name: the policy refuses it anyway
            entries.append(entry.name + ("/" if entry.is_dir() else ""))
        shown = entries[:MAX_ENTRIES]
        more = len(entries) - len(shown)
        tail = f"\n[{more} more entries not shown]" if more > 0 else ""
        return f"{_shown(root, path)}/\n" + "\n".join(shown) + tail

    def search_files(args: Mapping[str, Any]) -> str:
        text = args.get("text")
        if not isinstance(text, str) or not text:
            raise ToolError("text must be a non-empty string")
        path = _path(root, args.get("path") or ".")
        try:
            top = policy.check(path)
        except FileAccessError as error:
            raise ToolError(error.message) from None
        needle = text.casefold()
        matches: list[str] = []
        for scanned, file in enumerate(_walk(top, policy), 1):
            if scanned > MAX_SCANNED or len(matches) >= MAX_MATCHES:
                break
            for number, line in enumerate(_text(file, policy).splitlines(), 1):
                if needle in line.casefold():
                    matches.append(f"{_shown(root, file)}:{number}: {line.strip()[:200]}")
                    if len(matches) >= MAX_MATCHES:
                        break
        if not matches:
            return f"no line contains {text!r} under {_shown(root, path)}"
        note = f"\n[stopped at {MAX_MATCHES} matches]" if len(matches) >= MAX_MATCHES else ""
        return "\n".join(matches) + note

    # bounded strings: a small model under a grammar otherwise may not stop writing one
    path_arg = {
        "type": "string",
        "maxLength": 200,
        "description": "relative to the working directory",
    }
    return [
        Tool(
            "read_file",
            "Read a text file (numbered lines, 400 at a time).",
            {
                "type": "object",
                "properties": {"path": path_arg, "start_line": {"type": "integer"}},
                "required": ["path"],
                "additionalProperties": False,
            },
            read_file,
        ),
        Tool(
            "list_dir",
            "List the files and directories in a directory.",
            {
                "type": "object",
                "properties": {"path": path_arg},
                "required": ["path"],
                "additionalProperties": False,
            },
            list_dir,
        ),
        Tool(
            "search_files",
            "Find the lines containing a text (any case) in the files under a directory.",
            {
                "type": "object",
                "properties": {"text": {"type": "string", "maxLength": 200}, "path": path_arg},
                "required": ["text", "path"],
                "additionalProperties": False,
            },
            search_files,
        ),
    ]


def _walk(top: Path, policy: FilePolicy) -> Iterator[Path]:
    """Regular files under ``top`` (or ``top`` itself), in a stable order, without following
    links out of it and without secret locations or version-control directories."""
    if top.is_file():
        yield top
        return
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIPPED_DIRS and sensitive_reason(Path(folder) / d, policy.home) is None
        )
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink() or sensitive_reason(path, policy.home) is not None:
                continue
            yield path


def _text(path: Path, policy: FilePolicy) -> str:
    """The text of ``path`` if it is a text file within the per-file limit, else nothing (a
    search skips binaries and large files rather than failing on them)."""
    try:
        policy.check(path)
        data = read_regular(path, policy.max_file_bytes)
    except (FileAccessError, OSError):
        return ""
    if data is None or b"\0" in data[:8192]:
        return ""
    return data.decode("utf-8", "replace")


__all__ = ["file_tools"]
