"""Conversations and context: follow-ups see the turns before them, what does not fit is
summarised (never the task cut), turns survive the process, files and piped input become
context only through the file-access policy."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ai_stack.config import Settings
from ai_stack.controller import Pipeline
from ai_stack.conversation import Conversation, Summary
from ai_stack.evidence import EvidenceCollector
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.sandbox import Limits, Sandbox
from ai_stack.session import resolve_roles
from ai_stack.types import Attachment, RunFinished, RunResult, Summarised, Turn
from tests.conftest import invoke, plan, verdict
from tests.ollama_double import OllamaDouble
from tests.scripted import ScriptedBackend

ROOT = Path(__file__).resolve().parent.parent


def make_pipeline(backend: ScriptedBackend, **settings: object) -> Pipeline:
    config = Settings.model_validate(settings)
    manager = MemoryManager(lambda name: backend, budget_bytes=10**9)
    return Pipeline(config, manager, PromptLibrary(), resolve_roles(config, "embedded"))


def turn(
    pipeline: Pipeline, conversation: Conversation, task: str, files: tuple[Attachment, ...] = ()
) -> tuple[RunResult, list[object]]:
    events = []
    for event in pipeline.run(task, conversation=conversation, files=files):
        conversation.observe(event)
        events.append(event)
    assert isinstance(events[-1], RunFinished)
    return events[-1].result, events


def user_message(backend: ScriptedBackend, i: int) -> str:
    return next(m["content"] for m in backend.chats[i].messages if m["role"] == "user")


def test_a_follow_up_reaches_every_role_with_the_turn_before_it(scripted: ScriptedBackend) -> None:
    pipeline = make_pipeline(scripted, review="plan", max_rounds=1)
    conversation = Conversation.new()
    scripted.enqueue(
        plan("find .py files", "count"), verdict("approve", 9), "find . -name '*.py' | xargs wc -l"
    )
    first, _ = turn(pipeline, conversation, "count lines in all .py files")
    assert (first.conversation_id, first.turn) == (conversation.id, 1)
    assert [t.task for t in conversation.turns] == ["count lines in all .py files"]

    scripted.enqueue(
        plan("find .js files", "count"), verdict("approve", 9), "find . -name '*.js' | xargs wc -l"
    )
    second, _ = turn(pipeline, conversation, "now do it for .js files too")
    assert (second.conversation_id, second.turn) == (conversation.id, 2)
    for i, role in zip(range(3, 6), ("planner", "critic", "executor"), strict=True):
        prompt = user_message(scripted, i)
        assert "Turn 1. User: count lines in all .py files" in prompt, role
        assert "find . -name '*.py' | xargs wc -l" in prompt, role
        assert prompt.index("Turn 1.") < prompt.index("Task: now do it for .js files too"), role
    # turn 1's prompts had no conversation at all
    assert all("Earlier in this conversation" not in user_message(scripted, i) for i in range(3))


def test_a_follow_up_to_a_request_for_code_may_be_answered_with_a_program(
    scripted: ScriptedBackend,
) -> None:
    """A program answering a question is replaced by its result — unless the Planner, shown
    the earlier turns, reads the follow-up as about the code asked for before."""
    sandbox = Sandbox(Limits(seconds=10), isolation="none", allow_unisolated=True)
    pipeline = make_pipeline(scripted, review="team", max_rounds=1)
    pipeline.evidence = EvidenceCollector(sandbox)
    conversation = Conversation.new()
    script = "```python\nprint('hello')\n```"
    scripted.enqueue(script, json.dumps({"answer": "code"}))
    turn(pipeline, conversation, "Write a Python script that prints hello")
    louder = "```python\nprint('HELLO')\n```"
    scripted.enqueue(louder, json.dumps({"answer": "code"}))
    second, _ = turn(pipeline, conversation, "now make it print in upper case")
    assert second.output == louder and len(second.answers) == 1
    asked = scripted.chats[3].messages[-1]["content"]  # the Planner's question, with turn 1
    assert "Turn 1. User: Write a Python script that prints hello" in asked
    assert asked.index("Turn 1.") < asked.index("Request: now make it print in upper case")
    scripted.enqueue(louder, json.dumps({"answer": "value"}))
    alone, _ = turn(pipeline, Conversation.new(), "say hello in upper case")
    assert alone.output == "HELLO"  # without the earlier request: the result, not the program


def test_each_role_sees_as_many_turns_as_its_setting_allows(scripted: ScriptedBackend) -> None:
    pipeline = make_pipeline(scripted, review="plan", max_rounds=1, planner={"turns": 0})
    conversation = Conversation(
        "c1", [Turn(number=n, task=f"TASK-{n}", answer=f"ANSWER-{n}") for n in (1, 2, 3)]
    )
    scripted.enqueue(plan("a"), verdict("approve", 9), "done")
    turn(pipeline, conversation, "and now?")
    planner, critic, executor = (user_message(scripted, i) for i in range(3))
    assert "TASK-" not in planner  # turns = 0
    assert "TASK-3" in critic and "TASK-2" not in critic  # the Critic's default: the last turn
    assert all(f"TASK-{n}" in executor for n in (1, 2, 3))  # all that fit


def test_a_long_conversation_is_summarised_and_the_task_kept_whole(
    scripted: ScriptedBackend,
) -> None:
    """A small num_ctx: the earliest turns give way to a summary the Executor's model writes;
    the newest turn and the whole task still reach the model, and the summary is reused by
    the next turn instead of being made again."""
    pipeline = make_pipeline(scripted, direct=True, executor={"num_ctx": 2048})
    conversation = Conversation.new()
    for n in range(1, 5):
        conversation.turns.append(
            Turn(number=n, task=f"TASK-{n} " + "lorem " * 60, answer=f"ANSWER-{n} " + "ipsum " * 90)
        )
    task = "Explain the last answer again " + "please " * 40 + "END-OF-TASK"
    scripted.enqueue("SUMMARY-OF-EARLIER-TURNS", "the answer")
    result, events = turn(pipeline, conversation, task)

    (summarised,) = [e for e in events if isinstance(e, Summarised)]
    assert summarised.subject == "turns" and 1 <= summarised.covered < 4
    assert summarised.tokens_after < summarised.tokens_before
    assert result.summarised == [summarised.name]
    summary_call, answer_call = scripted.chats[0], scripted.chats[1]
    assert summary_call.options.max_tokens == 300
    assert "TASK-1" in user_message(scripted, 0)
    prompt = user_message(scripted, 1)
    assert "SUMMARY-OF-EARLIER-TURNS" in prompt and "TASK-1" not in prompt
    assert "TASK-4" in prompt and "ANSWER-4" in prompt  # the newest turn whole
    assert prompt.rstrip().count("END-OF-TASK") == 1 and task in prompt  # the task whole
    assert answer_call.options.max_tokens == 512
    assert conversation.summary == Summary(summarised.covered, "SUMMARY-OF-EARLIER-TURNS")

    scripted.enqueue("another answer")
    _, events = turn(pipeline, conversation, "thanks, and shorter?")
    assert not [e for e in events if isinstance(e, Summarised)]
    assert "SUMMARY-OF-EARLIER-TURNS" in user_message(scripted, 2)
    assert len(scripted.chats) == 3  # no second summary


def test_a_file_too_large_for_the_context_is_summarised(scripted: ScriptedBackend) -> None:
    pipeline = make_pipeline(scripted, direct=True, executor={"num_ctx": 2048})
    log = "\n".join(f"line {i}: INFO all is well" for i in range(180)) + "\nERROR disk full"
    scripted.enqueue("FIRST-PART", "LOG-SUMMARY: the disk is full", "Free some disk space.")
    result, events = turn(
        pipeline, Conversation.new(), "why does this fail?", (Attachment(path="app.log", text=log),)
    )
    assert [e.name for e in events if isinstance(e, Summarised)] == ["app.log"]
    assert result.files == ["app.log"] and result.summarised == ["app.log"]
    assert "FIRST-PART" in user_message(scripted, 1)  # the second part folds in the first's
    answer = user_message(scripted, 2)
    assert "A summary of the file app.log" in answer and "LOG-SUMMARY" in answer
    assert "line 10:" not in answer and "Task: why does this fail?" in answer


def test_files_are_labelled_with_their_paths(scripted: ScriptedBackend) -> None:
    pipeline = make_pipeline(scripted, direct=True)
    scripted.enqueue("ok")
    files = (Attachment(path="a.txt", text="ALPHA"), Attachment(path="b.txt", text="BETA"))
    turn(pipeline, Conversation.new(), "compare them", files)
    prompt = user_message(scripted, 0)
    assert "----- begin a.txt -----\nALPHA\n----- end a.txt -----" in prompt
    assert prompt.index("ALPHA") < prompt.index("BETA") < prompt.index("Task: compare them")


def test_retried_turn_replaces_the_turn_it_reruns() -> None:
    conversation = Conversation(
        "c", [Turn(number=1, task="a", answer="x"), Turn(number=2, task="b", answer="y")]
    )
    dropped = conversation.drop_last()
    assert dropped is not None and dropped.task == "b" and conversation.next_turn == 2


# -- the command line, against the Ollama double ----------------------------------------------


def generated(double: OllamaDouble) -> list[str]:
    """The user messages of each chat request the double served, in order."""
    return [
        next(m["content"] for m in e["messages"] if m["role"] == "user")
        for e in double.events("generate")
        if e.get("messages")
    ]


def test_continue_uses_the_stored_turns(on_double: OllamaDouble) -> None:
    on_double.enqueue("red, yellow and blue", model="qwen2.5:14b")
    code, out, err = invoke("--direct", "--json", "List the three primary colours")
    assert code == 0, err
    first = json.loads(out)
    on_double.enqueue("green and purple", model="qwen2.5:14b")
    code, out, err = invoke("-c", "--direct", "--json", "name two more")
    assert code == 0, err
    second = json.loads(out)
    assert (second["conversation_id"], second["turn"]) == (first["conversation_id"], 2)
    prompt = generated(on_double)[-1]
    assert "List the three primary colours" in prompt and "red, yellow and blue" in prompt

    code, out, _ = invoke("history", "show", first["conversation_id"], "--json")
    shown = json.loads(out)
    assert [t["task"] for t in shown["turns"]] == [
        "List the three primary colours",
        "name two more",
    ]
    code, out, _ = invoke("history", "show", first["conversation_id"][:6])
    assert code == 0 and "Turn 2" in out and "green and purple" in out

    on_double.enqueue("a fresh start", model="qwen2.5:14b")
    code, out, _ = invoke("--direct", "--json", "something else")
    assert json.loads(out)["conversation_id"] != first["conversation_id"]
    on_double.enqueue("back again", model="qwen2.5:14b")
    code, out, _ = invoke(
        "--conversation", first["conversation_id"][:8], "--direct", "--json", "and one more"
    )
    assert code == 0 and json.loads(out)["turn"] == 3


def test_continue_without_a_conversation_or_history_is_a_clear_error(
    on_double: OllamaDouble,
) -> None:
    code, _, err = invoke("-c", "--direct", "follow-up")
    assert code == 2 and "There is no conversation to continue yet." in err
    code, _, err = invoke("-c", "--no-history", "--direct", "follow-up")
    assert code == 2 and "--continue needs the history" in err
    code, _, err = invoke("--conversation", "nope", "--direct", "follow-up")
    assert code == 2 and "No conversation with id 'nope'" in err
    assert not on_double.events("generate")


def test_continue_after_a_kill_mid_turn_resumes_from_the_stored_turns(
    on_double: OllamaDouble, isolated_home: Path
) -> None:
    on_double.enqueue("red, yellow and blue", model="qwen2.5:14b")
    assert invoke("--direct", "List the three primary colours")[0] == 0
    on_double.seconds_per_token = 0.05  # slow enough to kill mid-answer
    on_double.enqueue("word " * 300, model="qwen2.5:14b")
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "-c", "--direct", "--quiet", "KILLED-TURN"],
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(on_double.events("generate")) < 2:
        time.sleep(0.05)
    assert len(on_double.events("generate")) == 2, "the second turn never started"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    with sqlite3.connect(isolated_home / "history.db") as db:
        (status,) = db.execute("SELECT status FROM runs WHERE task = 'KILLED-TURN'").fetchone()
    assert status == "running"  # the process died mid-turn

    on_double.seconds_per_token = 0.0
    on_double.enqueue("green and purple", model="qwen2.5:14b")
    code, out, err = invoke("-c", "--direct", "--json", "name two more")
    assert code == 0, err
    assert json.loads(out)["turn"] == 2
    prompt = generated(on_double)[-1]
    assert "red, yellow and blue" in prompt and "KILLED-TURN" not in prompt


def test_piped_input_is_context_for_a_task_argument(on_double: OllamaDouble) -> None:
    on_double.enqueue("The disk is full.", model="qwen2.5:14b")
    piped = "Traceback ...\nOSError: [Errno 28] No space left on device\n"
    code, out, err = invoke("--direct", "--json", "why does this fail?", input=piped)
    assert code == 0, err
    assert json.loads(out)["files"] == ["stdin"]
    prompt = generated(on_double)[-1]
    assert "----- begin stdin -----" in prompt and "No space left on device" in prompt
    assert prompt.index("No space left") < prompt.index("Task: why does this fail?")


def test_attached_files_reach_the_prompt(on_double: OllamaDouble, tmp_path: Path) -> None:
    source = tmp_path / "count.py"
    source.write_text("print(len(open('x').readlines()))\n")
    on_double.enqueue("It counts lines.", model="qwen2.5:14b")
    code, out, err = invoke("-f", str(source), "--direct", "--json", "what does this do?")
    assert code == 0, err
    assert json.loads(out)["files"] == [str(source)]
    assert f"The file {source}:" in generated(on_double)[-1]


@pytest.mark.parametrize("kind", ["secret", "binary", "missing"])
def test_a_refused_file_stops_the_run_before_any_load(
    on_double: OllamaDouble, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / {"secret": ".env", "binary": "blob.bin", "missing": "absent.txt"}[kind]
    if kind == "secret":
        path.write_text("API_KEY=abc\n")
    elif kind == "binary":
        path.write_bytes(b"\x7fELF\x00\x00binary")
    code, out, err = invoke("-f", str(path), "--direct", "a task")
    assert code != 0 and out == ""
    expected = {"secret": "hold secrets", "binary": "is a binary file", "missing": "not found"}
    assert expected[kind] in err and "Traceback" not in err
    assert not on_double.events("load") and not on_double.events("generate")


# -- end to end on the embedded model ---------------------------------------------------------


@pytest.mark.model
def test_a_two_turn_repl_session_on_the_embedded_model(smollm2: Path, tmp_path: Path) -> None:
    config = tmp_path / "ai-stack.toml"
    config.write_text('backend = "embedded"\ndirect = true\n[executor]\nmax_tokens = 48\n')
    script = "List three primary colours\nnow name two more\n/history\n"
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--interactive", "--json", "--config", str(config)],
        input=script,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert second["conversation_id"] == first["conversation_id"]
    assert (first["turn"], second["turn"]) == (1, 2)
    assert second["metrics"]["loads"] == 0  # room for the conversation from the first load
    assert f"Conversation {first['conversation_id']}" in done.stderr  # the /history table
    shown = subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "history",
            "show",
            first["conversation_id"],
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    turns = json.loads(shown.stdout)["turns"]
    assert [t["task"] for t in turns] == ["List three primary colours", "now name two more"]


def test_on_ollama_token_counts_follow_what_the_server_reported(on_double: OllamaDouble) -> None:
    """No tokenizer at hand: the blind estimate (bytes / 3) until a call, then the server's own
    rate (the double counts about 4 characters a token) with a margin."""
    from ai_stack.backends import ModelSpec
    from ai_stack.session import Session

    text = "word " * 600
    settings = Settings.model_validate({"direct": True})
    with Session.open(settings) as session:
        pipeline = session.pipeline()
        spec = ModelSpec("ollama", "qwen2.5:14b")
        assert pipeline.manager.count_tokens(spec, text) == 1000
        on_double.enqueue("ok", model="qwen2.5:14b")
        list(pipeline.run("Summarise this: " + "a long task text " * 40))
        learnt = pipeline.manager.count_tokens(spec, text)
    assert 750 <= learnt <= 900
