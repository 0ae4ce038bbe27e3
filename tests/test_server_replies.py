"""What a server sends back, from both kinds of server (Ollama, OpenAI-compatible): a reply
that never ends or drips a byte at a time ends within its bounds, and one that is not the
server's API (an HTML page, invalid JSON, the wrong shape, garbage in a stream) is one clear
error from every command, never a crash. The doubles misbehave on purpose
(tests/ollama_double.py, tests/openai_doubles.py); every test here has a hang guard."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai_stack.backends import ChatOptions, LoadOptions
from ai_stack.backends.ollama import OllamaBackend
from ai_stack.backends.openai_server import OpenAIBackend
from ai_stack.errors import BadReplyError, ReplyLimitError
from tests.conftest import invoke
from tests.ollama_double import OllamaDouble
from tests.openai_doubles import ServerDouble
from tests.test_cli import assert_clean_error

pytestmark = pytest.mark.timeout(120)  # the hang guard: a bound that fails hangs, not passes

STALL_S = 0.5
MESSAGES = [{"role": "user", "content": "x"}]
OLLAMA_CHAT, OPENAI_CHAT = "/api/chat", "/v1/chat/completions"


@pytest.fixture
def ollama() -> Iterator[OllamaDouble]:
    with OllamaDouble().start() as running:
        yield running


@pytest.fixture
def server() -> Iterator[ServerDouble]:
    with ServerDouble("llama-server").start() as running:
        yield running


def ollama_backend(double: OllamaDouble, **bounds: float) -> OllamaBackend:
    return OllamaBackend(double.host, stall_timeout_s=STALL_S, attempts=1, **bounds)  # type: ignore[arg-type]


def openai_backend(double: ServerDouble, **bounds: float) -> OpenAIBackend:
    return OpenAIBackend("box", double.url, stall_timeout_s=STALL_S, attempts=1, **bounds)  # type: ignore[arg-type]


# -- replies without end ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "options", "bounds", "said"),
    [
        ("drip", ChatOptions(), {}, f"sent no more of the answer for {STALL_S:g} s"),
        ("endless", ChatOptions(max_tokens=40), {}, "went on past max_tokens (40)"),
        (
            "endless",
            ChatOptions(max_tokens=32768),
            {"reply_max_bytes": 64 * 1024},
            "sent more than 0.0625 MiB in one reply",
        ),
    ],
)
def test_a_reply_without_end_is_cut_at_its_bound(
    ollama: OllamaDouble,
    server: ServerDouble,
    behaviour: str,
    options: ChatOptions,
    bounds: dict[str, float],
    said: str,
) -> None:
    """A drip never trips a read timeout and an endless stream never stops on its own: the
    stall timeout, max_tokens (counted here too) and the byte cap end them."""
    ollama.misbehave[OLLAMA_CHAT] = behaviour
    server.misbehave[OPENAI_CHAT] = behaviour
    for stream in (
        ollama_backend(ollama, **bounds).chat("qwen2.5:7b", MESSAGES, options=options),
        openai_backend(server, **bounds).chat("small-a", MESSAGES, options=options),
    ):
        with pytest.raises(ReplyLimitError, match=re.escape(said)) as caught:
            stream.collect()
        assert caught.value.hint  # what to change, or what is wrong with the server


def test_a_silent_server_stalls_too(ollama: OllamaDouble) -> None:
    """No bytes at all: the read timeout of a reply is its stall timeout, not the request's."""
    ollama.gate = threading.Event()  # the first piece comes, then nothing until the gate opens
    try:
        stream = ollama_backend(ollama).chat("qwen2.5:7b", MESSAGES, options=ChatOptions())
        with pytest.raises(ReplyLimitError, match="sent no more of the answer"):
            stream.collect()
    finally:
        ollama.gate.set()


def test_a_warm_up_that_never_ends_times_out(ollama: OllamaDouble) -> None:
    """A load is one request (Ollama's empty generate; a one-token warm-up on a server without
    a lifecycle): the request timeout bounds it whole, drip or no drip."""
    ollama.misbehave["/api/generate"] = "drip"
    with pytest.raises(ReplyLimitError, match="did not finish its reply in 1 s"):
        ollama_backend(ollama, request_timeout_s=1).load("qwen2.5:7b", LoadOptions())
    with ServerDouble("mlx-lm").start() as mlx:
        mlx.misbehave[OPENAI_CHAT] = "drip"
        with pytest.raises(ReplyLimitError, match="did not finish its reply in 1 s"):
            openai_backend(mlx, request_timeout_s=1).load("small-a", LoadOptions())


def test_a_stall_timeout_in_the_settings_bounds_a_run(
    ollama: OllamaDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(On a router: its load is a call of its own, so the drip is the reply's.)"""
    monkeypatch.setenv("OLLAMA_HOST", ollama.host)
    with ServerDouble("llama-server-router").start() as router:
        config = tmp_path / "c.toml"
        config.write_text(
            f"[ollama]\nstall_timeout_s = {STALL_S}\n"
            f'[endpoints.box]\nbase_url = "{router.url}"\nstall_timeout_s = {STALL_S}\n'
        )
        ollama.misbehave[OLLAMA_CHAT] = router.misbehave[OPENAI_CHAT] = "drip"
        for model in ("ollama:qwen2.5:7b", "box:small-a"):
            code, _, err = invoke("--config", str(config), "--direct", "--executor", model, "x")
            assert_clean_error(code, err, f"sent no more of the answer for {STALL_S:g} s")
            assert "stall_timeout_s" in err


# -- replies that are not the server's API ------------------------------------------------------

NOT_JSON = ("html", "invalid-json", "wrong-shape")
OLLAMA_COMMANDS = {
    "/api/tags": [["models", "list"], ["doctor"]],
    "/api/ps": [["models", "ps"], ["monitor", "--once"], ["models", "stop", "qwen2.5:7b"]],
    "/api/show": [["models", "show", "ollama:qwen2.5:7b"]],
}


@pytest.mark.parametrize("behaviour", [*NOT_JSON, "garbage"])
def test_a_chat_reply_that_is_not_the_api_is_one_clear_error(
    on_double: OllamaDouble, server: ServerDouble, tmp_path: Path, behaviour: str
) -> None:
    on_double.misbehave[OLLAMA_CHAT] = behaviour
    server.misbehave[OPENAI_CHAT] = behaviour
    config = tmp_path / "c.toml"
    config.write_text(f'[endpoints.box]\nbase_url = "{server.url}"\n')
    for model in ("ollama:qwen2.5:7b", "box:small-a"):
        code, _, err = invoke("--config", str(config), "--direct", "--executor", model, "x")
        assert_clean_error(code, err, "answered something that is not")


@pytest.mark.parametrize("behaviour", NOT_JSON)
@pytest.mark.parametrize("path", OLLAMA_COMMANDS)
def test_ollama_answering_what_is_not_its_api_never_crashes_a_command(
    on_double: OllamaDouble, path: str, behaviour: str
) -> None:
    on_double.misbehave[path] = behaviour
    if path == "/api/ps":  # `models stop` unloads a resident model, then asks what is left
        OllamaBackend(on_double.host).load("qwen2.5:7b", LoadOptions())
    for command in OLLAMA_COMMANDS[path]:
        code, _, err = invoke(*command)
        if command == ["doctor"]:  # may report the problem; never crashes
            assert code != 70 and "Traceback" not in err and "Internal error" not in err
        else:
            assert_clean_error(code, err, "answered something that is not Ollama's API")


@pytest.mark.parametrize("behaviour", NOT_JSON)
def test_a_server_answering_what_is_not_its_api_never_crashes_a_command(
    tmp_path: Path, behaviour: str
) -> None:
    with ServerDouble("lmstudio").start() as studio:
        studio.misbehave["/v1/models"] = behaviour
        config = tmp_path / "c.toml"
        config.write_text(f'[endpoints.box]\nbase_url = "{studio.url}"\n')
        for command in (["models", "list", "--backend", "box"], ["models", "show", "box:small-a"]):
            code, _, err = invoke("--config", str(config), *command)
            assert_clean_error(code, err, "answered something that is not the OpenAI API")
        for command in (["models", "ps"], ["models", "stop", "box:small-a"], ["doctor"]):
            code, _, err = invoke("--config", str(config), *command)
            assert code != 70 and "Traceback" not in err and "Internal error" not in err


def test_a_reply_of_the_wrong_shape_is_a_bad_reply(ollama: OllamaDouble) -> None:
    ollama.misbehave["/api/ps"] = "wrong-shape"
    with pytest.raises(BadReplyError, match="unexpected shape"):
        ollama_backend(ollama).resident()


def test_model_facts_of_the_wrong_type_are_left_unknown(on_double: OllamaDouble) -> None:
    """/api/show's model_info is free-form: a fact that is not a count is not used as one."""
    model = on_double.models["qwen2.5:7b"]
    model.block_count, model.head_count_kv = "many", [None, "x"]  # type: ignore[assignment]
    code, _, err = invoke("models", "show", "ollama:qwen2.5:7b")
    assert code == 0, err


def test_a_health_check_never_raises_on_a_server_that_drips(server: ServerDouble) -> None:
    """Telling the kind of server probes endpoints only some servers have: one that drips is
    no answer (its probe has 5 s in all), and the check still says what the server is."""
    server.misbehave["/props"] = "drip"
    health = openai_backend(server).health()
    assert health.available and "OpenAI-compatible" in health.detail


@pytest.mark.parametrize("behaviour", NOT_JSON)
def test_a_server_on_ollamas_port_that_is_not_ollama_is_said_so(
    on_double: OllamaDouble, behaviour: str
) -> None:
    on_double.misbehave["/api/version"] = behaviour
    code, _, err = invoke("--backend", "ollama", "--direct", "x")
    assert_clean_error(code, err, "answers, but not as Ollama does")
    assert "OLLAMA_HOST" in err
    code, out, err = invoke("monitor", "--once", "--json")
    assert code == 0 and "not as Ollama does" in out, err
