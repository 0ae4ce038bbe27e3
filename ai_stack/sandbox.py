"""Running model-written code, and only this way.

Every run happens in a fresh temporary directory, with no stdin, a scrubbed environment (no
credentials: only ``PATH``, ``HOME``, ``TMPDIR``, ``LANG``), and limits on wall and CPU time,
memory (address space), output read back, and the size of files written. Where the platform
allows, it is also isolated:

- **Linux, bubblewrap** (``bwrap``): new user, PID, network, IPC and UTS namespaces and all
  capabilities dropped. Only the system directories (``/usr``, ``/bin``, ``/lib*``, a few files of
  ``/etc``) and the Python installation are visible, read-only; ``/tmp`` and the run's directory
  are private tmpfs mounts of a bounded size (the run's files are copied in), the only writable
  places. No network at all (not even loopback to the host). The home directory,
  ``/etc/shadow`` and everything else are simply not there. The number of processes is bounded
  inside the sandbox's user namespace; when ai-stack runs as root, bubblewrap runs as an
  unprivileged user (root is exempt from process limits, and the code is then not root outside
  the namespace either).
- **macOS, sandbox-exec**: a deny-by-default profile that allows reading the system and the
  Python installation, writing only in the run's directory, and no network.

Without either, code runs only if the user opted in (``--exec`` / ``evidence.exec``): then it
still gets the directory, the limits and the scrubbed environment, but can reach the network,
read what the user can (ai-stack's own environment too, through ``/proc``) and write wherever the
user can. Its process group is killed when the run ends (as root, every process it started).
docs/sandbox.md says exactly what holds where.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from ai_stack.cgroup import PidsCgroup

Isolation = Literal["bubblewrap", "sandbox-exec", "none"]
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "passwd",
    "group",
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "alternatives",
)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may use. The defaults suit the small programs a model answer contains."""

    seconds: float = 10.0
    memory_mb: int = 512
    output_kb: int = 64
    file_mb: int = 16
    disk_mb: int = 64  # all it may write to each of its tmpfs mounts (bubblewrap only)
    processes: int = 64  # processes and threads at once (bubblewrap only)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended. ``stdout``/``stderr`` are cut at the output limit (``truncated``)."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.truncated

    def describe(self) -> str:
        """One line on how it ended, for evidence shown to a model."""
        if self.timed_out:
            return "killed: over the time limit"
        if self.truncated:
            return "killed: over the output limit"
        return f"exit code {self.returncode}"


# Run first inside the sandbox: sets the process limit from within its user namespace, where the
# count is of the sandbox's own processes (set outside, it would count every process the user
# has), then becomes the command. Root is exempt from it: there a pids cgroup bounds the run.
LIMIT_PROCESSES = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NPROC, (n, n)); os.execvp(sys.argv[2], sys.argv[2:])"
)


def bubblewrap_command(
    workdir: Path, limits: Limits, argv: list[str], files: Mapping[str, int] | None = None
) -> list[str]:
    """The command line that runs ``argv`` under bubblewrap in ``workdir``; ``files`` maps each
    file of the run to an open descriptor of it."""
    binary = shutil.which("bwrap") or "bwrap"
    limit = [python_executable(), "-E", "-s", "-c", LIMIT_PROCESSES, str(limits.processes)]
    return [binary, *_bwrap_args(workdir, limits, files or {}), "--", *limit, *argv]


@cache
def _bubblewrap_works() -> bool:
    """bwrap on PATH, new enough (0.5, for ``--size``) and allowed to make its namespaces here
    (containers may forbid it), tried by running the sandbox's Python in it."""
    if shutil.which("bwrap") is None:
        return False
    try:
        done = subprocess.run(
            bubblewrap_command(Path("/"), Limits(), ["true"]),
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def detect_isolation() -> Isolation:
    """The best isolation this machine offers."""
    if platform.system() == "Linux" and _bubblewrap_works():
        return "bubblewrap"
    if platform.system() == "Darwin" and shutil.which("sandbox-exec"):
        return "sandbox-exec"
    return "none"


def python_executable() -> str:
    """The base interpreter (not a virtualenv's), for running model code with the stdlib only."""
    return str(Path(sys.executable).resolve())


def _python_dirs() -> list[Path]:
    dirs = {Path(sys.base_prefix).resolve(), Path(sys.base_exec_prefix).resolve()}
    return sorted(d for d in dirs if d != Path("/"))


def _bwrap_args(workdir: Path, limits: Limits, files: Mapping[str, int]) -> list[str]:
    """bubblewrap's arguments: ``files`` maps each file of the run (relative to ``workdir``) to
    an open descriptor of it, copied into the run's tmpfs."""
    args = [
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "1000",
        "--gid",
        "1000",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
    ]
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in ETC_FILES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for path in _python_dirs():
        args += ["--ro-bind", str(path), str(path)]
    size = str(limits.disk_mb * 1024**2)
    args += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/tmp"]
    if workdir != Path("/"):
        args += ["--size", size, "--tmpfs", str(workdir)]
        made = {workdir}
        for name, fd in files.items():
            target = workdir / name
            for parent in reversed(target.parents):
                if parent.is_relative_to(workdir) and parent not in made:
                    args += ["--dir", str(parent)]
                    made.add(parent)
            args += ["--file", str(fd), str(target)]
        args += ["--chdir", str(workdir)]
    return args  # the environment: bwrap passes on the scrubbed one it was started with


def _environment(home: Path) -> dict[str, str]:
    """All a run sees of the environment: nothing of the user's (no tokens, no keys)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }


def _macos_profile(workdir: Path) -> str:
    readable = [
        "/usr",
        "/bin",
        "/sbin",
        "/System",
        "/Library",
        "/private/etc",
        "/private/var/db",
        "/dev",
        "/opt/homebrew",
        *map(str, _python_dirs()),
        str(workdir),
    ]
    reads = " ".join(f'(subpath "{path}")' for path in readable)
    return (
        "(version 1)\n(deny default)\n"
        "(allow process-fork)\n(allow process-exec)\n(allow signal (target self))\n"
        "(allow sysctl-read)\n(allow file-read-metadata)\n"
        f'(allow file-read* (literal "/") {reads})\n'
        f'(allow file-write* (subpath "{workdir}") (literal "/dev/null"))\n'
    )


class Sandbox:
    """Runs commands under :class:`Limits`, isolated where possible (see the module docstring).

    ``allow_unisolated`` is the user's explicit opt-in to run without isolation where none is
    available; without it, :meth:`run` refuses and :attr:`can_run` is False.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        allow_unisolated: bool = False,
        isolation: Isolation | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.isolation: Isolation = isolation or detect_isolation()
        self.allow_unisolated = allow_unisolated

    @property
    def can_run(self) -> bool:
        return self.isolation != "none" or self.allow_unisolated

    def run(
        self,
        argv: Sequence[str],
        files: Mapping[str, str] | None = None,
        *,
        limits: Limits | None = None,
    ) -> Outcome:
        """Run ``argv`` in a fresh directory holding ``files`` (name → text); the directory is
        removed afterwards."""
        if not self.can_run:
            raise PermissionError("no isolating sandbox here and execution was not allowed")
        with tempfile.TemporaryDirectory(prefix="ai-stack-run-") as folder:
            workdir = Path(folder).resolve()
            for name, text in (files or {}).items():
                target = workdir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            with contextlib.ExitStack() as stack:
                descriptors = {
                    name: stack.enter_context((workdir / name).open("rb")).fileno()
                    for name in files or {}
                }
                return self._run(list(argv), workdir, limits or self.limits, descriptors)

    def _run(
        self, argv: list[str], workdir: Path, limits: Limits, files: Mapping[str, int]
    ) -> Outcome:
        if self.isolation == "bubblewrap":
            command = bubblewrap_command(workdir, limits, argv, files)
        elif self.isolation == "sandbox-exec":
            command = ["sandbox-exec", "-p", _macos_profile(workdir), *argv]
        else:
            command = argv
        cgroup = PidsCgroup.make(limits.processes) if self.isolation != "sandbox-exec" else None
        try:
            return self._watch(command, workdir, limits, files, cgroup)
        finally:
            if cgroup is not None:
                cgroup.remove()  # kills what outlived the run, even outside its process group

    def _watch(
        self,
        command: list[str],
        workdir: Path,
        limits: Limits,
        files: Mapping[str, int],
        cgroup: PidsCgroup | None,
    ) -> Outcome:
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=_environment(workdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(files.values()) if self.isolation == "bubblewrap" else (),
            start_new_session=True,  # its own process group, killed as a whole
            preexec_fn=_limiter(limits, cgroup),
        )
        out, timed_out, truncated = _collect(
            process, started + limits.seconds, limits.output_kb * 1024
        )
        if timed_out or truncated:
            _kill(process)
        returncode = process.wait()
        _kill(process)  # what it left running in its process group (unisolated: nothing else does)
        return Outcome(
            returncode=None if timed_out or truncated else returncode,
            stdout=out["stdout"].decode("utf-8", "replace"),
            stderr=out["stderr"].decode("utf-8", "replace"),
            seconds=round(time.monotonic() - started, 3),
            timed_out=timed_out,
            truncated=truncated,
        )


def _limiter(limits: Limits, cgroup: PidsCgroup | None) -> Callable[[], None]:
    """Resource limits set in the child before it starts (inherited by everything it runs)."""
    memory = limits.memory_mb * 1024**2
    cpu = int(limits.seconds) + 1
    files = limits.file_mb * 1024**2

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (files, files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if cgroup is not None:
            cgroup.join()

    return apply


def _collect(
    process: subprocess.Popen[bytes], deadline: float, limit: int
) -> tuple[dict[str, bytes], bool, bool]:
    """Read both pipes until the process closes them, the deadline passes, or more than
    ``limit`` bytes arrive in all."""
    chunks: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    selector = selectors.DefaultSelector()
    assert process.stdout is not None and process.stderr is not None
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    timed_out = truncated = False
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(timeout=min(remaining, 0.5)):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                chunks[key.data] += data
            if sum(len(c) for c in chunks.values()) > limit:
                truncated = True
                break
        if not timed_out and not truncated:
            remaining = max(deadline - time.monotonic(), 0)
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        selector.close()
    return {name: bytes(data[:limit]) for name, data in chunks.items()}, timed_out, truncated


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the run's whole process group (its own session: nothing of ai-stack's is in it)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if process.returncode is None:
            process.kill()


@dataclass
class SandboxReport:
    """What a front end says once about execution on this machine."""

    isolation: Isolation
    allowed: bool
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, sandbox: Sandbox) -> SandboxReport:
        if sandbox.isolation != "none":
            return cls(sandbox.isolation, True)
        if sandbox.allow_unisolated:
            note = (
                "Running answer code WITHOUT isolation (--exec): it can use the network, read "
                "your files and ai-stack's own environment (/proc), and write where you can."
            )
            return cls("none", True, [note])
        note = (
            "Answer code is not run here: no isolating sandbox (bubblewrap on Linux, "
            "sandbox-exec on macOS). Static checks only; --exec runs it unisolated."
        )
        return cls("none", False, [note])


__all__ = [
    "Isolation",
    "Limits",
    "Outcome",
    "Sandbox",
    "SandboxReport",
    "detect_isolation",
    "python_executable",
]
