"""The ``openai`` backend: OpenAI-compatible servers, against test doubles of the five that
cannot run here (tests/openai_doubles.py) and llama-cpp-python's real server.

The memory manager stays in charge where a server has a lifecycle API: one model at a time
holds on a llama-server router and LM Studio, which would both keep several; where a server has
none, ai-stack says so once and claims no unload it did not make."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ai_stack.backends import ChatOptions, LoadOptions
from ai_stack.backends.embedded import packaged_model_path
from ai_stack.backends.openai_server import OpenAIBackend
from ai_stack.config import Settings, load_settings
from ai_stack.errors import ModelNotFoundError, TransientBackendError
from ai_stack.session import Session, build_manager
from tests.conftest import REQUIRE_MODEL, ROOT, invoke, plan, verdict
from tests.openai_doubles import KINDS, ServerDouble
from tests.test_cli import assert_clean_error

DETECTED = {
    "llama-server-router": "llama-server-router",
    "llama-server": "llama-server",
    "llama-swap": "llama-swap",
    "lmstudio": "lmstudio",
    "vllm-sleep": "vllm-sleep",
    "mlx-lm": "generic",
}
WITH_LIFECYCLE = ("llama-server-router", "llama-swap", "lmstudio")
# Planner and Critic on one model, the Executor on another: a swap in every run
ROLES = {"--planner": "box:small-a", "--critic": "box:small-a", "--executor": "box:small-b"}
TWO_MODELS = ("--review", "plan", *(part for pair in ROLES.items() for part in pair))


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerDouble]:
    with ServerDouble(request.param).start() as running:
        yield running


def backend(double: ServerDouble) -> OpenAIBackend:
    return OpenAIBackend("box", double.url, poll_s=0.01)


def config(tmp_path: Path, double: ServerDouble, **endpoint: str) -> Path:
    path = tmp_path / "box.toml"
    lines = ["max_rounds = 1", "[endpoints.box]", f'base_url = "{double.url}"']
    lines += [f'{key} = "{value}"' for key, value in endpoint.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_kind_of_server_is_told_from_what_it_answers(server: ServerDouble) -> None:
    found = backend(server)
    assert found.kind == DETECTED[server.kind]
    assert found.controls_residency == (server.kind in (*WITH_LIFECYCLE, "vllm-sleep"))
    assert found.health().available


@pytest.mark.parametrize("kind", WITH_LIFECYCLE)
def test_one_model_at_a_time_on_a_server_that_can_unload(
    kind: str, tmp_path: Path, isolated_home: Path
) -> None:
    """Planner and Critic on one model, Executor on another: the first is unloaded, verified,
    before the second loads — on servers that would otherwise keep both."""
    with ServerDouble(kind).start() as double:
        path = config(tmp_path, double)
        code, out, err = invoke("--config", str(path), "--json", *TWO_MODELS, "Name a colour.")
        assert code == 0, err
        result = json.loads(out)
        assert result["output"]
        assert double.peak() <= 1, double.log
        loaded = [e["model"] for e in double.events("load")]
        assert loaded[:2] == ["small-a", "small-b"]
        assert result["metrics"]["loads"] == 2 and result["metrics"]["unloads"] == 1
        assert double.resident() == set()  # unloaded at the end, as on Ollama


def test_vllm_sleeps_when_its_model_is_not_needed(tmp_path: Path, isolated_home: Path) -> None:
    with ServerDouble("vllm-sleep").start() as double:
        path = config(tmp_path, double)
        code, _, err = invoke("--config", str(path), "--direct", "--executor", "box:small-a", "x")
        assert code == 0, err
        assert double.sleeping, "unloading the model put the engine to sleep"
        assert [e["event"] for e in double.log if e["event"] in ("load", "unload")] == [
            "load",
            "unload",
        ]
        sent = double.events("generate")[0]["body"]
        assert "repetition_penalty" in sent and "repeat_penalty" not in sent  # vLLM's name


def test_a_server_without_a_lifecycle_is_said_so_and_no_unload_is_claimed(
    tmp_path: Path, isolated_home: Path
) -> None:
    with ServerDouble("mlx-lm").start() as double:
        double.enqueue(plan("pick"), verdict("approve", 9), model="small-a")  # no schema there
        path = config(tmp_path, double)
        code, out, err = invoke("--config", str(path), "--json", *TWO_MODELS, "Name a colour.")
        assert code == 0, err
        assert " ".join(err.split()).count("has no API to unload a model") == 1  # wrapped
        metrics = json.loads(out)["metrics"]
        assert metrics["unloads"] == 0
        # the "load" is a one-token request, so mlx-lm swaps the model in then
        assert [e["model"] for e in double.events("load")] == ["small-b"]  # small-a at start


def test_structured_replies_use_the_form_the_server_takes(isolated_home: Path) -> None:
    """LM Studio refuses ``json_object``; the OpenAI ``json_schema`` form is what it takes."""
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    with ServerDouble("lmstudio").start() as double:
        client = backend(double)
        reply = client.chat(
            "small-a", [{"role": "user", "content": "x"}], options=ChatOptions(), schema=schema
        )
        assert json.loads(reply.collect().text) == {"colour": "a concrete step"}
        form = double.events("generate")[0]["body"]["response_format"]
        assert form["type"] == "json_schema" and form["json_schema"]["name"]


def test_usage_and_timings_are_taken_from_the_stream(server: ServerDouble) -> None:
    client = backend(server)
    name = next(iter(server.models))
    result = client.chat(name, [{"role": "user", "content": "x"}], options=ChatOptions()).collect()
    assert result.text == "The answer." and result.finish_reason == "stop"
    assert (result.prompt_tokens, result.output_tokens) == (12, 3)


def test_a_stream_cut_short_is_an_error_to_retry(isolated_home: Path) -> None:
    """llama-cpp-python ends a stream that a newer request interrupts with [DONE] and no
    finish: that is not a whole answer."""
    with ServerDouble("llama-server").start() as double:
        double.cut_next_stream = True
        stream = backend(double).chat(
            "small-a", [{"role": "user", "content": "x"}], options=ChatOptions()
        )
        with pytest.raises(TransientBackendError, match="ended before it was complete"):
            stream.collect()


def test_a_model_the_server_does_not_have_is_refused_with_those_it_has(
    tmp_path: Path, isolated_home: Path
) -> None:
    with ServerDouble("lmstudio").start() as double:
        with pytest.raises(ModelNotFoundError, match="has no model 'nope'") as info:
            backend(double).describe("nope")
        assert "small-a" in (info.value.hint or "")
        code, _, err = invoke(
            "--config", str(config(tmp_path, double)), "--executor", "box:nope", "--direct", "x"
        )
        assert code not in (0, 70) and "has no model 'nope'" in err and "Traceback" not in err


def test_the_key_comes_from_the_variable_the_endpoint_names(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ServerDouble("llama-server-router", api_key="s3cret").start() as double:
        path = config(tmp_path, double, api_key_env="BOX_KEY")
        code, _, err = invoke("--config", str(path), "--executor", "box:small-a", "--direct", "x")
        assert code not in (0, 70) and "refused the API key" in err
        monkeypatch.setenv("BOX_KEY", "s3cret")
        code, _, err = invoke("--config", str(path), "--executor", "box:small-a", "--direct", "x")
        assert code == 0, err


def test_openai_prefix_uses_the_environment_as_the_official_client_does(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = invoke("--executor", "openai:m", "--direct", "x")
    assert code not in (0, 70) and "OPENAI_BASE_URL" in err
    monkeypatch.setenv("OPENAI_BASE_URL", "file:///x")
    code, _, err = invoke("--executor", "openai:m", "--direct", "x")
    assert code == 2 and "is not an http:// or https:// URL" in err
    with ServerDouble("lmstudio").start() as double:
        monkeypatch.setenv("OPENAI_BASE_URL", double.url)
        monkeypatch.setenv("OPENAI_API_KEY", "anything")
        code, out, err = invoke("--executor", "openai:small-a", "--direct", "--json", "x")
        assert code == 0, err
        assert json.loads(out)["output"] == "The answer."


def test_a_password_in_openai_base_url_is_never_shown_nor_stored(isolated_home: Path) -> None:
    """The real CLI, as a user runs it with the password in the URL (issue 32): the answer
    comes back, and neither stderr (the "Backend:" line) nor ``history show --json`` (the
    configuration's backend) holds the password; the user part still says which account."""
    with ServerDouble("lmstudio").start() as double:
        port = double.url.split(":")[-1].split("/")[0]
        url = f"http://apiuser:S3cretPW99@127.0.0.1:{port}/v1"
        env = {**os.environ, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "anything"}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, str(ROOT / "main.py"), *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
                check=False,
            )

        run = cli("--executor", "openai:small-a", "--direct", "What is 2+2?")
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "The answer."
        assert "apiuser:[redacted]@127.0.0.1" in run.stderr
        listed = cli("history", "list", "--json")
        (stored,) = json.loads(listed.stdout)
        shown = cli("history", "show", "--json", stored["id"])
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert "apiuser:[redacted]@127.0.0.1" in record["config"]["backend"]
    for text in (run.stderr, listed.stdout, shown.stdout, shown.stderr):
        assert "S3cretPW99" not in text


def test_an_unreachable_server_is_one_clear_error(tmp_path: Path, isolated_home: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[endpoints.box]\nbase_url = "http://127.0.0.1:9/v1"\n')
    code, _, err = invoke("--config", str(path), "--executor", "box:m", "--direct", "x")
    assert code not in (0, 70) and "Traceback" not in err
    assert "127.0.0.1:9" in err and "Start the server" in err


def test_lifecycle_unloads_are_verified(isolated_home: Path) -> None:
    """The router's unload answers before the child has stopped: the backend returns only
    once the model has left ``/models``."""
    with ServerDouble("llama-server-router", load_delay_s=0.2).start() as double:
        client = backend(double)
        client.load("small-a", LoadOptions())
        assert double.resident() == {"small-a"}
        client.unload("small-a")
        assert double.resident() == set()
        assert client.resident() == []


def test_a_project_config_may_not_add_an_endpoint(tmp_path: Path, isolated_home: Path) -> None:
    """An endpoint is where prompts go: a cloned repository's ai-stack.toml cannot set one."""
    (Path.cwd() / "ai-stack.toml").write_text('[endpoints.box]\nbase_url = "http://evil:80/v1"\n')
    code, _, err = invoke("--executor", "box:m", "--direct", "x")
    assert code not in (0, 70) and "endpoints" in err


def test_models_list_ps_stop_system_and_doctor_cover_the_servers(
    tmp_path: Path, isolated_home: Path
) -> None:
    with (
        ServerDouble("lmstudio").start() as studio,
        ServerDouble("mlx-lm").start() as mlx,
    ):
        path = tmp_path / "two.toml"
        path.write_text(
            f'[endpoints.studio]\nbase_url = "{studio.url}"\n'
            f'[endpoints.mlx]\nbase_url = "{mlx.url}"\n'
        )
        code, out, err = invoke("models", "list", "--json", "--config", str(path))
        assert code == 0, err
        rows = {(row["backend"], row["name"]): row for row in json.loads(out)}
        assert {("studio", "small-a"), ("mlx", "small-b"), ("embedded", "smollm2")} <= set(rows)
        assert rows[("studio", "small-a")]["size_bytes"] == 300 * 1024**2  # LM Studio says

        code, out, err = invoke("models", "show", "studio:small-a", "--json", "--config", str(path))
        assert code == 0, err
        shown = json.loads(out)
        assert shown["model"] == "studio:small-a" and shown["footprint"]["weights_bytes"] > 0

        backend(studio).load("small-a", LoadOptions())
        code, out, err = invoke("models", "ps", "--json", "--config", str(path))
        assert code == 0, err
        assert [(r["backend"], r["name"]) for r in json.loads(out)] == [("studio", "small-a")]
        code, out, err = invoke("models", "ps", "--config", str(path))
        assert "has no API to unload a model" in " ".join(err.split())  # mlx-lm: unknown
        code, out, err = invoke("models", "stop", "studio:small-a", "--config", str(path))
        assert code == 0 and "Unloaded small-a" in out + err and studio.resident() == set()
        code, _, err = invoke("models", "stop", "mlx:small-a", "--config", str(path))
        assert code not in (0, 70) and "nothing to stop" in err

        code, out, err = invoke("system", "--json", "--config", str(path))
        assert code == 0, err
        backends = json.loads(out)["backends"]
        assert backends["studio"]["controls_residency"] is True
        assert backends["mlx"]["controls_residency"] is False
        code, out, err = invoke("doctor", "--json", "--config", str(path))
        checks = {c["check"]: c for c in json.loads(out)}
        assert checks["studio"]["status"] == "ok" and checks["mlx"]["status"] == "warn"


# -- llama-cpp-python's own server: a real one ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on SmolLM2, two aliases of it (so a swap is real)."""
    model = packaged_model_path("smollm2")
    if importlib.util.find_spec("llama_cpp.server") is None or model is None:
        message = "llama-cpp-python's server extra or the SmolLM2 model is not installed"
        if REQUIRE_MODEL:
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    entry = {"model": str(model), "n_ctx": 2048, "n_threads": 2, "verbose": False}
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "models": [{**entry, "model_alias": "smol"}, {**entry, "model_alias": "smol-b"}],
    }
    path = tmp_path_factory.mktemp("server") / "server.json"
    path.write_text(json.dumps(settings))
    log = (path.parent / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--config_file", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300  # it loads the first model before it listens
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"llama_cpp.server did not start: {(path.parent / 'server.log').read_text()}")
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.mark.model
def test_a_real_llama_cpp_python_server(
    real_server: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", real_server)
    client = OpenAIBackend("openai", real_server)
    assert client.kind == "llama-cpp-python" and not client.controls_residency
    assert {m.name for m in client.list_models()} == {"smol", "smol-b"}
    code, out, err = invoke("--executor", "openai:smol", "--direct", "--json", "Say hello.")
    assert code == 0, err
    result = json.loads(out)
    assert result["output"].strip()
    phase = result["metrics"]["phases"][-1]
    assert phase["output_tokens"] > 0  # counted from the chunks: its streams carry no usage
    assert "has no API to unload a model" in " ".join(err.split())  # notes wrap at 80


@pytest.mark.model
def test_structured_output_finds_the_form_a_real_server_takes(real_server: str) -> None:
    """Told nothing of the server, the client sends OpenAI's json_schema form first;
    llama-cpp-python refuses it (500), takes json_object with the schema, and that is kept."""
    client = OpenAIBackend("local", real_server, kind="generic")
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "green"]}},
        "required": ["colour"],
    }
    messages = [{"role": "user", "content": "Pick a colour. Answer in JSON."}]
    reply = client.chat("smol", messages, options=ChatOptions(max_tokens=30), schema=schema)
    assert json.loads(reply.collect().text)["colour"] in ("red", "green")
    assert client._formats["smol"] == "json_object"


# -- faults --------------------------------------------------------------------------------------


def test_a_server_that_goes_away_mid_answer_is_asked_again(
    tmp_path: Path, isolated_home: Path
) -> None:
    with ServerDouble("llama-server-router").start() as double:
        double.break_streams = 1
        path = config(tmp_path, double)
        code, out, err = invoke(
            "--config", str(path), "--direct", "--json", "--executor", "box:small-a", "x"
        )
        assert code == 0, err
        assert json.loads(out)["output"] == "The answer."
        assert len(double.events("generate")) == 2  # the broken answer was not used
        double.break_streams = 50
        code, _, err = invoke("--config", str(path), "--direct", "--executor", "box:small-a", "x")
        assert code not in (0, 70) and "Traceback" not in err
        assert "ended before it was complete" in err or "broke" in err


@pytest.mark.parametrize("kind", ["llama-server-router", "lmstudio"])
def test_a_model_that_fails_to_load_is_one_clear_error(
    kind: str, tmp_path: Path, isolated_home: Path
) -> None:
    with ServerDouble(kind, fail_loads={"small-b"}).start() as double:
        path = config(tmp_path, double)
        code, _, err = invoke("--config", str(path), "--direct", "--executor", "box:small-b", "x")
        assert code not in (0, 70) and "Traceback" not in err
        assert "small-b" in err and ("failed to load" in err or "could not load" in err)


def test_one_at_a_time_holds_for_a_batch(tmp_path: Path, isolated_home: Path) -> None:
    with ServerDouble("llama-server-router").start() as double:
        flow = tmp_path / "flow.yaml"
        flow.write_text(
            "name: two\ndefaults:\n  direct: true\ntasks:\n"
            "  - {id: a, task: first, executor: box:small-a}\n"
            "  - {id: b, task: second, executor: box:small-b}\n"
            "  - {id: c, task: third, executor: box:small-a}\n"
        )
        code, out, err = invoke(
            "batch", str(flow), "--json", "--config", str(config(tmp_path, double))
        )
        assert code == 0, err
        summary = json.loads(out)
        assert summary["status"] == "ok"
        assert double.peak() <= 1, double.log
        assert summary["loads"] == 2  # small-a's tasks together, then small-b's


def test_one_at_a_time_holds_for_two_processes_at_once(tmp_path: Path, isolated_home: Path) -> None:
    """Two ai-stack processes, each on its own model of one server: the lease makes one wait
    for the other, so the server never holds both, and neither unloads the other's model."""
    with ServerDouble("lmstudio").start() as double:
        path = config(tmp_path, double)

        def start(model: str) -> subprocess.Popen[str]:
            argv = [sys.executable, str(ROOT / "main.py"), "--config", str(path), "--direct"]
            argv += ["--json", "--executor", f"box:{model}", f"Say {model}."]
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        children = [start(model) for model in ("small-a", "small-b")]
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            assert json.loads(out)["output"] == "The answer."
        assert double.peak() <= 1, double.log
        generated = double.events("generate")
        assert len(generated) == 2
        for event in generated:  # each answered by a resident model: its own, alone
            assert event["resident"] == [event["model"]]


@pytest.mark.model
def test_the_repl_a_batch_and_eval_run_through_a_real_server(
    real_server: str, tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", real_server)
    main = [sys.executable, str(ROOT / "main.py")]
    repl = subprocess.run(
        [*main, "--interactive", "--json", "--direct", "--executor", "openai:smol"],
        input="Say hello.\nSay goodbye.\n",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert repl.returncode == 0, repl.stderr
    turns = [json.loads(line) for line in repl.stdout.splitlines()]
    assert [t["turn"] for t in turns] == [1, 2] and all(t["output"].strip() for t in turns)

    flow = tmp_path / "flow.yaml"  # two names of the server: it swaps between them
    flow.write_text(
        "name: two\ndefaults:\n  direct: true\n  executor: {max_tokens: 20}\ntasks:\n"
        "  - {id: a, task: Say yes., executor: openai:smol}\n"
        "  - {id: b, task: Say no., executor: openai:smol-b}\n"
    )
    code, out, err = invoke("batch", str(flow), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["status"] == "ok" and summary["loads"] == 2

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: tiny\ntasks:\n  - id: any\n    task: Say yes.\n"
        "    check: {text: 'assert answer.strip()'}\n"
    )
    code, out, err = invoke(
        "eval", str(suite), "--modes", "direct", "--json", "--executor", "openai:smol"
    )
    assert code == 0, err
    (summary,) = json.loads(out)["summaries"]
    assert summary["mode"] == "direct" and summary["passed"] == 1


def test_every_name_for_one_server_shares_its_lease(isolated_home: Path) -> None:
    """Two endpoints for one URL, or Ollama's OpenAI-compatible API beside its own, are one
    server's memory: one machine-wide lease, so neither loads beside the other."""
    url = "http://127.0.0.1:11434"
    settings = Settings.model_validate(
        {
            "ollama": {"host": url},
            "endpoints": {"a": {"base_url": f"{url}/v1"}, "b": {"base_url": f"{url}/v1/"}},
        }
    )
    manager, _ = build_manager(settings)
    leases = {name: manager.lease(name) for name in ("a", "b", "ollama")}
    assert len({lease.endpoint for lease in leases.values() if lease}) == 1
    assert manager.lease("embedded").endpoint == "embedded"  # type: ignore[union-attr]


# -- where prompts go --------------------------------------------------------------------------

OFF_THIS_MACHINE = "http://192.0.2.1:8080/v1"  # TEST-NET-1: reserved, never routed


@pytest.fixture
def no_traffic_off_this_machine(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Refuses (and records) every connection to a host that is not loopback, before any
    packet: a test that would reach the network fails here instead of sending traffic."""
    real = socket.create_connection
    attempts: list[object] = []

    def guarded(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        host = str(address[0])
        if not (host in ("localhost", "::1") or host.startswith("127.")):
            attempts.append(address)
            raise ConnectionRefusedError(f"test: no traffic to {host}")
        return real(address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", guarded)
    return attempts


def test_auto_never_sends_roles_to_an_openai_base_url_off_this_machine(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, no_traffic_off_this_machine: list[object]
) -> None:
    """Users of other tools export OPENAI_BASE_URL, often at a hosted API: `auto` neither
    chooses it nor asks it anything; naming it (--backend openai, openai:MODEL) still works."""
    monkeypatch.setenv("OPENAI_BASE_URL", OFF_THIS_MACHINE)
    settings = load_settings(None, {})
    with Session.open(settings) as session:
        session.model_rows("auto")
        assert session.backend == "embedded" and no_traffic_off_this_machine == []
    for command in (["doctor", "--json"], ["models", "list", "--json"]):
        invoke(*command)
        assert no_traffic_off_this_machine == [], command
    with ServerDouble("lmstudio").start() as double:  # on this machine, auto finds it
        monkeypatch.setenv("OPENAI_BASE_URL", double.url)
        with Session.open(load_settings(None, {})) as session:
            assert session.backend == "openai" and session.remote_note() is None


def test_a_run_says_when_its_prompts_go_off_this_machine(
    tmp_path: Path, isolated_home: Path, no_traffic_off_this_machine: list[object]
) -> None:
    path = tmp_path / "far.toml"
    path.write_text(f'[endpoints.far]\nbase_url = "{OFF_THIS_MACHINE}"\n')
    code, _, err = invoke(
        "--config", str(path), "--backend", "embedded", "--direct", "--executor", "far:m", "x"
    )
    assert_clean_error(code, err, "Prompts go off this machine: executor to http://192.0.2.1")
    assert err.count("192.0.2.1") >= 1 and code not in (0, 70)
    suite = tmp_path / "suite.yaml"  # an eval says so too
    suite.write_text("name: s\ntasks:\n  - {id: a, task: hi, check: {regex: hi}}\n")
    code, _, err = invoke(
        "eval", str(suite), "--config", str(path), "--backend", "embedded", "--executor", "far:m",
        "--modes", "direct", "--exec", "-q",
    )
    assert "Prompts go off this machine: executor to http://192.0.2.1" in err, err
