"""The command line: bad input gives one clear line and a non-zero exit; --json is pure JSON;
the real model runs end to end through all three roles, one-shot and interactive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from ai_stack.cli import cli
from tests.conftest import ROOT, invoke
from tests.ollama_double import OllamaDouble

RESULT_KEYS = {"task", "plan", "critiques", "rounds", "stop_reason", "output", "metrics"}
PHASE_KEYS = {
    "role",
    "model",
    "load_s",
    "ttft_s",
    "prompt_tokens",
    "output_tokens",
    "tokens_per_s",
    "wall_s",
}


def assert_clean_error(code: int, stderr: str, expected: str) -> None:
    assert code not in (0, 70)  # 70: an internal error
    assert expected in stderr
    assert "Traceback" not in stderr


def test_help_and_version() -> None:
    code, out, _ = invoke("--help")
    assert code == 0 and "Planner" in out and "run" in out
    assert invoke("-h")[1] == out
    code, out, _ = invoke("run", "-h")  # every command, as click's help_option_names say
    assert code == 0 and "--interactive" in out
    code, out, _ = invoke("models", "list", "-h")
    assert code == 0 and "models list [OPTIONS]" in out and "-h, --help" in out
    code, out, _ = invoke("--version")
    assert code == 0 and "ai-stack" in out


def test_empty_task_is_refused() -> None:
    code, out, err = invoke("   ")
    assert_clean_error(code, err, "The task is empty")
    assert out == ""
    code, _, err = invoke("--json")
    assert_clean_error(code, err, "The task is empty")


def test_unknown_backend_is_refused() -> None:
    code, _, err = invoke("--backend", "vllm", "task")
    assert code == 2 and "vllm" in err and "Traceback" not in err


def test_unknown_backend_prefix_in_config_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('backend = "lmstudio"\n')
    code, _, err = invoke("--config", str(config), "task")
    assert_clean_error(code, err, "backend")


@pytest.mark.parametrize("host", ["file:///x", "ftp://h", "http://h:port", "not a url"])
def test_an_ollama_host_that_is_no_http_url_is_refused(tmp_path: Path, host: str) -> None:
    """It was exit 70 (a KeyError on the scheme); a value without a scheme was taken for a host
    name, spaces and all, and the run hung. Now refused when the settings are read: exit 2."""
    config = tmp_path / "c.toml"
    config.write_text(f'[ollama]\nhost = "{host}"\n')
    for args in (("--backend", "ollama", "task"), ("models", "list")):
        code, _, err = invoke(*args, "--config", str(config))
        assert_clean_error(code, err, "is not an http:// or https:// URL")
        assert code == 2 and "ollama.host" in err


@pytest.mark.parametrize("keep_alive", ["10", "forever", "5 m", ""])
def test_an_invalid_keep_alive_is_refused_when_read(tmp_path: Path, keep_alive: str) -> None:
    """It was found only when the server refused the first load (exit 1)."""
    config = tmp_path / "c.toml"
    config.write_text(f'[ollama]\nkeep_alive = "{keep_alive}"\n')
    code, _, err = invoke("--backend", "ollama", "--config", str(config), "task")
    assert_clean_error(code, err, "ollama.keep_alive")
    assert code == 2 and "is not a duration such as 10m" in err


def test_missing_gguf_path_is_refused_before_any_work(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    code, _, err = invoke("--planner", f"embedded:{missing}", "task")
    assert_clean_error(code, err, "GGUF file not found")


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("plain text")
    code, _, err = invoke("--planner", f"embedded:{fake}", "task")
    assert_clean_error(code, err, "is not a GGUF model file")


def test_unknown_embedded_model_name_says_what_is_known() -> None:
    code, _, err = invoke("--planner", "embedded:llama-70b", "task")
    assert_clean_error(code, err, "No embedded model named 'llama-70b'")
    assert "smollm2" in err


def test_unreadable_or_invalid_config_file(tmp_path: Path) -> None:
    code, _, err = invoke("--config", str(tmp_path / "absent.toml"), "task")
    assert_clean_error(code, err, "Config file not found")
    code, _, err = invoke("--config", str(tmp_path), "task")
    assert_clean_error(code, err, "directory")
    bad = tmp_path / "bad.toml"
    bad.write_text("max_rounds = = 2")
    code, _, err = invoke("--config", str(bad), "task")
    assert_clean_error(code, err, "not valid TOML")


def test_unreachable_ollama_is_one_clear_error() -> None:
    code, _, err = invoke("--backend", "ollama", "task")
    assert_clean_error(code, err, "Ollama is not reachable")
    assert "ollama serve" in err and "--backend embedded" in err


def test_task_and_interactive_together_are_refused() -> None:
    code, _, err = invoke("--interactive", "a task")
    assert_clean_error(code, err, "not both")


def test_debug_shows_the_traceback() -> None:
    result = CliRunner().invoke(cli, ["--debug", "--planner", "embedded:/nowhere.gguf", "task"])
    assert result.exception is not None and not isinstance(result.exception, SystemExit)


# -- the real model ------------------------------------------------------------------------------


def fast_config(tmp_path: Path, rounds: int = 1) -> Path:
    """Shorter answers keep the real-model tests quick; the pipeline is the same."""
    config = tmp_path / "fast.toml"
    config.write_text(f"max_rounds = {rounds}\n[executor]\nmax_tokens = 160\n")
    return config


def assert_result_shape(data: dict, task: str) -> None:
    assert data.keys() >= RESULT_KEYS
    assert data["task"] == task
    assert data["output"].strip()
    metrics = data["metrics"]
    assert {"phases", "loads", "unloads", "wall_s"} <= metrics.keys()
    assert "executor" in {p["role"] for p in metrics["phases"]}
    for phase in metrics["phases"]:
        assert phase.keys() >= PHASE_KEYS
        assert phase["model"] == "embedded:smollm2"
        assert phase["output_tokens"] > 0 and phase["prompt_tokens"] > 0
    assert metrics["loads"] == 1, "one shared model loads once"
    assert metrics["wall_s"] >= sum(p["wall_s"] for p in metrics["phases"]) * 0.99


def assert_versions(data: dict, err: str) -> None:
    """Every version is numbered in order and checked; the output is the chosen one."""
    versions = [answer["version"] for answer in data["answers"]]
    assert versions == list(range(1, len(versions) + 1)) and data["chosen_answer"] in versions
    assert all(answer["evidence"] is not None for answer in data["answers"])
    assert data["output"] == data["answers"][data["chosen_answer"] - 1]["text"]
    assert "Checks on answer v1" in err, "progress goes to stderr"


@pytest.mark.model
def test_json_run_on_the_real_model_is_pure_json(smollm2: Path, tmp_path: Path) -> None:
    """The default, the team: the Executor answers, what the task asks for is decided once (by
    its words, else by the Planner), the checks follow from it, and failing answers are replaced
    by fresh ones; the Critic is not called."""
    task = "Write a Python function that counts lines in all .py files under a folder"
    code, out, err = invoke("--config", str(fast_config(tmp_path, rounds=2)), "--json", task)
    assert code == 0, err
    data = json.loads(out)  # stdout holds the JSON object and nothing else
    assert_result_shape(data, task)
    assert data["mode"] == "team" and data["plan"] is None and data["stop_reason"] is None
    assert data["ask"]["kind"] in ("code", "result", "prose", "unknown")
    assert data["ask"]["by"] in ("task", "planner")
    assert {p["role"] for p in data["metrics"]["phases"]} <= {"planner", "executor"}
    assert data["metrics"]["phases"][0]["phase"] == "execute", "the Executor answers first"
    assert data["answer_critiques"] == []
    assert_versions(data, err)


@pytest.mark.model
def test_json_run_of_the_answer_review(smollm2: Path, tmp_path: Path) -> None:
    """--review answer: the Executor answers, the checks and the Critic review the answer."""
    task = "Write a Python function that counts lines in all .py files under a folder"
    config = str(fast_config(tmp_path, rounds=2))
    code, out, err = invoke("--config", config, "--review", "answer", "--json", task)
    assert code == 0, err
    data = json.loads(out)  # stdout holds the JSON object and nothing else
    assert_result_shape(data, task)
    assert data["mode"] == "answer" and data["plan"] is None and data["stop_reason"] is None
    assert_versions(data, err)
    assert data["answer_rounds"] == len(data["answer_critiques"]) >= 1
    # the stop reason agrees with what the versions show (the schema alone cannot ensure it)
    failed = [sum(c["passed"] is False for c in a["evidence"]["checks"]) for a in data["answers"]]
    last = data["answer_critiques"][-1]
    reason = data["answer_stop_reason"]
    assert reason != "approved" or (last["verdict"] == "approve" and failed[-1] == 0), data
    assert reason != "no_progress" or (len(failed) > 1 and failed[-1] >= failed[-2]), data
    assert reason != "max_rounds" or data["answer_rounds"] == 3, data  # 2 fixes and a re-check


@pytest.mark.model
def test_json_run_with_the_plan_review(smollm2: Path, tmp_path: Path) -> None:
    task = "Write a shell one-liner that counts lines in all .py files"
    code, out, err = invoke(
        "--config", str(fast_config(tmp_path)), "--review", "plan", "--json", task
    )
    assert code == 0, err
    data = json.loads(out)
    assert_result_shape(data, task)
    assert data["mode"] == "plan" and data["plan"]["steps"], "the plan has steps"
    assert data["rounds"] == len(data["critiques"]) >= 1
    assert [c["round"] for c in data["critiques"]] == list(range(1, data["rounds"] + 1))
    last = data["critiques"][-1]
    if data["stop_reason"] == "approved":
        assert last["verdict"] == "approve"
    elif data["stop_reason"] == "max_rounds":
        assert data["rounds"] == 1 and last["verdict"] == "revise"  # fast_config's rounds
    assert data["plan"] == data["plans"][-1] and len(data["plans"]) == data["rounds"]
    assert {p["role"] for p in data["metrics"]["phases"]} == {"planner", "critic", "executor"}
    assert data["answer_critiques"] == [] and data["answer_stop_reason"] is None


@pytest.mark.model
def test_main_py_default_run_prints_the_answer_to_stdout(smollm2: Path) -> None:
    """The README's command exactly, as a user runs it: python main.py "TASK". Stdout holds the
    final answer only (the one the review chose), progress goes to stderr."""
    task = "Write a shell one-liner that counts lines in all .py files"
    env = {**os.environ, "AI_STACK_HOME": os.environ["AI_STACK_HOME"]}
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), task],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the answer is printed on stdout"
    for marker in ("Task:", "Checks on answer v1", "Answer review ended", "Done in"):
        assert marker in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.model
def test_interactive_with_piped_input(smollm2: Path, tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    script = "/help\n/models\nList three primary colours\n\n/config\nName two planets\n"
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--interactive", "--json", "--config", str(config)],
        input=script,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["task"] for d in lines] == ["List three primary colours", "Name two planets"]
    for data in lines:
        assert data["output"].strip()
    assert lines[0]["metrics"]["loads"] == 1 and lines[1]["metrics"]["loads"] == 0
    assert "/models" in done.stderr and "executor" in done.stderr  # /help, then the /models table
    assert '"max_rounds": 1' in done.stderr  # /config shows the settings in force


@pytest.mark.model
def test_a_retried_turn_replaces_it_in_the_history(smollm2: Path, tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--interactive", "--json", "--config", str(config)],
        input="Name a colour\n/retry\n",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, again = (json.loads(line) for line in done.stdout.splitlines())
    assert first["turn"] == again["turn"] == 1
    code, out, err = invoke("history", "show", first["conversation_id"], "--json")
    assert code == 0, err
    assert [t["run_id"] for t in json.loads(out)["turns"]] == [again["id"]]


@pytest.mark.model
def test_interactive_quit_stops_before_later_lines(smollm2: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--interactive", "--json"],
        input="/quit\nthis task never runs\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


@pytest.mark.model
@pytest.mark.parametrize("interactive", [False, True], ids=["stdin-task", "interactive"])
def test_bytes_that_are_not_utf8_on_stdin_are_replaced_with_a_warning(
    smollm2: Path, interactive: bool
) -> None:
    """Latin-1 text piped in (é as one byte) is a task with U+FFFD, not an internal error."""
    command = ["--interactive"] if interactive else ["-"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--direct", "--json", *command],
        input="Say caf\xe9 twice\n".encode("latin-1"),
        capture_output=True,
        timeout=300,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert stderr.count("not valid UTF-8") == 1
    assert json.loads(done.stdout)["task"] == "Say caf\ufffd twice"


def test_progress_names_only_the_roles_the_mode_calls(on_double: OllamaDouble) -> None:
    code, _, err = invoke("--direct", "--executor", "ollama:qwen2.5:7b", "a task")
    assert code == 0, err
    assert "Models: executor ollama:qwen2.5:7b · run" in err and "planner" not in err
    code, _, err = invoke("--review", "plan", "--max-rounds", "0", "a task")
    assert code == 0, err
    assert "Models: planner" in err and "executor" in err


def test_the_short_help_of_every_lazy_command_is_its_own() -> None:
    """`ai-stack --help` lists commands without importing them: the table must say what each
    command's own help says."""
    from ai_stack.cli import COMMANDS

    context = click.Context(cli)
    for name, (_, _, short) in COMMANDS.items():
        command = cli.get_command(context, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=200) == short, name


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--version"]])
def test_help_and_version_load_none_of_the_runtime(argv: list[str]) -> None:
    probe = (
        "import sys; from ai_stack.cli import cli\n"
        f"try:\n    cli({argv!r}, prog_name='ai-stack')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('ai_stack.session', 'ai_stack.types', 'ai_stack.controller',"
        " 'pydantic', 'jinja2', 'mcp') if m in sys.modules]\n"
        "print('LOADED', heavy)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "LOADED []" in done.stdout, done.stdout


def test_a_task_that_is_not_utf8_is_refused_in_one_line() -> None:
    code, _, err = invoke("--direct", "caf\udce9")  # what a non-UTF-8 byte becomes in argv
    assert code == 2 and "The task is not valid UTF-8 text." in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_pipe_or_a_device_named_as_a_file_is_refused_not_read(tmp_path: Path, kind: str) -> None:
    """A FIFO would block forever and /dev/zero never ends: neither is read as a file."""
    path = tmp_path / "pipe" if kind == "fifo" else Path("/dev/zero")
    if kind == "fifo":
        os.mkfifo(path)
    code, _, err = invoke("-f", str(path), "--direct", "what is this?")
    assert code == 2 and "is a pipe or a device, not a regular file" in err


def test_numbers_out_of_range_are_usage_errors() -> None:
    code, _, err = invoke("history", "list", "--limit", "99999999999999999999")
    assert code == 2 and "not in the range" in err
    code, _, err = invoke("--memory-budget", "nan", "--direct", "hi")
    assert code == 2 and "memory.budget_gb: Input should be a finite number" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["batch", "{fifo}", "--dry-run"], "is a pipe or a device, not a regular file"),
        (["batch", "/dev/zero", "--dry-run"], "is a pipe or a device, not a regular file"),
        (["--config", "/dev/zero", "--direct", "hi"], "is a pipe or a device, not a regular file"),
        (["--config", "{fifo}", "--direct", "hi"], "is a pipe or a device, not a regular file"),
        (["--check", "{fifo}", "--direct", "hi"], "is a pipe or a device, not a regular file"),
    ],
)
def test_a_file_argument_that_is_a_pipe_or_device_is_refused_unread(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    """/dev/zero grew the process to 10 GB in 20 s; a FIFO with no writer hung it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = [arg.replace("{fifo}", str(fifo)) for arg in argv]
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_piped_input_is_read_only_up_to_its_limit() -> None:
    big = b"x" * (3 * 1024 * 1024)
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--direct", "what is this?"],
        input=big,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert b"over the 512 KiB limit for one file" in done.stderr
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "-"], input=big, capture_output=True, timeout=60
    )
    assert done.returncode == 2 and b"The task read from stdin is over" in done.stderr


# -- bad input through the real CLI (a subprocess: exit codes and streams as a shell sees them) --


def main_py(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    options.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=120,
        **options,
    )


@pytest.mark.parametrize("name", ["magic only", "nested arrays", "a huge key", "a huge string"])
@pytest.mark.parametrize(
    "argv",
    [
        ["models", "add", "{file}"],
        ["models", "show", "embedded:{file}"],
        ["--direct", "--executor", "embedded:{file}", "hi"],
    ],
)
def test_a_crafted_gguf_header_is_one_clear_message(
    tmp_path: Path, name: str, argv: list[str]
) -> None:
    """Each was exit 70: RecursionError, MemoryError, OverflowError, "unexpected end of file"."""
    from tests.test_gguf import CRAFTED

    path = tmp_path / "crafted.gguf"
    path.write_bytes(CRAFTED[name])
    done = main_py(*[arg.replace("{file}", str(path)) for arg in argv])
    assert_clean_error(done.returncode, done.stderr, "has a damaged GGUF header")


@pytest.mark.parametrize("argv", [["--version"], ["system", "--json"]])
def test_output_into_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    """As `ai-stack ... | head -c 1` does once head has its byte: no traceback, no "Exception
    ignored", not exit 70 (it was, or 120)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = main_py(*argv, stdout=writer)
    finally:
        os.close(writer)
    assert done.returncode == 1 and done.stderr == ""


@pytest.mark.parametrize("argv", [["--version"], ["system", "--json"]])
def test_output_onto_a_full_device_is_one_clear_message(argv: list[str]) -> None:
    with open("/dev/full", "w") as full:
        done = main_py(*argv, stdout=full)
    assert_clean_error(done.returncode, done.stderr, "Cannot write the output: No space left")
    assert "Exception ignored" not in done.stderr


def test_an_age_past_any_history_is_a_usage_error() -> None:
    done = main_py("history", "prune", "--older-than", "999999999999d", "-y")
    assert done.returncode == 2, done.stderr
    assert_clean_error(done.returncode, done.stderr, "is longer than any history")


# -- what a run claims, and the sampling it used -------------------------------------------------

SKY = "Explain in two sentences why the sky is blue."
ONE_SENTENCE = "Air scatters blue sunlight more than red light."
QWEN = ("--executor", "ollama:qwen2.5:7b", "--planner", "ollama:qwen2.5:7b")
UNMET = 'sentences: exactly 2 ("two sentences") (the answer has 1 sentence)'


def test_an_unmet_check_is_said_in_the_output_json_history_and_strict_exit(
    on_double: OllamaDouble,
) -> None:
    """An answer that fails a check of the task's own is still given, but the run says so: a
    last line on stderr, ``unmet`` in --json, ``unmet`` as its history status, and exit 3
    under --strict (0 without it)."""
    on_double.enqueue(ONE_SENTENCE)
    code, out, err = invoke(*QWEN, "--max-rounds", "0", "--json", SKY)
    assert code == 0, err
    data = json.loads(out)
    assert data["output"] == ONE_SENTENCE
    assert data["unmet"] == [UNMET], data["unmet"]
    assert err.strip().splitlines()[-1] == f"unmet: {UNMET}"
    code, out, err = invoke("history", "list", "--json")
    assert code == 0, err
    assert [run["status"] for run in json.loads(out)] == ["unmet"]
    code, out, _ = invoke("history", "show", data["id"][:8], "--json")
    assert json.loads(out)["status"] == "unmet"

    on_double.enqueue(ONE_SENTENCE)
    code, out, err = invoke(*QWEN, "--max-rounds", "0", "--strict", "-q", SKY)
    assert code == 3, err
    assert out.strip() == ONE_SENTENCE and err.strip() == f"unmet: {UNMET}"
    two = "Air scatters blue light most. So the sky looks blue."
    on_double.enqueue(two)
    code, out, err = invoke(*QWEN, "--max-rounds", "0", "--strict", SKY)
    assert code == 0 and "unmet" not in err, err


def seeds(double: OllamaDouble) -> list[int]:
    return [event["options"].get("seed") for event in double.events("generate")]


def test_seed_temperature_and_model_options_reach_every_call_and_the_record(
    on_double: OllamaDouble,
) -> None:
    code, out, err = invoke(
        "--direct", *QWEN, "--seed", "7", "--temperature", "1.1", "--json", "hi"
    )
    assert code == 0, err
    assert json.loads(out)["seed"] == 7
    (options,) = [event["options"] for event in on_double.events("generate")]
    assert (options["seed"], options["temperature"]) == (7, 1.1)

    code, out, err = invoke("--direct", *QWEN, "--seed", "random", "--json", "hi")
    assert code == 0, err
    used = json.loads(out)["seed"]
    assert isinstance(used, int) and seeds(on_double)[-1] == used
    code, out, _ = invoke("history", "show", json.loads(out)["id"], "--json")
    assert json.loads(out)["seed"] == used  # so --seed N reproduces the run

    code, out, err = invoke(
        "--direct", *QWEN, "-o", "temperature=0.9", "-o", "max_tokens=64", "-o", "seed=3", "hi"
    )
    assert code == 0, err
    options = on_double.events("generate")[-1]["options"]
    assert (options["temperature"], options["num_predict"], options["seed"]) == (0.9, 64, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-o", "top_k=3"], "is not KEY=VALUE with KEY one of temperature"),
        (["-o", "temperature"], "is not KEY=VALUE"),
        (["-o", "judge.temperature=1"], "is not KEY=VALUE"),
        (["-o", "temperature=hot"], "executor.temperature"),
        (["--seed", "lucky"], "is not a whole number or 'random'"),
        (["--temperature", "9"], "not in the range"),
    ],
)
def test_bad_sampling_options_are_usage_errors(argv: list[str], message: str) -> None:
    code, _, err = invoke("--direct", *argv, "hi")
    assert_clean_error(code, err, message)
    assert code == 2


def test_retry_samples_afresh(on_double: OllamaDouble) -> None:
    """/retry runs the turn again with a fresh seed: another sample, not the same answer."""
    code, out, err = invoke("--direct", *QWEN, "-i", "--json", input="Name a colour\n/retry\n")
    assert code == 0, err
    first, again = (json.loads(line) for line in out.splitlines())
    assert first["seed"] == 42 and again["seed"] != 42
    assert seeds(on_double) == [42, again["seed"]]


@pytest.mark.parametrize(
    ("argv", "near"),
    [(["model", "list"], "models"), (["histroy"], "history"), (["mpc"], "mcp")],
)
def test_a_mistyped_command_is_refused_before_anything_loads(
    argv: list[str], near: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_STACK_BACKEND", "ollama")  # as a task it would fail on no server
    code, _, err = invoke(*argv)
    assert_clean_error(code, err, f"No such command {argv[0]!r}. Did you mean {near!r}?")
    assert code == 2 and f"To run it as a task: ai-stack -- {' '.join(argv)}" in err


def test_a_near_miss_still_runs_as_a_task_when_said_so(on_double: OllamaDouble) -> None:
    for argv, task in [
        (["--", "model", "list"], "model list"),
        (["model list"], "model list"),  # one quoted argument
        (["run", "model"], "model"),
        (["fun", "fact"], "fun fact"),  # one letter from `run`: mostly another word
        (["--direct", "model", "list"], "model list"),  # options first: the default command
    ]:
        code, _, err = invoke(*argv)
        assert code == 0, (argv, err)
        assert f"Task: {task}\n" in err


def complete(line: str) -> list[str]:
    """What bash completion offers for the last word of ``line`` (click's bash protocol)."""
    words = line.split(" ")
    env = {
        **os.environ,
        "_AI_STACK_COMPLETE": "bash_complete",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_shell_completion_as_documented() -> None:
    env = {**os.environ, "_AI_STACK_COMPLETE": "bash_source"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "_ai_stack_completion" in done.stdout
    assert complete("ai-stack mo") == ["plain,models", "plain,monitor"]
    assert complete("ai-stack model") == ["plain,models"]  # a partial name is no mistake
    assert complete("ai-stack model --j") == ["plain,--json"]  # nor a partial line
    assert "plain,list" in complete("ai-stack models l")
    assert "plain,--interactive" in complete("ai-stack run --inter")
