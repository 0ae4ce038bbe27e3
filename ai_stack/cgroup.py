"""A pids cgroup for one sandbox run: the kernel's bound on how many processes it may have, and
a list of every one of them to kill at the end — including those that left its process group.

ai-stack can make one where it may write to a pids hierarchy: as root, on cgroup v1
(``/sys/fs/cgroup/pids``) or at the root of a cgroup v2 tree with the pids controller enabled.
That is the case that needs it: ``RLIMIT_NPROC`` does not bind root. Elsewhere
:meth:`PidsCgroup.make` returns ``None`` and the sandbox's other bounds apply.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

HIERARCHIES = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


class PidsCgroup:
    """One run's cgroup; :meth:`join` is called in the child before it starts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def make(cls, limit: int) -> PidsCgroup | None:
        """A new cgroup that holds at most ``limit`` processes and threads, or ``None`` where
        this process may not make one."""
        if os.geteuid() != 0:
            return None
        for hierarchy in HIERARCHIES:
            if not (hierarchy / "cgroup.procs").exists():  # not a cgroup file system
                continue
            path = hierarchy / f"ai-stack-run-{uuid.uuid4().hex[:12]}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / "pids.max").write_text(str(limit))
            except OSError:  # no pids controller here
                path.rmdir()
                continue
            return cls(path)
        return None

    def join(self) -> None:
        """Move the calling process into the cgroup (run in the child, before ``exec``)."""
        with open(self.path / "cgroup.procs", "w") as procs:
            procs.write("0")

    def members(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self, patience: float = 2.0) -> None:
        """Kill every process still in it, then remove it (a cgroup goes once it is empty)."""
        deadline = time.monotonic() + patience
        while True:
            for pid in self.members():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    return  # left behind: the kernel frees it once its last process is reaped
                time.sleep(0.02)


__all__ = ["PidsCgroup"]
