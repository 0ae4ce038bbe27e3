"""One memory budget per machine: the residency lease every ai-stack process takes.

Each process has its own memory manager, so without coordination two processes against one
Ollama server load two models side by side, or each unloads the other's model mid-use. The
lease is a small JSON file per server (by its URL, whatever names it has; per machine for the
embedded backend) under the user directory, read and written only under an OS file lock
(``filelock``): who uses which model, with its estimated bytes. A process claims a model
before it loads or uses it; under ``one-at-a-time`` a claim is granted only while every other
process's claim is for the same model, under ``fit`` while all the claimed models fit the
budget together. Else the process waits — saying for whom — up to a bound.

How long a claim lasts follows what "resident" means for the backend. An Ollama model is the
server's: a claim covers one call (it is released when the call ends), and between calls the
model is left loaded but unclaimed, for whoever needs the room next. An embedded model lives in
the process: its claim lasts from load to unload. A claim whose process has died (its pid gone,
or reused by another process) is ignored, so a crashed holder blocks no one; the OS releases
the file lock itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from ai_stack.errors import LeaseTimeoutError
from ai_stack.types import Event, LeaseWaiting, Notice

POLL_S = 0.2
LOCK_TIMEOUT_S = 30.0  # the file lock is held for milliseconds; longer means something is wrong


@dataclass(frozen=True)
class Claim:
    """One process's use of one model."""

    pid: int
    started: float  # the process's start time, so a reused pid is not mistaken for it
    model: str
    bytes: int


def _started(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _alive(claim: Claim) -> bool:
    try:
        return abs(psutil.Process(claim.pid).create_time() - claim.started) < 1.0
    except psutil.Error:
        return False


class ResidencyLease:
    """The claims on one backend endpoint, shared by every ai-stack process on the machine."""

    def __init__(
        self,
        directory: Path,
        endpoint: str,
        *,
        policy: str,
        budget: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key = hashlib.sha256(endpoint.encode("utf-8")).hexdigest()[:16]
        self.endpoint = endpoint
        self.path = directory / f"{key}.json"
        self.lock = FileLock(str(directory / f"{key}.lock"), timeout=LOCK_TIMEOUT_S)
        self.policy = policy
        self.budget = budget
        self.timeout_s = timeout_s
        self.clock = clock
        self.sleep = sleep
        self.pid = os.getpid()
        self.started = _started(self.pid)
        self.broken: str | None = None  # why the lease cannot be used, once that is known

    def claims(self) -> list[Claim]:
        """The live claims (of every process)."""
        if self.broken is not None:
            return []
        try:
            with self._locked():
                return self._read()
        except OSError:
            return []

    def claim(self, model: str, size: int) -> Generator[Event, None, bool]:
        """Claim ``model`` (``size`` bytes) for this process, waiting while other processes'
        claims do not allow it; raises LeaseTimeoutError after ``timeout_s``. Returns whether
        another process claims the same model (it may be loading it right now)."""
        deadline = self.clock() + self.timeout_s
        said: Claim | None = None
        while True:
            if self.broken is not None:
                return False
            try:
                with self._locked():
                    claims = self._read()
                    blocker = self._blocker(claims, model, size)
                    if blocker is None:
                        mine = Claim(self.pid, self.started, model, size)
                        others = [c for c in claims if not (c.pid == self.pid and c.model == model)]
                        self._write([*others, mine])
            except OSError as exc:  # an unwritable user directory: coordination, not a gate
                self.broken = f"{self.path.parent} cannot be written ({exc.strerror})"
                yield Notice(
                    "lease",
                    f"this process cannot coordinate its memory use with other ai-stack "
                    f"processes: {self.broken}",
                )
                return False
            if blocker is None:
                if said is not None:
                    yield LeaseWaiting(model, said.model, said.pid, done=True)
                return any(c.model == model and c.pid != self.pid for c in claims)
            if said is None or said.pid != blocker.pid or said.model != blocker.model:
                said = blocker
                yield LeaseWaiting(model, blocker.model, blocker.pid)
            if self.clock() >= deadline:
                raise LeaseTimeoutError(
                    model,
                    f"Waited {self.timeout_s:.0f} s for another ai-stack process (pid "
                    f"{blocker.pid}) using {blocker.model} to finish with it.",
                    hint="Let that process finish (or stop it), or wait longer with "
                    "--wait-timeout SECONDS (memory.wait_timeout_s).",
                )
            self.sleep(POLL_S)

    def others_using(self, model: str) -> bool:
        """Whether another live process claims ``model``."""
        return any(c.model == model and c.pid != self.pid for c in self.claims())

    def release(self, model: str | None = None) -> None:
        """Drop this process's claim on ``model`` (None: all its claims)."""
        if self.broken is not None:
            return
        with self._locked():
            claims = self._read()
            kept = [
                c for c in claims if c.pid != self.pid or (model is not None and c.model != model)
            ]
            if len(kept) != len(claims):
                self._write(kept)

    def _blocker(self, claims: list[Claim], model: str, size: int) -> Claim | None:
        """The other process's claim that keeps ``model`` from being claimed now, or None."""
        others = [c for c in claims if c.pid != self.pid]
        if self.policy == "one-at-a-time":
            return next((c for c in others if c.model != model), None)
        sizes = {c.model: c.bytes for c in others}
        sizes[model] = max(size, sizes.get(model, 0))
        if sum(sizes.values()) <= self.budget:
            return None
        return next((c for c in others if c.model != model), None)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
        except Timeout:
            raise LeaseTimeoutError(
                "",
                f"The residency lease {self.lock.lock_file} stayed locked for "
                f"{LOCK_TIMEOUT_S:.0f} s.",
                hint="Another ai-stack process may be stuck; stop it and try again.",
            ) from None
        try:
            yield
        finally:
            self.lock.release()

    def _read(self) -> list[Claim]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            claims = [Claim(**entry) for entry in data.get("claims", [])]
        except (OSError, ValueError, TypeError):
            return []  # none yet, or unreadable: the next write replaces it
        return [c for c in claims if _alive(c)]

    def _write(self, claims: list[Claim]) -> None:
        """Replace the file (readers see the old claims or the new, never half); no fsync:
        after a crash the claims are of dead processes anyway, and this runs at every call."""
        data = {"endpoint": self.endpoint, "claims": [asdict(c) for c in claims]}
        temporary = self.path.with_name(f".{self.path.name}.{self.pid}")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)


def held(directory: Path) -> list[tuple[str, Claim]]:
    """Every live claim of every ai-stack process on this machine, with the endpoint it is
    on (a server's URL, or ``embedded``): what ``models ps`` and ``monitor`` show beside what
    the servers report, since a model loaded inside another ai-stack process is resident too
    and no server knows of it. Read without the lock: a claim file is replaced whole."""
    found: list[tuple[str, Claim]] = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            endpoint = str(data.get("endpoint", ""))
            claims = [Claim(**entry) for entry in data.get("claims", [])]
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        found += [(endpoint.removeprefix("server "), c) for c in claims if _alive(c)]
    return found


__all__ = ["Claim", "ResidencyLease", "held"]
