"""The sandbox that runs model-written code: each limit has a test that fails if the limit is
removed — time, memory, output, network, writes outside its directory, the environment — and
without isolation nothing runs unless the user opted in."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ai_stack.sandbox import (
    Limits,
    Outcome,
    Sandbox,
    SandboxReport,
    detect_isolation,
    python_executable,
)
from tests.conftest import ROOT

# CI installs bubblewrap and sets this, so the isolation tests cannot silently skip there.
REQUIRE_SANDBOX = os.environ.get("AI_STACK_REQUIRE_SANDBOX") == "1"


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    if detect_isolation() == "none":
        if REQUIRE_SANDBOX:
            pytest.fail("no isolating sandbox (bubblewrap) on this machine")
        pytest.skip("no isolating sandbox (bubblewrap) on this machine")
    return Sandbox(Limits(seconds=5, memory_mb=256, output_kb=16))


def python(sandbox: Sandbox, code: str, seconds: float = 5) -> Outcome:
    limits = Limits(seconds=seconds, memory_mb=256, output_kb=16)
    return sandbox.run(
        [python_executable(), "-E", "-s", "main.py"], {"main.py": code}, limits=limits
    )


def test_a_normal_program_runs_and_its_output_comes_back(sandbox: Sandbox) -> None:
    outcome = python(sandbox, "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n")
    assert outcome.ok and outcome.stdout == "hello\n" and outcome.stderr == "oops\n"


def test_time_limit(sandbox: Sandbox) -> None:
    outcome = python(sandbox, "while True:\n    pass\n", seconds=1)
    assert outcome.timed_out and outcome.returncode is None and not outcome.ok
    assert outcome.seconds < 4


def test_a_program_that_sleeps_forever_is_killed_too(sandbox: Sandbox) -> None:
    outcome = python(sandbox, "import time\ntime.sleep(60)\n", seconds=1)
    assert outcome.timed_out and outcome.seconds < 4


def test_memory_limit(sandbox: Sandbox) -> None:
    outcome = python(sandbox, "block = bytearray(1024 * 1024 * 1024)\nprint('allocated')\n")
    assert outcome.returncode != 0 and "MemoryError" in outcome.stderr
    assert "allocated" not in outcome.stdout


def test_output_limit(sandbox: Sandbox) -> None:
    outcome = python(sandbox, "import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n")
    assert outcome.truncated and not outcome.ok
    assert len(outcome.stdout) <= 16 * 1024


def test_no_network(sandbox: Sandbox) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[object] = []

    def serve() -> None:
        server.settimeout(8)
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    code = (
        "import socket\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "    print('connected')\nexcept OSError as exc:\n    print('refused', exc)\n"
    )
    outcome = python(sandbox, code)
    server.close()
    thread.join()
    assert "refused" in outcome.stdout and not accepted


def test_no_writes_outside_its_directory(sandbox: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    host_tmp = Path("/tmp") / f"ai-stack-sandbox-test-{os.getpid()}"
    code = (
        "import os\n"
        "open('inside.txt', 'w').write('mine')\n"
        f"for path in ({str(outside)!r}, {str(host_tmp)!r}):\n"
        "    try:\n"
        "        open(path, 'w').write('escaped')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
        "print(sorted(os.listdir('.')))\n"
    )
    outcome = python(sandbox, code)
    assert outcome.ok and "inside.txt" in outcome.stdout
    assert not outside.exists()
    assert not host_tmp.exists(), "/tmp inside the sandbox is private"


def test_the_home_directory_is_not_there(sandbox: Sandbox) -> None:
    home = Path.home()
    code = f"import os\nprint(os.path.exists({str(home / '.bashrc')!r}), os.listdir('/'))\n"
    outcome = python(sandbox, code)
    assert outcome.stdout.startswith("False")


@pytest.mark.parametrize("isolated", [True, False], ids=["isolated", "opted-in"])
def test_a_scrubbed_environment(isolated: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_STACK_TEST_SECRET", "s3cret-token-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    runner = (
        Sandbox(Limits(seconds=5))
        if isolated and detect_isolation() != "none"
        else Sandbox(Limits(seconds=5), isolation="none", allow_unisolated=True)
    )
    outcome = runner.run([python_executable(), "-c", "import os; print(sorted(os.environ))"])
    assert "AI_STACK_TEST_SECRET" not in outcome.stdout
    assert "AWS_SECRET_ACCESS_KEY" not in outcome.stdout
    assert "PATH" in outcome.stdout


RUN_WITH_STDIN = """
from ai_stack.sandbox import Sandbox, python_executable
outcome = Sandbox(isolation="none", allow_unisolated=True).run(
    [python_executable(), "-c", "import sys; print(repr(sys.stdin.read()))"])
print(outcome.stdout)
"""


def test_no_stdin() -> None:
    """Even when ai-stack itself reads a pipe (``cat secrets | ai-stack ...``), the code it runs
    reads nothing."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITH_STDIN],
        input="piped secret",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert "piped secret" not in done.stdout and "''" in done.stdout


def test_without_isolation_nothing_runs_unless_the_user_opted_in(tmp_path: Path) -> None:
    refused = Sandbox(isolation="none")
    assert not refused.can_run and not SandboxReport.of(refused).allowed
    with pytest.raises(PermissionError):
        refused.run(["true"])
    assert "--exec runs it unisolated" in SandboxReport.of(refused).notes[0]
    opted_in = Sandbox(Limits(seconds=2), isolation="none", allow_unisolated=True)
    outcome = opted_in.run([python_executable(), "-c", "import os; print(os.getcwd())"])
    assert outcome.ok and "ai-stack-run-" in outcome.stdout
    assert "WITHOUT isolation" in SandboxReport.of(opted_in).notes[0]
    # the limits hold without isolation too
    slow = opted_in.run([python_executable(), "-c", "while True: pass"], limits=Limits(seconds=1))
    assert slow.timed_out


@pytest.mark.parametrize("where", ["/tmp", "."], ids=["tmp", "its-directory"])
def test_what_it_writes_in_all_is_bounded(sandbox: Sandbox, where: str) -> None:
    """Files in a tmpfs are memory the address-space limit does not count: each writable mount
    has a size, whatever the size of each file."""
    code = (
        "import os\n"
        "block = b'x' * 1024 * 1024\n"
        "try:\n"
        "    for n in range(64):\n"
        f"        with open(os.path.join({where!r}, f'part{{n}}'), 'wb') as part:\n"
        "            part.write(block * 4)\n"
        "    print('wrote all')\n"
        "except OSError as exc:\n"
        "    print('stopped', exc.errno, n)\n"
    )
    limits = Limits(seconds=10, memory_mb=256, output_kb=16, disk_mb=32)
    outcome = sandbox.run(
        [python_executable(), "-E", "-s", "main.py"], {"main.py": code}, limits=limits
    )
    assert outcome.ok and "wrote all" not in outcome.stdout
    assert outcome.stdout.startswith("stopped 28")  # ENOSPC, within the first 32 MiB


FORKS = """
import os, time
started = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        started += 1
except OSError as exc:
    print("refused", exc.errno)
print("started", started)
"""


def test_the_number_of_processes_is_bounded(sandbox: Sandbox) -> None:
    limits = Limits(seconds=10, memory_mb=256, output_kb=16, processes=32)
    outcome = sandbox.run(
        [python_executable(), "-E", "-s", "main.py"], {"main.py": FORKS}, limits=limits
    )
    assert "refused 11" in outcome.stdout  # EAGAIN
    started = int(outcome.stdout.split("started")[1])
    assert started < 32


LEAVES_A_PROCESS = """
import subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
print(child.pid)
"""


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_without_isolation_nothing_it_started_outlives_the_run() -> None:
    opted_in = Sandbox(Limits(seconds=5), isolation="none", allow_unisolated=True)
    outcome = opted_in.run(
        [python_executable(), "-E", "-s", "main.py"], {"main.py": LEAVES_A_PROCESS}
    )
    pid = int(outcome.stdout)
    for _ in range(100):  # SIGKILL is delivered, not awaited
        if not running(pid):
            break
        threading.Event().wait(0.05)
    assert not running(pid)
