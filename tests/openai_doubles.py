"""Test doubles of the OpenAI-compatible servers that cannot run here — llama-server (router
and one model), llama-swap, LM Studio, vLLM (sleep mode) and mlx-lm — written from
../shared/reference/openai-backends.md, each faithful where the client depends on it:

- the common chat API: SSE streams (``data: {...}``, comment lines, ``[DONE]``), the usage chunk
  where the server sends one (llama.cpp, vLLM, mlx-lm — with ``object: chat.completion`` — and
  LM Studio), llama.cpp's ``timings``, mlx-lm's ``role`` in every delta;
- ``response_format``: the ``json_schema`` form where the server takes it, LM Studio's 400 for
  ``json_object``, mlx-lm ignoring it; each server's error body;
- each lifecycle: llama-server's router (``/models``, asynchronous ``/models/load`` and
  ``/models/unload``, LRU eviction at ``models_max``, autoload on request), llama-swap
  (``/running`` states, a request swaps models, ``/api/models/unload/{m}``, ``/upstream``),
  LM Studio (``/api/v1/models`` with ``loaded_instances``, a second load makes ``key:2``, an
  unknown path answers 200 with an ``error``), vLLM (``/sleep``, ``/wake_up``,
  ``/is_sleeping``), mlx-lm (no lifecycle: naming another model replaces the resident one);
- misbehaviours of what is not such a server, or not well (``misbehave``, by path): an HTML
  page, invalid JSON, JSON of the wrong shape, garbage in a stream, a stream without end, and
  one that drips a byte at a time and never completes an event.

Every change of what is resident is logged with the resident set, so tests assert the peak.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from itertools import chain, repeat
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.ollama_double import HTML_PAGE, _instance, _QuietServer

KINDS = ("llama-server-router", "llama-server", "llama-swap", "lmstudio", "vllm-sleep", "mlx-lm")
MIB = 1024**2


@dataclass
class Model:
    name: str
    size: int = 300 * MIB
    context: int = 8192


@dataclass
class ServerDouble:
    """One server of ``kind`` holding ``models``; start it with :meth:`start`."""

    kind: str
    models: dict[str, Model] = field(
        default_factory=lambda: {n: Model(n) for n in ("small-a", "small-b")}
    )
    load_delay_s: float = 0.05  # an asynchronous load or unload takes this long to finish
    models_max: int = 4  # llama-server's router
    api_key: str | None = None
    url: str = ""  # its base URL (…/v1), once started
    log: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, deque[str]] = field(default_factory=dict)
    cut_next_stream: bool = False  # end the next stream with [DONE] and no finish chunk
    break_streams: int = 0  # drop the connection mid-answer in this many next streams
    fail_loads: set[str] = field(default_factory=set)  # models whose load fails
    # path -> one of tests.ollama_double.MISBEHAVIOURS: how every request to it is answered
    misbehave: dict[str, str] = field(default_factory=dict)
    drip_s: float = 0.05  # the pause between two bytes of a drip
    # state
    running: dict[str, str] = field(default_factory=dict)  # model -> loading/loaded/stopping
    instances: dict[str, list[str]] = field(default_factory=dict)  # LM Studio
    sleeping: bool = False
    failed: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)
    last_used: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind in ("llama-server", "vllm-sleep", "mlx-lm"):
            first = next(iter(self.models))
            if self.kind != "mlx-lm":
                self.models = {first: self.models[first]}  # one model per server
            self.running[first] = "loaded"

    # -- what tests read ----------------------------------------------------------------------

    def enqueue(self, *texts: str, model: str = "*") -> None:
        self.replies.setdefault(model, deque()).extend(texts)

    def resident(self) -> set[str]:
        with self.lock:
            if self.kind == "lmstudio":
                return {m for m, ids in self.instances.items() if ids}
            if self.kind == "vllm-sleep" and self.sleeping:
                return set()
            return set(self.running)

    def peak(self) -> int:
        """The most models resident at once."""
        return max((len(e["resident"]) for e in self.log), default=0)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log if e["event"] == name]

    def _record(self, event: str, **details: Any) -> None:
        self.log.append({"event": event, "resident": sorted(self.resident()), **details})

    # -- residency ----------------------------------------------------------------------------

    def _later(self, seconds: float, action: Any) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()

    def _start(self, name: str, *, wait: bool) -> None:
        """Make ``name`` resident as this kind of server does (evicting what it evicts)."""
        with self.lock:
            if self.kind in ("llama-swap", "mlx-lm"):  # one model at a time
                for other in [m for m in self.running if m != name]:
                    del self.running[other]
                    self._record("unload", model=other)
            if self.kind == "llama-server-router":
                live = [m for m in self.running if m != name]
                if name not in self.running and len(live) >= self.models_max:
                    victim = min(live, key=lambda m: self.last_used.get(m, 0))
                    del self.running[victim]
                    self._record("unload", model=victim)
            if self.running.get(name) == "loaded":
                return
            self.running[name] = "loading"
            self._record("load", model=name)

        def done() -> None:
            with self.lock:
                if self.running.get(name) != "loading":
                    return
                if name in self.fail_loads:  # the child exited: unloaded, failed
                    del self.running[name]
                    self.failed.add(name)
                    self._record("load failed", model=name)
                    return
                self.running[name] = "loaded"
                self._record("loaded", model=name)

        if wait:
            time.sleep(self.load_delay_s)
            done()
        else:
            self._later(self.load_delay_s, done)

    def _stop(self, name: str) -> None:
        """Asynchronous, as both servers are: the router's model stays ``loaded`` until its
        child exits; llama-swap shows ``stopping``."""
        if self.kind == "llama-swap":
            with self.lock:
                self.running[name] = "stopping"

        def gone() -> None:
            with self.lock:
                self.running.pop(name, None)
                self._record("unload", model=name)

        self._later(self.load_delay_s, gone)

    def _serve(self, name: str) -> None:
        """A chat request names ``name``: the server makes it resident, or refuses."""
        with self.lock:
            self.last_used[name] = time.monotonic()
            if self.kind == "lmstudio":
                if not self.instances.get(name):  # JIT load
                    self.instances[name] = [name]
                    self._record("load", model=name)
                return
            if self.kind == "vllm-sleep":
                return
            if self.kind == "llama-server":
                return
        if self.running.get(name) != "loaded":
            self._start(name, wait=True)

    def _reply(self, model: str, schema: Any) -> str:
        if schema is not None:
            return json.dumps(_instance(schema))
        for key in (model, "*"):
            queue = self.replies.get(key)
            if queue:
                return queue.popleft()
        return "The answer."

    # -- the server ---------------------------------------------------------------------------

    def start(self) -> _Running:
        server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        return _Running(self, server)


class _Running:
    def __init__(self, double: ServerDouble, server: _QuietServer) -> None:
        self.double, self.server = double, server
        double.url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    def __enter__(self) -> ServerDouble:
        return self.double

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Refused(Exception):
    def __init__(self, status: int, body: Any, content_type: str = "application/json") -> None:
        self.status, self.body, self.content_type = status, body, content_type


def _error(double: ServerDouble, status: int, message: str) -> _Refused:
    """The error body of ``double``'s kind (reference §1.5)."""
    kind = double.kind
    if kind.startswith("llama-server"):
        types = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
        error = {"code": status, "message": message, "type": types.get(status, "server_error")}
        return _Refused(status, {"error": error})
    if kind == "llama-swap":
        codes = {400: "bad_request", 404: "not_found", 500: "internal_error"}
        error = {"message": message, "type": "invalid_request_error", "param": None}
        return _Refused(status, {"src": "llama-swap", "error": {**error, "code": codes[status]}})
    if kind == "vllm-sleep":
        error = {"message": message, "type": "BadRequestError", "param": None, "code": status}
        return _Refused(status, {"error": error})
    return _Refused(status, {"error": message})  # LM Studio, mlx-lm


def _chunk(double: ServerDouble, model: str, delta: dict[str, Any], finish: Any) -> dict[str, Any]:
    if double.kind == "mlx-lm":
        delta = {"role": "assistant", **delta}  # mlx-lm: the role in every delta
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def _completion(double: ServerDouble, body: dict[str, Any]) -> Iterator[dict[str, Any]] | dict:
    model = body.get("model")
    if double.kind == "mlx-lm" and model in (None, "default_model"):
        model = next(iter(double.models))
    if not isinstance(model, str) or model not in double.models:
        status = 404 if double.kind in ("llama-swap", "mlx-lm") else 400
        raise _error(double, status, f"model '{model}' not found")
    schema = None
    response_format = body.get("response_format") or {}
    form = response_format.get("type")
    if double.kind == "lmstudio" and form == "json_object":
        raise _error(double, 400, "'response_format.type' must be 'json_schema' or 'text'")
    named = "name" in (response_format.get("json_schema") or {})
    if double.kind == "vllm-sleep" and form == "json_schema" and not named:
        raise _error(double, 400, "json_schema.name: Field required")
    if form == "json_schema" and double.kind != "mlx-lm":
        schema = response_format["json_schema"]["schema"]
    elif form == "json_object" and double.kind.startswith("llama-server"):
        schema = response_format.get("schema")
    if double.kind == "vllm-sleep" and double.sleeping:
        raise _error(double, 400, "the engine is sleeping")
    double._serve(model)
    text = "Hi" if body.get("max_tokens") == 1 else double._reply(model, schema)  # one token
    double._record("generate", model=model, body=body)
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    timings = {"prompt_n": 12, "cache_n": 0, "predicted_n": 3, "predicted_ms": 30.0}
    llama = double.kind.startswith("llama-server") or double.kind == "llama-swap"
    if not body.get("stream"):
        reply: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        if llama:
            reply["timings"] = timings
        return reply

    def chunks() -> Iterator[dict[str, Any]]:
        yield _chunk(double, model, {"role": "assistant"}, None)
        words = text.split(" ")
        for n, word in enumerate(words):
            yield _chunk(
                double, model, {"content": word + (" " if n < len(words) - 1 else "")}, None
            )
            if double.cut_next_stream and n == 0:
                double.cut_next_stream = False
                return
        last = _chunk(double, model, {}, "stop")
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if llama and not wants_usage:
            last["timings"] = timings
        yield last
        if wants_usage:
            extra = {"object": "chat.completion"} if double.kind == "mlx-lm" else {}
            usage_chunk = {**_chunk(double, model, {}, None), "choices": [], "usage": usage}
            if llama:
                usage_chunk["timings"] = timings
            yield {**usage_chunk, **extra}

    return chunks()


def _routes(double: ServerDouble, method: str, path: str, query: dict[str, list[str]], body: Any):
    kind = double.kind
    listed = [
        {"id": m.name, "object": "model", "created": 1, "owned_by": "me"}
        for m in double.models.values()
    ]
    if (method, path) == ("GET", "/v1/models"):
        if kind == "llama-server-router" or kind == "llama-swap":
            for entry in listed:
                state = double.running.get(entry["id"])
                if kind == "llama-swap":
                    entry.update(
                        owned_by="llama-swap", status={"value": "loaded" if state else "unloaded"}
                    )
                else:
                    entry.update(owned_by="llamacpp", status={"value": state or "unloaded"})
        elif kind == "lmstudio":
            listed = [
                {"id": e["id"], "object": "model", "owned_by": "organization_owner"} for e in listed
            ]
        elif kind == "vllm-sleep":
            listed = [{**e, "owned_by": "vllm", "max_model_len": 8192} for e in listed]
        elif kind == "llama-server":
            listed = [
                {**e, "owned_by": "llamacpp", "meta": {"size": 300 * MIB, "n_ctx_train": 8192}}
                for e in listed
            ]
        else:  # mlx-lm
            listed = [{"id": e["id"], "object": "model", "created": 1} for e in listed]
        return {"object": "list", "data": listed}
    if (method, path) == ("POST", "/v1/chat/completions"):
        return _completion(double, body)
    if kind.startswith("llama-server") and (method, path) == ("GET", "/props"):
        if kind == "llama-server-router" and "model" not in query:
            return {"role": "router", "max_instances": double.models_max, "models_autoload": True}
        return {
            "default_generation_settings": {"n_ctx": 8192},
            "total_slots": 1,
            "is_sleeping": False,
        }
    if kind == "llama-server-router":
        if (method, path) == ("GET", "/models"):
            return {
                "object": "list",
                "data": [
                    {
                        "id": m.name,
                        "object": "model",
                        "owned_by": "llamacpp",
                        "status": {
                            "value": double.running.get(m.name, "unloaded"),
                            "args": ["llama-server", "-c", "4096"],
                            **({"failed": True, "exit_code": 1} if m.name in double.failed else {}),
                        },
                        "meta": {"size": m.size, "n_ctx_train": m.context},
                    }
                    for m in double.models.values()
                ],
            }
        if (method, path) == ("POST", "/models/load"):
            name = body.get("model")
            if name not in double.models:
                raise _error(double, 404, "model is not found")
            if name in double.running:
                raise _error(double, 400, "model is already running")
            double._start(name, wait=False)
            return {"success": True}
        if (method, path) == ("POST", "/models/unload"):
            name = body.get("model")
            if name not in double.models:
                raise _error(double, 400, "model is not found")
            if name not in double.running:
                raise _error(double, 400, "model is not running")
            double._stop(name)
            return {"success": True}
    if kind == "llama-swap":
        if (method, path) == ("GET", "/running"):
            states = {"loading": "starting", "loaded": "ready", "stopping": "stopping"}
            return {
                "running": [
                    {
                        "model": m,
                        "state": states[s],
                        "cmd": "llama-server",
                        "proxy": "http://127.0.0.1:5800",
                        "ttl": 0,
                    }
                    for m, s in sorted(double.running.items())
                ]
            }
        if method == "POST" and path.startswith("/api/models/unload/"):
            name = unquote(path.rsplit("/", 1)[1])
            if name not in double.models:
                raise _error(double, 404, "model not found")
            if name in double.running:
                double._stop(name)
            return _Refused(200, "OK", "text/plain")
        if method == "GET" and path.startswith("/upstream/"):
            name = unquote(path.split("/")[2])
            if name not in double.models:
                raise _error(double, 404, "no router for requested model")
            double._start(name, wait=True)
            return {"status": "ok"}
    if kind == "lmstudio":
        if (method, path) == ("GET", "/api/v1/models"):
            return {
                "models": [
                    {
                        "type": "llm",
                        "key": m.name,
                        "size_bytes": m.size,
                        "max_context_length": m.context,
                        "format": "gguf",
                        "loaded_instances": [
                            {"id": i, "config": {"context_length": 4096}}
                            for i in double.instances.get(m.name, [])
                        ],
                    }
                    for m in double.models.values()
                ]
            }
        if (method, path) == ("POST", "/api/v1/models/load"):
            name = body.get("model")
            if name not in double.models:
                raise _error(double, 404, f"model {name} not found")
            if name in double.fail_loads:
                raise _error(double, 500, "Failed to load model: not enough memory")
            with double.lock:
                ids = double.instances.setdefault(name, [])
                instance = name if not ids else f"{name}:{len(ids) + 1}"
                ids.append(instance)
                double._record("load", model=name)
            return {
                "type": "llm",
                "instance_id": instance,
                "load_time_seconds": 0.05,
                "status": "loaded",
            }
        if (method, path) == ("POST", "/api/v1/models/unload"):
            instance = body.get("instance_id")
            with double.lock:
                for name, ids in double.instances.items():
                    if instance in ids:
                        ids.remove(instance)
                        double._record("unload", model=name)
                        return {"instance_id": instance}
            raise _error(double, 404, f"no instance {instance}")
        return {"error": f"Unexpected endpoint or method. ({method} {path})"}  # with HTTP 200
    if kind == "vllm-sleep":
        if (method, path) == ("GET", "/is_sleeping"):
            return {"is_sleeping": double.sleeping}
        if (method, path) == ("POST", "/sleep"):
            double.sleeping = True
            double._record("unload", model=next(iter(double.models)))
            return _Refused(200, "", "text/plain")
        if (method, path) == ("POST", "/wake_up"):
            double.sleeping = False
            double._record("load", model=next(iter(double.models)))
            return _Refused(200, "", "text/plain")
    if kind == "mlx-lm":
        return _Refused(404, "Not Found", "text/plain")
    raise _error(double, 404, f"File Not Found: {path}")


def _handler_for(double: ServerDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, chunks: Iterator[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b": ping - keepalive\n\n")  # a comment line, to be skipped
            broken = double.break_streams > 0
            if broken:
                double.break_streams -= 1
            for n, chunk in enumerate(chunks):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                if broken and n == 1:  # the server went away mid-answer
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

        def _misbehave(self, behaviour: str) -> None:
            """Answer as a server that is not OpenAI-compatible, or not well, would."""
            if behaviour == "html":
                self._send(200, HTML_PAGE.decode(), "text/html")
                return
            if behaviour == "invalid-json":
                self._send(200, '{"data": [', "application/json")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            good = f"data: {json.dumps(_chunk(double, 'm', {'content': 'la'}, None))}\n\n"
            events: Iterator[bytes] = {
                "wrong-shape": iter([f"data: {json.dumps({'choices': 'x'})}\n\n".encode()]),
                "garbage": iter([good.encode(), b"data: not JSON\n\n"]),
                "endless": repeat(good.encode()),
                "drip": chain([good.encode(), b'data: {"choices": "'], repeat(b"a")),
            }[behaviour]
            for data in events:
                self.wfile.write(data)
                self.wfile.flush()
                if behaviour == "drip":
                    time.sleep(double.drip_s)
            self.close_connection = True

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if parts.path in double.misbehave:
                self._misbehave(double.misbehave[parts.path])
                return
            if double.api_key and self.headers.get("Authorization") != f"Bearer {double.api_key}":
                self._send(
                    401,
                    {
                        "error": {
                            "code": 401,
                            "message": "Invalid API Key",
                            "type": "authentication_error",
                        }
                    },
                )
                return
            try:
                body = json.loads(raw) if raw else {}
                answer = _routes(double, method, parts.path, parse_qs(parts.query), body)
            except _Refused as refused:
                answer = refused
            if isinstance(answer, _Refused):
                self._send(answer.status, answer.body, answer.content_type)
            elif isinstance(answer, dict):
                self._send(200, answer)
            else:
                self._stream(answer)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


__all__ = ["KINDS", "Model", "ServerDouble"]
