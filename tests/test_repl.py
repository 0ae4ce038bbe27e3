"""The REPL at a real terminal (a pty, never a pipe): the answer on screen, arrow-key history
kept across sessions, a pasted paragraph or a \"\"\" block as one task, Ctrl-C during a task back
to the prompt, /retry running the interrupted task, /quit exiting 0. The CLI runs in a child
process against the Ollama double; waits are hang guards, never timings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from ai_stack.cli.terminal import HISTORY_NAME, open_history
from tests.conftest import ROOT
from tests.ollama_double import OllamaDouble

ANSWER = "An answer from qwen2.5:14b."
UP, PASTE_START, PASTE_END, CTRL_C, CTRL_R = "\x1b[A", "\x1b[200~", "\x1b[201~", "\x03", "\x12"


@pytest.fixture
def terminal(on_double: OllamaDouble) -> Iterator[list[pexpect.spawn]]:
    """Spawns REPLs at a pty with a real TERM and window size; ends any left running."""
    children: list[pexpect.spawn] = []
    yield children
    for child in children:
        child.close(force=True)


def start(children: list[pexpect.spawn]) -> pexpect.spawn:
    env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
    child = pexpect.spawn(
        sys.executable,
        [str(ROOT / "main.py"), "--interactive", "--direct"],
        env=env,
        dimensions=(40, 160),
        encoding="utf-8",
        timeout=120,  # a hang guard
    )
    children.append(child)
    child.expect("/quit to leave")
    prompt(child)
    return child


def prompt(child: pexpect.spawn) -> None:
    """Waits until the next prompt reads keys: prompt_toolkit turns bracketed paste on once the
    terminal is in raw mode, once per prompt (keys sent earlier would meet the cooked tty)."""
    child.expect_exact("\x1b[?2004h")


def quit_(child: pexpect.spawn) -> int:
    child.send("/quit\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None
    return child.exitstatus


def tasks(double: OllamaDouble) -> list[str]:
    """The task of each chat the double served, in order."""
    return [
        [m["content"] for m in e["messages"] if m["role"] == "user"][-1]
        for e in double.events("generate")
        if e.get("messages")
    ]


def test_up_recalls_a_task_across_sessions(
    terminal: list[pexpect.spawn], on_double: OllamaDouble, isolated_home: Path
) -> None:
    child = start(terminal)
    child.send("Name a colour\r")
    child.expect_exact(ANSWER)
    prompt(child)
    child.send(UP)
    child.expect_exact("Name a colour")  # the line editor shows the earlier task again
    child.send("\r")
    child.expect_exact(ANSWER)
    prompt(child)
    assert quit_(child) == 0
    assert "Name a colour" in tasks(on_double)[-1] and len(tasks(on_double)) == 2
    assert "+Name a colour" in (isolated_home / HISTORY_NAME).read_text()

    child = start(terminal)  # a new session: the history came from the file
    child.send(UP)
    child.expect_exact("/quit")  # the newest entry first, as in a shell
    child.send(UP)
    child.expect_exact("Name a colour")
    child.send("\r")
    child.expect_exact(ANSWER)
    prompt(child)
    child.send(CTRL_R + "colo")  # search back for a task; Enter takes it, Enter runs it
    child.expect_exact("reverse-i-search)`colo': Name a ")
    child.send("\r")
    child.send("\r")
    child.expect_exact(ANSWER)
    prompt(child)
    assert quit_(child) == 0
    assert len(tasks(on_double)) == 4


def test_a_pasted_paragraph_and_a_quoted_block_are_one_task_each(
    terminal: list[pexpect.spawn], on_double: OllamaDouble
) -> None:
    child = start(terminal)
    child.send(f"{PASTE_START}First line of a paste\nsecond line of it{PASTE_END}\r")
    child.expect_exact(ANSWER)
    prompt(child)
    child.send('"""\rline one\rline two"""\r')
    child.expect_exact(ANSWER)
    prompt(child)
    assert quit_(child) == 0
    sent = tasks(on_double)
    assert len(sent) == 2
    assert "First line of a paste\nsecond line of it" in sent[0]
    assert "line one\nline two" in sent[1] and '"""' not in sent[1]


def test_ctrl_c_stops_a_task_and_retry_runs_it_again(
    terminal: list[pexpect.spawn], on_double: OllamaDouble
) -> None:
    gate = threading.Event()
    on_double.gate = gate  # the answer's first piece arrives, then the model is held busy
    child = start(terminal)
    child.send("Name a colour\r")
    child.expect_exact(ANSWER[:4])
    child.send(CTRL_C)
    child.expect_exact("Task interrupted.")
    prompt(child)
    gate.set()
    child.send("Something I did not mean" + CTRL_C)  # at the prompt: clears the line
    prompt(child)
    child.send("/retry\r")
    child.expect_exact(ANSWER)
    prompt(child)
    child.send("/history\r")
    child.expect_exact("Name a colour")
    prompt(child)
    assert quit_(child) == 0  # the interrupted task was no failure
    sent = tasks(on_double)
    assert len(sent) == 2 and all("Name a colour" in task for task in sent)


def test_the_history_file_is_private_redacted_and_never_fatal(tmp_path: Path) -> None:
    warnings: list[str] = []
    history = open_history(tmp_path / "home", warnings.append)
    history.store_string("deploy with OPENAI_API_KEY=sk-abcdefghijklmnopqrstuv please")
    path = tmp_path / "home" / HISTORY_NAME
    assert "sk-abcdefghijklmnopqrstuv" not in path.read_text()
    assert "OPENAI_API_KEY=[redacted]" in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(open_history(tmp_path / "home", warnings.append).load_history_strings()) == [
        "deploy with OPENAI_API_KEY=[redacted] please"
    ]
    assert warnings == []

    (tmp_path / "other" / HISTORY_NAME).mkdir(parents=True)  # unreadable and unwritable
    history = open_history(tmp_path / "other", warnings.append)
    history.store_string("a task")
    history.store_string("another")
    assert list(history.load_history_strings()) == []
    assert len(warnings) == 1 and "Cannot read the input history" in warnings[0]


def test_piped_lines_are_tasks_and_config_is_redacted(
    on_double: OllamaDouble, tmp_path: Path
) -> None:
    """Piped input: one task a line, no prompt, as ever; /config hides a secret as
    `config show` does."""
    config = tmp_path / "c.toml"
    config.write_text('[cluster.slots.a.env]\nHF_TOKEN = "abc123"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "-i", "--direct", "--config", str(config)],
        input='/config\n"""\nName a colour\n',
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert '"HF_TOKEN": "[redacted]"' in done.stderr and "abc123" not in done.stderr
    assert done.stdout.count(ANSWER) == 2  # a """ line is a task of its own when piped
    assert tasks(on_double)[-1].endswith("Name a colour")
