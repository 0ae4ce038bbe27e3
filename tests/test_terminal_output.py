"""What reaches a terminal: the answer shown on screen (a real pty, read by a terminal emulator),
tables and notes that fit 80 columns without cutting what must be typed, and no control
sequence from a task or an answer — while the answer saved to a file stays verbatim."""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Sequence
from io import StringIO
from pathlib import Path

import pyte
import pytest
from rich.console import Console

from ai_stack.batch import TaskFailed
from ai_stack.cli.batch import BatchDisplay
from ai_stack.cli.repl import Repl
from ai_stack.config import Settings
from ai_stack.display import Display
from ai_stack.runtime import execute
from ai_stack.session import Session
from ai_stack.types import (
    CallRetried,
    LeaseWaiting,
    ModelLoaded,
    Notice,
    Reasked,
    RunFinished,
    Summarised,
    ThermalNote,
    ThermalPause,
)
from ai_stack.workflow import load_workflow
from tests.conftest import ROOT, invoke
from tests.ollama_double import FakeModel, OllamaDouble
from tests.test_cli import assert_clean_error
from tests.test_workflow import write

# OSC 52 writes the clipboard; CSI 2J clears the screen; CSI 31m turns the text red.
HOSTILE = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b[31m"
ANSWER = "def add(a, b):\n    return a + b  # a comment long enough " + "x" * 60 + f"\n{HOSTILE}end"
LONG_MODEL = "ollama-with-a-long-name:qwen2.5-coder-7b-instruct-q4_k_m"


@pytest.fixture(autouse=True)
def columns_80(monkeypatch: pytest.MonkeyPatch) -> None:
    """The width rich gives a stream that is not a terminal, whatever the caller's shell says."""
    monkeypatch.setenv("COLUMNS", "80")


def console_80() -> tuple[Console, StringIO]:
    """The CLI's progress console (error_console: soft-wrapped, no highlighting), 80 wide."""
    out = StringIO()
    return Console(file=out, width=80, soft_wrap=True, highlight=False), out


def assert_fits_80(text: str) -> None:
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, "\n".join(long)


def joined(text: str) -> str:
    """The text with its line breaks and table borders as single spaces (what wraps is kept)."""
    return " ".join(text.replace("│", " ").split())


# -- a real terminal -----------------------------------------------------------------------------


def run_in_pty(argv: Sequence[str], *, columns: int = 80, rows: int = 24) -> bytes:
    """Everything ``argv`` writes to a terminal of its own (stdin, stdout and stderr are a pty,
    ``columns`` wide), until it exits."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env |= {"TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        list(argv), stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 300)  # a hang guard only
            assert ready, "the command wrote nothing for 300 s"
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                break
            if not data:
                break
            chunks.append(data)
        assert child.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
    return b"".join(chunks)


def screen_of(output: bytes, columns: int = 80) -> str:
    """What a terminal shows after receiving ``output`` (tall enough that nothing scrolls off)."""
    screen = pyte.Screen(columns, 500)
    pyte.ByteStream(screen).feed(output)
    return "\n".join(line.rstrip() for line in screen.display).strip()


def ai_stack(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), *args]


@pytest.mark.parametrize("mode", [["--direct"], []], ids=["direct", "default"])
def test_the_answer_is_on_screen_at_a_terminal(on_double: OllamaDouble, mode: list[str]) -> None:
    """A spinner restarted when the model loaded redrew itself over the streamed answer, so
    `--direct` at a terminal showed "Answer", the spinner and the metrics, and no text."""
    on_double.seconds_per_token = 0.05  # the spinner redraws many times while the answer streams
    on_double.enqueue("Red and blue are two colors.", model="qwen2.5:7b")
    output = run_in_pty(ai_stack(*mode, "--executor", "ollama:qwen2.5:7b", "List two colors"))
    screen = screen_of(output)
    assert "Red and blue are two colors." in screen, screen
    assert "0 tokens" not in screen, screen


def test_control_sequences_never_reach_the_terminal(on_double: OllamaDouble) -> None:
    """The task's and the answer's escape sequences are stripped from the `Task:` line, the
    streamed answer, `history list` and `history show` at a terminal."""
    on_double.enqueue(ANSWER, model="qwen2.5:7b")
    task = f"Write add{HOSTILE} please"
    output = run_in_pty(ai_stack("--direct", "--executor", "ollama:qwen2.5:7b", task))
    listed = run_in_pty(ai_stack("history", "list"))
    run_id = json.loads(invoke("history", "list", "--json")[1])[0]["id"]
    shown = run_in_pty(ai_stack("history", "show", run_id))
    answer = run_in_pty(ai_stack("history", "show", run_id, "--answer"))
    for written in (output, listed, shown, answer):
        assert b"\x1b]52" not in written and b"\x1b[2J" not in written
        assert b"\x1b[31m" not in written
    assert "Task: Write add please" in screen_of(output)
    assert "Write add please" in screen_of(listed)
    assert "Task: Write add please" in screen_of(shown)
    assert "return a + b" in screen_of(shown) and screen_of(answer).endswith("end")


def test_the_answer_saved_to_a_file_is_verbatim(on_double: OllamaDouble, tmp_path: Path) -> None:
    """Redirected, the answer is neither stripped nor wrapped: byte for byte what was given,
    from the run itself and from `history show ID --answer`."""
    on_double.enqueue(ANSWER, model="qwen2.5:7b")
    saved, again = tmp_path / "answer.md", tmp_path / "again.md"
    with saved.open("wb") as out:
        done = subprocess.run(
            ai_stack("--direct", "--executor", "ollama:qwen2.5:7b", "Write add"),
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert saved.read_bytes() == (ANSWER + "\n").encode()
    run_id = json.loads(invoke("history", "list", "--json")[1])[0]["id"]
    with again.open("wb") as out:
        done = subprocess.run(
            ai_stack("history", "show", run_id, "--answer"),
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert again.read_bytes() == saved.read_bytes()


# -- 80 columns ----------------------------------------------------------------------------------


def test_history_show_never_wraps_the_answer(on_double: OllamaDouble) -> None:
    on_double.enqueue(ANSWER, model="qwen2.5:7b")
    code, _, err = invoke("--direct", "--executor", "ollama:qwen2.5:7b", "Write add")
    assert code == 0, err
    run_id = json.loads(invoke("history", "list", "--json")[1])[0]["id"]
    code, out, err = invoke("history", "show", run_id)
    assert code == 0, err
    code_line = ANSWER.splitlines()[1]
    assert code_line in out.splitlines(), out  # whole, on its own line
    assert "\x1b" not in out and "…" not in out, out
    assert "ollama:qwen2.5:7b" in out  # the metrics' model, whole
    code, out, err = invoke("history", "show", run_id, "--answer")
    assert code == 0 and out == ANSWER + "\n", err
    code, _, err = invoke("history", "show", run_id, "--answer", "--json")
    assert code == 2 and "not both" in err
    conversation = json.loads(invoke("history", "show", run_id, "--json")[1])["conversation_id"]
    code, _, err = invoke("history", "show", conversation, "--answer")
    assert_clean_error(code, err, f"history show {run_id} --answer")


def test_progress_fits_80_columns_and_keeps_identifiers_whole(on_double: OllamaDouble) -> None:
    """The real display, on the events of a real run of the default mode and of every kind of
    note, at 80 columns: no line is longer, and model names and the run id are never cut."""
    on_double.models[LONG_MODEL] = FakeModel(LONG_MODEL, 10**9)
    console, out = console_80()
    settings = Settings.model_validate(
        {"executor": {"model": f"ollama:{LONG_MODEL}"}, "planner": {"model": "ollama:mistral:7b"}}
    )
    with Session.open(settings) as session:
        display = Display(console, StringIO())
        result = execute(session.pipeline(), "Say hello in three words " * 12, display)
    long = "a reason that goes on and on, " * 6
    for event in (
        Notice("context", long),
        Summarised("file", "/a/rather/long/path/to/a/file/that/was/attached.txt", 1, "", 9, 3),
        LeaseWaiting(f"ollama:{LONG_MODEL}", "ollama:qwen2.5:14b", 4242),
        CallRetried("executor", long),
        Reasked("planner", 2, long),
        ThermalNote("heavy", long),
        ThermalPause("heavy", long, 0, 120),
        ModelLoaded(f"ollama:{LONG_MODEL}", 12.5, 5 * 10**9, 5 * 10**9),
    ):
        display.handle(event)
    display.close()
    text = out.getvalue()
    assert_fits_80(text)
    assert result.id in text and f"ollama:{LONG_MODEL}" in text
    assert "Note: a reason" in text


def test_a_server_model_is_named_by_its_short_id_and_unmet_checks_fit(
    on_double: OllamaDouble,
) -> None:
    """llama-cpp-python's server names a model by its file's path: progress names it by the file
    name; the unmet checks' last line wraps at 80 columns like every other note."""
    console, out = console_80()
    with Session.open(Settings()) as session:
        result = execute(session.pipeline(), "Say hello", Display(console, StringIO()))
    display = Display(console, StringIO())
    path = "openai:/home/someone/models/very/deep/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    display.handle(ModelLoaded(path, 1.5, 10**9, 10**9))
    unmet = [f'sentences: exactly 2 ("in two sentences") (the answer has {n})' for n in (1, 3, 5)]
    display.handle(RunFinished(result.model_copy(update={"unmet": unmet})))
    display.close()
    text = out.getvalue()
    assert "openai:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" in text and "/home/" not in text
    assert_fits_80(text)
    assert "unmet: sentences: exactly 2" in joined(text)


def test_batch_progress_shows_the_mode_s_phases_whole_at_80_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: flow\ndefaults:\n  executor: ollama:qwen2.5:7b\ntasks:\n"
        "  - {id: first-task-with-a-long-id, task: one}\n  - {id: b, task: two}\n",
    )
    workflow = load_workflow(path, {})
    console, out = console_80()
    with BatchDisplay(console, workflow, quiet=False, finished=["b"]) as view:
        view.print("[yellow]Note: " + "a note that is long enough to wrap, " * 5 + "[/]")
        view("first-task-with-a-long-id", TaskFailed(f"invalid reply: {HOSTILE}"))
    console.print("Interrupted.")
    text = out.getvalue()
    assert_fits_80(text)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    # the default mode's phases, whole ("ex…" was cut), and none of the other modes'
    assert rows["task"] == ["execute", "contract", "compute", "shape", "attempt", "status"]
    assert rows["first-task-with-a-long-id"] == ["failed"] and rows["b"] == ["done"]
    assert "\x1b" not in text  # the failure's message, printed above the table, is data
    assert "\nInterrupted." in text  # on a line of its own, not glued to the table's border


def test_a_resumed_batch_shows_its_finished_tasks_done(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "name: flow\ndefaults:\n  direct: true\n  executor: ollama:qwen2.5:7b\ntasks:\n"
        "  - {id: a, task: one}\n  - {id: b, task: two}\n",
    )
    assert invoke("batch", str(path))[0] == 0
    code, _, err = invoke("batch", str(path), "--resume")
    assert code == 0, err
    assert "waiting" not in err
    rows = [line.split() for line in err.splitlines() if line.startswith(("a ", "b "))]
    assert rows == [["a", "done"], ["b", "done"]], err


def test_models_list_and_doctor_never_cut_what_is_typed(on_double: OllamaDouble) -> None:
    on_double.models[LONG_MODEL] = FakeModel(LONG_MODEL, 10**9)
    code, out, err = invoke("models", "list", "--backend", "ollama")
    assert code == 0, err
    assert_fits_80(out)
    assert "…" not in out
    assert out.split()[:5] == ["name", "backend", "size", "details", "context"], out
    for name in ("qwen2.5:14b", "mistral:7b"):
        assert any(name in line for line in out.splitlines()), out
    assert LONG_MODEL in "".join(line.split(" ")[0] for line in out.splitlines()), out
    code, out, err = invoke("doctor")
    checks = json.loads(invoke("doctor", "--json")[1])
    assert_fits_80(out)
    assert "…" not in out
    fixes = [check["fix"] for check in checks if check["fix"]]
    assert fixes
    for fix in fixes:
        assert joined(fix) in joined(out), out


def test_the_repl_s_history_cuts_with_an_ellipsis_and_keeps_the_run_id(
    on_double: OllamaDouble,
) -> None:
    settings = Settings.model_validate({"direct": True, "executor": {"model": "ollama:mistral:7b"}})
    console, out = console_80()
    task = "Explain what a closure is in Python, with an example and the pitfalls of late binding"
    with Session.open(settings) as session:
        repl = Repl(
            session.pipeline(), console, stdin=StringIO(f"{task}\n/history\n"), stdout=StringIO()
        )
        assert repl.loop() == 0
    text = out.getvalue()
    assert_fits_80(text)
    (row,) = [line for line in text.splitlines() if line.startswith("│ 1")]
    assert "Explain what a closure" in row and "…" in row
    assert repl.conversation.turns[0].run_id in row


@pytest.mark.model
def test_the_demo_model_s_note_fits_80_columns(smollm2: Path) -> None:
    """The note saying the roles run SmolLM2, with what to pull instead, was one long line."""
    del smollm2
    code, _, err = invoke("--direct", "--json", "Say hi")
    assert code == 0, err
    assert "Note: the roles run SmolLM2-135M" in err
    assert_fits_80(err)
    # the command to type is never cut: on a line of its own
    assert any(line.strip().startswith("ai-stack models pull hf:") for line in err.splitlines())
