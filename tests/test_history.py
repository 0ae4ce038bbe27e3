"""Run history: recording as events arrive, browsing from the CLI, redaction, migrations,
kill -9, and two processes writing at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ai_stack.config import Settings
from ai_stack.controller import Pipeline
from ai_stack.errors import HistoryError, InvalidOutputError
from ai_stack.history import HistoryRecorder, HistoryStore, schema
from ai_stack.memory import MemoryManager
from ai_stack.prompts import PromptLibrary
from ai_stack.redaction import STORED_CHARS
from ai_stack.session import resolve_roles
from ai_stack.types import RunFinished
from tests.conftest import ROOT, invoke, plan, verdict
from tests.ollama_double import OllamaDouble
from tests.scripted import ScriptedBackend

PLAN = plan("t")
APPROVE = verdict("approve", 9)
REVISE = verdict("revise", 3, "vague")


def scripted_pipeline(backend: ScriptedBackend, **settings: object) -> Pipeline:
    config = Settings.model_validate({"review": "plan", **settings})
    manager = MemoryManager(lambda name: backend, budget_bytes=10**9)
    return Pipeline(config, manager, PromptLibrary(), resolve_roles(config, "embedded"))


@pytest.fixture
def store(isolated_home: Path) -> HistoryStore:
    opened = HistoryStore.open(isolated_home / "history.db")
    yield opened
    opened.close()


# -- the store -----------------------------------------------------------------------------------


def test_a_new_database_is_migrated_and_in_wal_mode(store: HistoryStore) -> None:
    assert store.version == len(schema.MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_program_upgrades_an_older_database(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = isolated_home / "history.db"
    old = HistoryStore.open(path)
    old.start_run("r1", "old task", None, {"models": {}}, "oneshot")
    old.close()

    def add_tags(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE runs ADD COLUMN tags TEXT")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_tags])
    upgraded = HistoryStore.open(path)
    assert upgraded.version == len(schema.MIGRATIONS)
    assert upgraded.run("r1").task == "old task"
    columns = [row[1] for row in upgraded.db.execute("PRAGMA table_info(runs)")]
    assert "tags" in columns
    upgraded.close()


def test_an_older_program_refuses_a_newer_database(isolated_home: Path) -> None:
    path = isolated_home / "history.db"
    HistoryStore.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(HistoryError, match="schema version 99, newer"):
        HistoryStore.open(path)


def test_a_file_that_is_not_a_database(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True)
    (isolated_home / "history.db").write_text("not sqlite " * 200)
    with pytest.raises(HistoryError, match=r"is damaged \(file is not a database\)") as caught:
        HistoryStore.open(isolated_home / "history.db")
    assert "ai-stack history repair" in (caught.value.hint or "")


def test_recorder_stores_every_event_and_reproduces_the_result(
    store: HistoryStore, scripted: ScriptedBackend
) -> None:
    scripted.enqueue(PLAN, REVISE, PLAN.replace('"t"', '"t2"'), APPROVE, "the answer")
    recorder = HistoryRecorder(store, source="oneshot", config={"max_rounds": 2})
    result = None
    for event in scripted_pipeline(scripted).run("do it with password=hunter2"):
        recorder(event)
        if isinstance(event, RunFinished):
            result = event.result.model_dump(mode="json")
    assert result is not None
    stored = store.run(result["id"]).model_dump(mode="json")
    assert stored["status"] == "ok" and stored["source"] == "oneshot"
    assert stored["task"] == "do it with password=[redacted]"
    for key in ("plan", "plans", "critiques", "rounds", "stop_reason", "output", "models"):
        assert stored[key] == result[key], key
    phases = stored["metrics"]["phases"]
    assert [p["phase"] for p in phases] == ["plan", "critique", "revise", "critique", "execute"]
    assert all(p["memory_available_bytes"] > 0 for p in phases)
    for key in ("loads", "unloads", "load_s", "wall_s", "policy", "budget_bytes"):
        assert stored["metrics"][key] == result["metrics"][key]


def test_a_failed_run_keeps_its_finished_phases_and_the_error(
    store: HistoryStore, scripted: ScriptedBackend
) -> None:
    scripted.enqueue(PLAN, "not json", "no", "nope, token=abc123")
    recorder = HistoryRecorder(store, source="oneshot", config={})
    with pytest.raises(InvalidOutputError) as failure:
        for event in scripted_pipeline(scripted).run("task"):
            recorder(event)
    recorder.abandon(failure.value)
    (listed,) = store.list_runs()
    run = store.run(listed.id)
    assert run.status == "failed" and "critic" in (run.error or "")
    assert [p.role for p in run.metrics.phases] == ["planner", "critic", "critic", "critic"]
    assert len(run.plans) == 1
    # what the model last wrote is kept (redacted), to see why it failed
    assert run.raw_output == "nope, token=[redacted]"
    code, out, _ = invoke("history", "show", run.id)
    assert code == 0 and "Last invalid reply" in out and "nope, token=[redacted]" in out


def test_the_stored_configuration_is_redacted_and_huge_texts_are_bounded(
    store: HistoryStore, scripted: ScriptedBackend
) -> None:
    """The backend's URL in the configuration keeps no password, and an answer over the bound
    (10 MB here; test_redaction takes 50 MB) is stored cut, with a note, and still redacted
    (issue 32)."""
    # one line per word: the scripted backend streams a reply word by word, split at spaces
    scripted.enqueue(PLAN, APPROVE, "token=abc123xyz\n" + "word\n" * 2_000_000)
    note = "OpenAI-compatible server at http://apiuser:S3cretPW99@127.0.0.1:8080/v1"
    recorder = HistoryRecorder(store, source="oneshot", config={"backend": note})
    for event in scripted_pipeline(scripted).run("task"):
        recorder(event)
    (listed,) = store.list_runs()
    stored = store.run(listed.id)
    assert stored.config["backend"] == (
        "OpenAI-compatible server at http://apiuser:[redacted]@127.0.0.1:8080/v1"
    )
    assert stored.output is not None and stored.output.startswith("token=[redacted]\nword")
    assert len(stored.output) <= STORED_CHARS + 100 and "characters cut" in stored.output


def test_runs_of_dead_processes_are_reaped_as_interrupted(store: HistoryStore) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.start_run("mine", "still running here", None, {}, "oneshot")
    store.start_run("gone", "was running", None, {}, "oneshot")
    store.db.execute("UPDATE runs SET pid = ? WHERE id = 'gone'", (dead.pid,))
    assert store.reap_orphans() == 1
    assert store.run("gone").status == "interrupted"
    assert store.run("mine").status == "running"


WRITER = """
import sys
from pathlib import Path
from ai_stack.history import HistoryStore
store = HistoryStore.open(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    run = f"{sys.argv[2]}-{i}"
    store.start_run(run, f"task {i}", None, {"models": {}}, "batch")
    for _ in range(5):
        store.add_phase(run, {"role": "planner", "phase": "plan", "model": "m", "round": 0,
                              "attempt": 1, "load_s": 0, "ttft_s": 0, "prompt_tokens": 1,
                              "output_tokens": 1, "tokens_per_s": 1, "wall_s": 0}, thermal=None)
    store.end_run(run, "failed", "test")
"""


def test_two_processes_writing_at_once_lose_nothing(isolated_home: Path) -> None:
    path = isolated_home / "history.db"
    HistoryStore.open(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "40"], cwd=ROOT)
        for name in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    check = HistoryStore.open(path)
    assert check.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 80
    assert check.db.execute("SELECT COUNT(*) FROM phases").fetchone()[0] == 400
    check.close()


def test_prune_removes_runs_older_than_the_age(isolated_home: Path) -> None:
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    store = HistoryStore.open(isolated_home / "history.db", clock=lambda: now[0])
    for run_id in ("old", "older"):
        store.start_run(run_id, "t", None, {}, "oneshot")
        store.end_run(run_id, "failed", "x")
    now[0] += timedelta(days=10)
    store.start_run("new", "t", None, {}, "oneshot")
    store.end_run("new", "failed", "x")
    store.start_run("busy", "t", None, {}, "oneshot")  # still running: never pruned
    now[0] += timedelta(days=25)
    assert store.prune(timedelta(days=30)) == 2
    assert {r.id for r in store.list_runs()} == {"new", "busy"}
    now[0] += timedelta(days=365)
    assert store.prune(timedelta(days=30)) == 1
    assert [r.id for r in store.list_runs()] == ["busy"]
    store.close()


# -- the CLI ---------------------------------------------------------------------------------------


def test_oneshot_and_interactive_runs_are_listed_and_reproduced(on_double: OllamaDouble) -> None:
    code, out, err = invoke("--json", "--max-rounds", "1", "--review", "plan", "first task")
    assert code == 0, err
    oneshot = json.loads(out)
    code, out, err = invoke("--interactive", "--json", input="second task\nthird task\n")
    assert code == 0, err
    second, third = (json.loads(line) for line in out.splitlines())

    code, out, _ = invoke("history", "list", "--json")
    assert code == 0
    runs = json.loads(out)

    def status(result: dict) -> str:  # an answer failing a check of the task's own: unmet
        return "unmet" if result["unmet"] else "ok"

    assert [(r["task"], r["status"], r["source"]) for r in runs] == [
        ("third task", status(third), "interactive"),
        ("second task", status(second), "interactive"),
        ("first task", "ok", "oneshot"),
    ]
    code, out, _ = invoke("history", "show", oneshot["id"][:6], "--json")
    assert code == 0
    shown = json.loads(out)
    for key, value in oneshot.items():
        if key != "metrics":
            assert shown[key] == value, key
    for key, value in oneshot["metrics"].items():
        if key != "phases":
            assert shown["metrics"][key] == value, key
    assert [
        {k: p[k] for k in oneshot["metrics"]["phases"][0]} for p in shown["metrics"]["phases"]
    ] == oneshot["metrics"]["phases"]
    code, out, _ = invoke("history", "show", oneshot["id"])
    assert code == 0 and "first task" in out and "Plan v1" in out
    assert "Review ended after 1 round(s)" in out
    code, out, _ = invoke("history", "show", second["id"])  # the team: versions, not rounds
    assert code == 0 and "Answer review ended with " in out and "round(s)" not in out


def test_history_off_by_flag_and_by_config(on_double: OllamaDouble, tmp_path: Path) -> None:
    code, _, err = invoke("--no-history", "task one")
    assert code == 0, err
    config = tmp_path / "c.toml"
    config.write_text("[history]\nenabled = false\n")
    code, _, err = invoke("--config", str(config), "task two")
    assert code == 0, err
    code, _, err = invoke("history", "list")
    assert code != 0 and "No history yet" in err


def test_export_rm_and_prune(on_double: OllamaDouble, tmp_path: Path) -> None:
    for task in ("alpha", "beta"):
        assert invoke("--max-rounds", "0", task)[0] == 0
    out_file = tmp_path / "runs.jsonl"
    assert invoke("history", "export", "--out", str(out_file))[0] == 0
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert {run["task"] for run in lines} == {"alpha", "beta"}
    code, csv_text, _ = invoke("history", "export", "--format", "csv")
    assert code == 0 and csv_text.splitlines()[0].startswith("id,created_at")
    assert len(csv_text.splitlines()) == 3

    beta = next(run["id"] for run in lines if run["task"] == "beta")
    for answer in ("n\n", None):  # "no", then no answer at all (end of input)
        code, _, err = invoke("history", "rm", beta, input=answer)
        assert (code, err.count("Nothing deleted.")) == (1, 1), err
        code, _, err = invoke("history", "prune", "--older-than", "0d", input=answer)
        assert (code, err.count("Nothing deleted.")) == (1, 1), err
    assert len(json.loads(invoke("history", "list", "--json")[1])) == 2
    assert invoke("history", "rm", beta, "-y")[0] == 0
    code, out, _ = invoke("history", "list", "--json")
    assert [run["task"] for run in json.loads(out)] == ["alpha"]

    code, _, err = invoke("history", "prune", "--older-than", "soon", "-y")
    assert code == 2 and "Cannot read the age" in err
    code, _, err = invoke("history", "prune", "--older-than", "30d", "-y")
    assert code == 0 and "Deleted 0 run" in err
    assert len(json.loads(invoke("history", "list", "--json")[1])) == 1


def test_unknown_run_id(on_double: OllamaDouble) -> None:
    assert invoke("--max-rounds", "0", "task")[0] == 0
    code, _, err = invoke("history", "show", "zzzz")
    assert code == 2 and "No run with id 'zzzz'" in err


def test_a_run_killed_with_sigkill_shows_as_interrupted_with_its_phases(
    on_double: OllamaDouble, isolated_home: Path
) -> None:
    on_double.seconds_per_token = 0.05  # slow enough to kill mid-run
    # A long answer keeps the run in its last phase for seconds, so the kill below always lands
    # before the run finishes, however slowly the polling loop runs on a busy machine.
    on_double.enqueue("word " * 300, model="qwen2.5:14b")
    env = {**os.environ}
    child = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--max-rounds",
            "2",
            "--review",
            "plan",
            "--quiet",
            "a slow task",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    database = isolated_home / "history.db"
    deadline = time.monotonic() + 60
    phases = 0
    while time.monotonic() < deadline and phases < 2:
        time.sleep(0.1)
        if database.exists():
            try:
                with sqlite3.connect(database) as db:
                    phases = db.execute("SELECT COUNT(*) FROM phases").fetchone()[0]
            except sqlite3.OperationalError:
                pass  # the child is still creating the tables
    assert phases >= 2, "the run never reached its second phase"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)

    code, out, _ = invoke("history", "list", "--json")
    assert code == 0
    (run,) = json.loads(out)
    assert run["status"] == "interrupted"
    shown = json.loads(invoke("history", "show", run["id"], "--json")[1])
    assert len(shown["metrics"]["phases"]) >= 2
    assert shown["plans"], "the plan finished before the kill and is kept"
    assert shown["output"] is None


def test_every_answer_version_and_its_evidence_is_kept(store: HistoryStore) -> None:
    from ai_stack.evidence import EvidenceCollector
    from ai_stack.sandbox import Limits, Sandbox
    from tests.test_answer_review import BUGGY, FIXED, TASK

    backend = ScriptedBackend()
    backend.enqueue(BUGGY, FIXED)
    config = Settings.model_validate({"review": "answer", "max_rounds": 1})
    manager = MemoryManager(lambda name: backend, budget_bytes=10**9)
    sandbox = Sandbox(Limits(seconds=10), isolation="none", allow_unisolated=True)
    pipeline = Pipeline(
        config,
        manager,
        PromptLibrary(),
        resolve_roles(config, "embedded"),
        evidence=EvidenceCollector(sandbox),
    )
    recorder = HistoryRecorder(store, source="oneshot", config={})
    result = None
    for event in pipeline.run(TASK):
        recorder(event)
        if isinstance(event, RunFinished):
            result = event.result
    assert result is not None
    stored = store.run(result.id)
    assert stored.mode == "answer" and stored.answers == result.answers
    assert stored.answer_critiques == result.answer_critiques
    assert stored.chosen_answer == 2 and stored.answer_stop_reason == "approved"
    code, out, _ = invoke("history", "show", result.id)
    assert code == 0 and "Answer v1 — 2 of 3 checks passed" in out
    assert "✗ compress('aaabcc') should return 'a3b1c2': returned 'a3b1'" in out
    assert "the answer below is v2" in " ".join(out.split())  # wrapped at 80 columns
    # while a run is unfinished its answers are read back from their own table, as they arrived
    store.db.execute("UPDATE runs SET result = NULL WHERE id = ?", (result.id,))
    partial = store.run(result.id)
    assert partial.answers == result.answers
    assert partial.answer_critiques == result.answer_critiques


# -- faults: the history is a record, never a gate ------------------------------------------------


def damage(path: Path) -> None:
    """Overwrite the middle of a database file with garbage, as a failing disk would."""
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data), 4096):  # every page's header, after the file's own
        data[offset : offset + 12] = b"\xde\xad" * 6
    path.write_bytes(bytes(data))


def test_a_damaged_history_costs_no_answer(on_double: OllamaDouble, isolated_home: Path) -> None:
    for task in ("one", "two", "three"):
        assert invoke("--direct", task)[0] == 0
    database = isolated_home / "history.db"
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the file itself
    damage(database)

    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--direct", "still answered"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0 and done.stdout.strip() == "An answer from qwen2.5:14b."
    err = done.stderr
    assert err.count("Warning: not recorded in the history") == 1
    assert "is damaged" in err and "ai-stack history repair" in err and "Traceback" not in err

    code, _, err = invoke("history", "list")
    assert code == 1 and "is damaged" in err and "Traceback" not in err
    code, out, _ = invoke("doctor", "--json")
    history_check = next(c for c in json.loads(out) if c["check"] == "history")
    assert history_check["status"] == "fail" and "repair" in history_check["fix"]

    code, _, err = invoke("history", "repair")
    assert code == 0 and "The damaged file is kept at" in err
    (kept,) = isolated_home.glob("history.db.damaged-????????-??????")  # -wal, -shm beside it
    assert kept.read_bytes()[:16] == b"SQLite format 3\0"  # moved, not deleted
    code, out, _ = invoke("history", "list", "--json")
    assert code == 0 and isinstance(json.loads(out), list)
    assert invoke("--direct", "recorded again")[0] == 0
    assert json.loads(invoke("history", "list", "--json")[1])[0]["task"] == "recorded again"
    code, _, err = invoke("history", "repair")
    assert code == 0 and "reads cleanly; nothing to repair" in err


READ_ONLY_RUN = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only file system needs root")
def test_a_read_only_history_costs_no_answer(on_double: OllamaDouble, isolated_home: Path) -> None:
    """Root ignores permission bits, so the history directory is made a read-only mount."""
    assert invoke("--direct", "before")[0] == 0  # a database exists, then becomes read-only
    done = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            READ_ONLY_RUN,
            "sh",
            str(isolated_home),
            sys.executable,
            str(ROOT / "main.py"),
            "--direct",
            "a task",
        ],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "An answer from qwen2.5:14b."
    assert "not recorded in the history" in done.stderr and "Traceback" not in done.stderr
    assert "cannot be written" in done.stderr


def history_verdict(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return next(c for c in json.loads(done.stdout) if c["check"] == "history")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only file system needs root")
def test_doctor_says_a_read_only_history_is_read_only(isolated_home: Path) -> None:
    """A healthy database on a read-only mount was called damaged (SQLite cannot make its WAL
    index there) with a repair that fails; one whose file is immutable (``chattr +i``) was
    called writable (SQLite opens it read-only and even begins a transaction)."""
    database = isolated_home / "history.db"
    HistoryStore.open(database).close()
    doctor = [sys.executable, str(ROOT / "main.py"), "doctor", "--json"]
    mounted = ["unshare", "-m", "sh", "-c", READ_ONLY_RUN, "sh", str(isolated_home), *doctor]
    done = subprocess.run(mounted, capture_output=True, text=True, timeout=120, check=False)
    verdict = history_verdict(done)
    assert verdict["status"] == "fail" and "cannot be written" in verdict["detail"], verdict
    assert "damaged" not in verdict["detail"] and "repair" not in (verdict["fix"] or "")

    if subprocess.run(["chattr", "+i", str(database)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    try:
        done = subprocess.run(doctor, capture_output=True, text=True, timeout=120, check=False)
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True)
    verdict = history_verdict(done)
    assert verdict["status"] == "fail" and "cannot be written" in verdict["detail"], verdict


def test_export_writes_through_a_device_a_fifo_or_a_link_never_replacing_it(
    store: HistoryStore, tmp_path: Path
) -> None:
    """A rename over the target put a regular file where /dev/null or a FIFO was (as root it
    broke /dev/full); a link would have been replaced by a file."""
    import os
    import stat
    import threading

    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    code, _, err = invoke("history", "export", "--out", str(link))
    assert code == 0, err
    assert link.is_symlink() and target.is_file()
    null = tmp_path / "null"  # a node of the null device of our own: a regression replaces it,
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # never the machine's /dev/null
    code, _, err = invoke("history", "export", "--out", str(null))
    assert code == 0 and null.is_char_device(), err
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, _, err = invoke("history", "export", "--out", str(fifo))
    reader.join(timeout=30)
    assert code == 0 and fifo.is_fifo() and received, err
    code, _, err = invoke("history", "export", "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err and "Traceback" not in err


def test_history_list_shows_each_run_on_one_line_at_80_columns(store: HistoryStore) -> None:
    long = "Write a Python function that parses durations such as 1h30m into seconds, " * 3
    models = {"models": {"planner": "ollama:qwen2.5:14b", "executor": "ollama:qwen2.5:14b"}}
    store.start_run("r1", long + "\nand more on a second line", None, models, "oneshot")
    store.start_run("r2", "short task", None, models, "oneshot")
    code, out, _ = invoke("history", "list")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith(("│ r1", "│ r2"))]
    assert len(rows) == 2, out  # neither task wraps onto further lines
    assert all(len(line) <= 80 for line in out.splitlines()), out
    (first,) = [row for row in rows if row.startswith("│ r1")]
    assert "Write a Python" in first and "…" in first


def finish(store: HistoryStore, run_id: str, output: str) -> None:
    metrics = {"loads": 0, "unloads": 0, "load_s": 0.0, "wall_s": 0.0}
    result = {"metrics": metrics, "stop_reason": None, "rounds": 0, "output": output}
    store.finish_run(run_id, result)


def test_two_follow_ups_run_at_once_are_two_turns(store: HistoryStore) -> None:
    """Both read the conversation before either finished, so both ask for turn 2: one used to
    hide the other, as if it had been run again. Only a /retry replaces a turn."""
    store.start_run("first", "hello", None, {}, "cli", conversation=("conv", 1))
    finish(store, "first", "hi")
    for run_id in ("left", "right"):  # started together
        store.start_run(run_id, f"{run_id}?", None, {}, "cli", conversation=("conv", 2))
    for run_id in ("right", "left"):
        finish(store, run_id, f"{run_id}!")
    turns = store.conversation_turns("conv")
    assert [(t.number, t.run_id) for t in turns] == [(1, "first"), (2, "left"), (3, "right")]
    code, out, err = invoke("history", "show", "conv", "--json")
    assert code == 0, err
    assert [t["task"] for t in json.loads(out)["turns"]] == ["hello", "left?", "right?"]

    store.start_run("again", "right?", None, {}, "cli", conversation=("conv", 3), replaces="right")
    finish(store, "again", "right, again!")
    turns = store.conversation_turns("conv")
    assert [t.run_id for t in turns] == ["first", "left", "again"]


def test_turns_run_again_before_the_replaces_link_still_read_as_one(isolated_home: Path) -> None:
    """A history written before migration 7: the later finished run of a turn replaced it."""
    path = isolated_home / "history.db"
    with HistoryStore.open(path) as store:
        store.start_run("one", "q", None, {}, "cli", conversation=("c", 1))
        finish(store, "one", "a")
        store.start_run("two", "q", None, {}, "cli", conversation=("c", 1))
        finish(store, "two", "b")
        store.db.execute("UPDATE runs SET replaces = NULL")
        store.db.execute("UPDATE schema_version SET version = 6")
        store.db.execute("ALTER TABLE runs DROP COLUMN replaces")
        store.db.commit()
    with HistoryStore.open(path) as upgraded:
        assert [t.run_id for t in upgraded.conversation_turns("c")] == ["two"]
