"""A protocol-faithful Ollama test double: an in-process HTTP server that follows the documented
API (../shared/reference/ollama-api.md), because no real Ollama server can run here.

What it reproduces, because the client code depends on it:
- NDJSON streaming (chunked) with metrics on the final chunk; zero metrics omitted.
- Empty-request load (``done_reason: "load"``) and unload (``"unload"``); the unload takes effect
  *asynchronously*: the runner stays listed in ``/api/ps`` for ``unload_delay_s``.
- ``keep_alive`` forms (number of seconds, Go duration strings, ``"0"``, negative = forever) and
  expiry of idle runners; invalid forms are a 400.
- A silent reload when a request's load-time options differ from the running runner's.
- The scheduler's own eviction of idle runners at ``max_loaded`` or when memory is short, and a
  500 "requires more system memory" when a model cannot fit at all.
- ``/api/ps`` sizes as the server computes them (weights + KV cache for the runner's ``num_ctx``
  at the server's ``OLLAMA_KV_CACHE_TYPE`` + compute graph + its 512 MiB reserve on Metal), and
  ``size_vram``, less than ``size`` when the GPU's memory (``vram_bytes``) is short: the rest
  runs on the CPU. ``/api/tags``, ``/api/show`` (``model_info``), ``/api/pull`` progress,
  ``/api/delete``, ``/api/version`` and ``GET /``.
- 404 for unknown models, injected 500/503 errors, in-stream error lines, and cut streams.
- Misbehaviours of what is not Ollama or not well (``misbehave``, by path): an HTML page,
  invalid JSON, JSON of the wrong shape, a garbage line in a stream, a stream without end, and
  one that drips a byte at a time and never completes a line.
- Load latency proportional to model size.

Tests read its ``log`` to assert invariants at every step (residency, reloads, verified unloads).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GIB = 1024**3
GB = 1000**3  # Ollama's listed sizes are decimal
MIB = 1024**2
KV_BYTES = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5}
LOAD_TIME_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")
VERSION = "0.12.6"
_DURATION = re.compile(r"^(-?)((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass
class FakeModel:
    """An installed model: size on disk and the GGUF facts /api/show reports."""

    name: str
    size: int
    family: str = "llama"
    parameter_size: str = "7B"
    quantization: str = "Q4_K_M"
    block_count: int = 32
    head_count: int = 32
    head_count_kv: int = 8
    embedding_length: int = 4096
    context_length: int = 32768

    def kv_bytes(self, num_ctx: int, kv_cache_type: str = "f16") -> int:
        head_dim = self.embedding_length // self.head_count
        per_value = KV_BYTES[kv_cache_type]
        return int(2 * self.block_count * num_ctx * self.head_count_kv * head_dim * per_value)

    def graph_bytes(self, num_ctx: int) -> int:
        """The server's compute-graph estimate for a 512-token batch (llama-style models)."""
        return 4 * 512 * (1 + 4 * self.embedding_length + num_ctx * (1 + self.head_count))

    def memory(self, num_ctx: int, kv_cache_type: str = "f16") -> int:
        return (
            self.size
            + self.kv_bytes(num_ctx, kv_cache_type)
            + self.graph_bytes(num_ctx)
            + 512 * MIB
        )


def standard_models() -> list[FakeModel]:
    """The models of the target machine's default roles (sizes from the reference)."""
    return [
        FakeModel("mistral:7b", int(4.4 * GB), "llama", "7.2B", block_count=32, head_count_kv=8),
        FakeModel(
            "qwen2.5:7b",
            int(4.7 * GB),
            "qwen2",
            "7.6B",
            block_count=28,
            head_count=28,
            head_count_kv=4,
            embedding_length=3584,
        ),
        FakeModel(
            "qwen2.5:14b",
            8_988_124_069,
            "qwen2",
            "14.8B",
            block_count=48,
            head_count=40,
            head_count_kv=8,
            embedding_length=5120,
        ),
    ]


@dataclass
class Runner:
    model: FakeModel
    options: dict[str, Any]
    keep_alive_s: float | None  # None = forever
    loaded_at: float
    last_used: float
    busy: int = 0
    unloading_until: float | None = None
    kv_cache_type: str = "f16"

    @property
    def num_ctx(self) -> int:
        return int(self.options.get("num_ctx", 4096))

    @property
    def size(self) -> int:
        return self.model.memory(self.num_ctx, self.kv_cache_type)

    def expires_at(self) -> float:
        if self.keep_alive_s is None:
            return float("inf")
        return self.last_used + self.keep_alive_s


class _QuietServer(ThreadingHTTPServer):
    """Cut streams make the handler's socket fail on purpose; that is not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


MISBEHAVIOURS = ("html", "invalid-json", "wrong-shape", "garbage", "endless", "drip")
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Log in</body></html>"
# Wrong for every endpoint: each key a client reads has the wrong type
WRONG_SHAPE = {"models": "none", "details": "none", "model_info": "none", "version": 5}


class BadRequest(Exception):
    pass


@dataclass
class Fault:
    """An injected failure for the next matching request."""

    status: int = 500
    message: str = "runner crashed"
    in_stream: bool = False  # send it as an error line inside a 200 stream
    cut_after: int | None = None  # close the connection after this many chunks


@dataclass
class OllamaDouble:
    """The server's state; start it with :meth:`start` (a context manager)."""

    models: dict[str, FakeModel] = field(
        default_factory=lambda: {m.name: m for m in standard_models()}
    )
    memory_bytes: int = 16 * GIB
    vram_bytes: int | None = None  # the GPU's memory; None: every model fits on it
    kv_cache_type: str = "f16"  # OLLAMA_KV_CACHE_TYPE
    max_loaded: int = 3
    default_keep_alive_s: float = 300.0
    unload_delay_s: float = 0.05
    load_bytes_per_s: float = 100 * GIB
    seconds_per_token: float = 0.0
    # path -> one of MISBEHAVIOURS: how every request to that path is answered
    misbehave: dict[str, str] = field(default_factory=dict)
    drip_s: float = 0.05  # the pause between two bytes of a drip
    # While set, a generation streams its first piece and then waits until the gate opens: a
    # test holds a model busy for as long as it needs, whatever the machine's speed.
    gate: threading.Event | None = None
    runners: dict[str, Runner] = field(default_factory=dict)
    replies: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    faults: dict[tuple[str, str], deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    log: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    host: str = ""

    # -- test controls -----------------------------------------------------------------------

    def enqueue(self, *replies: str, model: str = "*") -> None:
        self.replies[model].extend(replies)

    def fail_next(self, path: str, fault: Fault, model: str = "*") -> None:
        self.faults[(path, model)].append(fault)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.log if e["event"] == kind]

    @property
    def reloads(self) -> int:
        return len(self.events("reload"))

    @property
    def loads(self) -> int:
        return len(self.events("load"))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> _Running:
        server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.host = f"http://127.0.0.1:{server.server_address[1]}"
        return _Running(self, server, thread)

    # -- scheduler ---------------------------------------------------------------------------

    def _record(self, event: str, **details: Any) -> None:
        self.log.append({"event": event, "t": time.monotonic(), **details})

    def _reap(self) -> None:
        """Drop runners whose unload finished or whose keep_alive ran out while idle."""
        now = time.monotonic()
        for name, runner in list(self.runners.items()):
            if runner.unloading_until is not None and now >= runner.unloading_until:
                del self.runners[name]
                self._record("unloaded", model=name)
            elif runner.unloading_until is None and not runner.busy and now >= runner.expires_at():
                del self.runners[name]
                self._record("expired", model=name)

    def _unload(self, name: str) -> None:
        runner = self.runners.get(name)
        if runner is not None and runner.unloading_until is None:
            runner.unloading_until = time.monotonic() + self.unload_delay_s
            self._record("unload", model=name, busy=runner.busy)

    def _ensure_loaded(
        self, model: FakeModel, options: dict[str, Any], keep_alive: float | str | None
    ) -> float:
        """Load (or reload) ``model`` as the real scheduler would; returns load seconds."""
        load_options = {k: options[k] for k in LOAD_TIME_OPTIONS if k in options}
        with self.lock:
            self._reap()
            runner = self.runners.get(model.name)
            if runner is not None and runner.unloading_until is None:
                if runner.options == load_options:
                    if keep_alive != "unset":
                        runner.keep_alive_s = keep_alive  # type: ignore[assignment]
                    return 0.0
                self._record("reload", model=model.name, old=runner.options, new=load_options)
                del self.runners[model.name]
            needed = model.memory(int(load_options.get("num_ctx", 4096)), self.kv_cache_type)
            if needed > self.memory_bytes:
                raise _HTTPError(
                    500,
                    f"model requires more system memory ({needed / GIB:.1f} GiB) than is "
                    f"available ({self.memory_bytes / GIB:.1f} GiB)",
                )
            self._make_room(needed)
            others = [n for n in self.runners if n != model.name]
            used = sum(r.size for r in self.runners.values()) + needed
            self._record("load", model=model.name, others=others, options=load_options, used=used)
            now = time.monotonic()
            self.runners[model.name] = Runner(
                model,
                load_options,
                self.default_keep_alive_s if keep_alive == "unset" else keep_alive,  # type: ignore[arg-type]
                now,
                now,
                kv_cache_type=self.kv_cache_type,
            )
        seconds = model.size / self.load_bytes_per_s
        time.sleep(seconds)
        return seconds

    def _make_room(self, needed: int) -> None:
        """Evict idle runners, least recently used first, until the new one fits."""
        while True:
            used = sum(r.size for r in self.runners.values())
            if len(self.runners) < self.max_loaded and used + needed <= self.memory_bytes:
                return
            idle = sorted(
                (r for r in self.runners.values() if not r.busy), key=lambda r: r.last_used
            )
            if not idle:
                raise _HTTPError(500, "model requires more system memory than is available")
            victim = idle[0].model.name
            del self.runners[victim]
            self._record("evicted", model=victim)

    # -- generation --------------------------------------------------------------------------

    def _reply_for(self, model: str, schema: Any) -> str:
        with self.lock:
            for key in (model, "*"):
                if self.replies[key]:
                    return self.replies[key].popleft()
        if isinstance(schema, dict):
            return json.dumps(_instance(schema))
        if schema == "json":
            return "{}"
        return f"An answer from {model}."

    def _fault(self, path: str, model: str) -> Fault | None:
        with self.lock:
            for key in ((path, model), (path, "*")):
                if self.faults[key]:
                    return self.faults[key].popleft()
        return None


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Running:
    double: OllamaDouble
    server: ThreadingHTTPServer
    thread: threading.Thread

    def __enter__(self) -> OllamaDouble:
        return self.double

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_keep_alive(value: Any) -> float | str | None:
    """Seconds, ``None`` for forever, or ``"unset"``; raises BadRequest like the server."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        raise BadRequest("invalid keep_alive")
    if isinstance(value, (int, float)):
        return None if value < 0 else float(value)
    if isinstance(value, str):
        if value == "0":
            return 0.0
        match = _DURATION.match(value)
        if not match:
            raise BadRequest(f'time: missing unit in duration "{value}"')
        seconds = sum(
            float(n) * _UNIT_S[u]
            for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
        )
        return None if match.group(1) == "-" else seconds
    raise BadRequest("invalid keep_alive")


def _instance(schema: dict[str, Any]) -> Any:
    """A small valid instance of a JSON schema (what a well-behaved model would write)."""
    if "enum" in schema:
        values = schema["enum"]
        return values[-1] if schema.get("type") == "integer" else values[0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _instance(v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [
            _instance(schema.get("items", {})) for _ in range(max(1, schema.get("minItems", 1)))
        ]
    if kind == "string":
        return "a concrete step"[: schema.get("maxLength", 100)]
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    return None


def _misbehaving_lines(behaviour: str) -> Iterator[bytes]:
    """The body of a misbehaving stream: a good line then garbage; good lines without end; or
    a line that never ends, a byte at a time."""
    line = {"model": "m", "created_at": _rfc3339(0), "done": False}
    good = (json.dumps({**line, "message": {"role": "assistant", "content": "la"}}) + "\n").encode()
    if behaviour == "garbage":
        yield good
        yield b"this is not JSON\n"
    elif behaviour == "endless":
        while True:
            yield good
    elif behaviour == "drip":
        yield good
        yield b'{"model": "m", "message": {"content": "'
        while True:
            yield b"a"
    else:
        raise ValueError(f"unknown misbehaviour {behaviour!r}")


def _rfc3339(seconds_from_now: float) -> str:
    if seconds_from_now == float("inf"):
        when = datetime(2318, 1, 1, tzinfo=timezone.utc)
    else:
        when = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return when.isoformat().replace("+00:00", "Z")


def _details(model: FakeModel) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": model.family,
        "families": [model.family],
        "parameter_size": model.parameter_size,
        "quantization_level": model.quantization,
    }


def _handler_for(double: OllamaDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        # -- plumbing ----------------------------------------------------------------------

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                raise _HTTPError(400, "missing request body")
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise _HTTPError(400, f"invalid character: {exc.msg}") from None
            if not isinstance(data, dict):
                raise _HTTPError(400, "json: cannot unmarshal")
            return data

        def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": message})

        def _stream(self, lines: Iterator[dict[str, Any]], cut_after: int | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for count, line in enumerate(lines):
                if cut_after is not None and count >= cut_after:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # mid-stream, no terminating chunk
                    return
                data = (json.dumps(line) + "\n").encode()
                self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def _model(self, name: Any) -> FakeModel:
            if not isinstance(name, str) or not name:
                raise _HTTPError(400, "model is required")
            model = double.models.get(name) or double.models.get(f"{name}:latest")
            if model is None:
                raise _HTTPError(404, f"model '{name}' not found")
            return model

        def _misbehave(self, behaviour: str) -> None:
            """Answer as a server that is not Ollama, or not well, would."""
            self._body_or_none()
            if behaviour == "html":
                self._send(200, HTML_PAGE, "text/html")
            elif behaviour == "invalid-json":
                self._send(200, b'{"models": [', "application/json")
            elif behaviour == "wrong-shape":
                if self.path.startswith("/api/chat"):
                    self._stream(iter([{"message": "text", "done": "maybe"}]))
                else:
                    self._send(200, WRONG_SHAPE)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for data in _misbehaving_lines(behaviour):
                    self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                    if behaviour == "drip":
                        time.sleep(double.drip_s)
                self.wfile.write(b"0\r\n\r\n")

        def _body_or_none(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)

        def _dispatch(self, routes: dict[str, Any]) -> None:
            path = self.path.split("?")[0]
            double._record("request", method=self.command, path=path)
            behaviour = double.misbehave.get(path)
            if behaviour is not None:
                self._misbehave(behaviour)
                return
            route = routes.get(path)
            if route is None:
                self._error(404, "404 page not found")
                return
            try:
                route()
            except _HTTPError as exc:
                self._error(exc.status, exc.message)
            except BadRequest as exc:
                self._error(400, str(exc))

        # -- verbs -------------------------------------------------------------------------

        def do_GET(self) -> None:
            self._dispatch(
                {
                    "/": lambda: self._send(200, b"Ollama is running", "text/plain"),
                    "/api/version": lambda: self._send(200, {"version": VERSION}),
                    "/api/tags": self._tags,
                    "/api/ps": self._ps,
                }
            )

        def do_HEAD(self) -> None:
            self._dispatch({"/": lambda: self._send(200, b"Ollama is running", "text/plain")})

        def do_POST(self) -> None:
            self._dispatch(
                {
                    "/api/generate": lambda: self._generate(chat=False),
                    "/api/chat": lambda: self._generate(chat=True),
                    "/api/show": self._show,
                    "/api/pull": self._pull,
                }
            )

        def do_DELETE(self) -> None:
            self._dispatch({"/api/delete": self._delete})

        # -- endpoints ---------------------------------------------------------------------

        def _tags(self) -> None:
            models = [
                {
                    "name": m.name,
                    "model": m.name,
                    "modified_at": "2026-11-01T10:00:00Z",
                    "size": m.size,
                    "digest": f"{abs(hash(m.name)):064x}"[:64],
                    "details": _details(m),
                }
                for m in double.models.values()
            ]
            self._send(200, {"models": models})

        def _ps(self) -> None:
            with double.lock:
                double._reap()
                runners = sorted(double.runners.values(), key=lambda r: -r.expires_at())
                now = time.monotonic()
                listed = [
                    {
                        "name": r.model.name,
                        "model": r.model.name,
                        "size": r.size,
                        "size_vram": min(r.size, double.vram_bytes or r.size),
                        "digest": f"{abs(hash(r.model.name)):064x}"[:64],
                        "details": _details(r.model),
                        "expires_at": _rfc3339(r.expires_at() - now),
                        "context_length": r.num_ctx,
                    }
                    for r in runners
                ]
                double._record("ps", models=[m["name"] for m in listed])
            self._send(200, {"models": listed})

        def _show(self) -> None:
            model = self._model(self._body().get("model"))
            arch = model.family
            self._send(
                200,
                {
                    "modelfile": f"FROM {model.name}",
                    "parameters": "stop <|im_end|>",
                    "template": "{{ .Prompt }}",
                    "details": _details(model),
                    "model_info": {
                        "general.architecture": arch,
                        "general.parameter_count": 7_000_000_000,
                        f"{arch}.context_length": model.context_length,
                        f"{arch}.embedding_length": model.embedding_length,
                        f"{arch}.block_count": model.block_count,
                        f"{arch}.attention.head_count": model.head_count,
                        f"{arch}.attention.head_count_kv": model.head_count_kv,
                    },
                    "capabilities": ["completion"],
                },
            )

        def _pull(self) -> None:
            body = self._body()
            name = body.get("model")
            model = double.models.get(name or "")
            stream = body.get("stream", True)
            if model is None:
                if stream:
                    self._stream(
                        iter(
                            [
                                {"status": "pulling manifest"},
                                {"error": "pull model manifest: file does not exist"},
                            ]
                        )
                    )
                else:
                    self._error(500, "pull model manifest: file does not exist")
                return
            digest = "sha256:" + f"{abs(hash(name)):064x}"[:64]
            steps = [{"status": "pulling manifest"}]
            steps += [
                {
                    "status": f"pulling {digest[7:19]}",
                    "digest": digest,
                    "total": model.size,
                    "completed": done,
                }
                for done in (0, model.size // 2, model.size)
            ]
            steps += [
                {"status": s} for s in ("verifying sha256 digest", "writing manifest", "success")
            ]
            if stream:
                self._stream(iter(steps))
            else:
                self._send(200, {"status": "success"})

        def _delete(self) -> None:
            name = self._body().get("model")
            if name not in double.models:
                raise _HTTPError(404, f"model '{name}' not found")
            del double.models[name]
            self._send(200, b"", "text/plain")

        def _generate(self, *, chat: bool) -> None:
            body = self._body()
            path = "/api/chat" if chat else "/api/generate"
            model = self._model(body.get("model"))
            keep_alive = parse_keep_alive(body.get("keep_alive"))
            options = body.get("options") or {}
            empty = not body.get("messages") if chat else not body.get("prompt")
            stream = body.get("stream", True)
            if empty and keep_alive == 0.0:
                with double.lock:
                    double._unload(model.name)
                self._send(200, self._final(model, chat, "unload", {}))
                return
            fault = double._fault(path, model.name)
            if fault and not fault.in_stream and fault.cut_after is None:
                raise _HTTPError(fault.status, fault.message)
            load_s = double._ensure_loaded(model, options, keep_alive)
            if empty:
                self._send(200, self._final(model, chat, "load", {"load_duration": load_s}))
                return
            runner = double.runners[model.name]
            with double.lock:
                runner.busy += 1
            try:
                schema = body.get("format")
                if schema is not None and not isinstance(schema, (dict, str)):
                    raise _HTTPError(400, "invalid format")
                text = double._reply_for(model.name, schema)
                pieces = [text[i : i + 4] for i in range(0, len(text), 4)] or [""]
                double._record(
                    "generate",
                    model=model.name,
                    format=schema,
                    options=dict(options),
                    keep_alive=body.get("keep_alive"),
                    chat=chat,
                    messages=body.get("messages"),
                )
                prompt_tokens = (
                    sum(
                        len(str(m.get("content", ""))) // 4 + 1
                        for m in body.get("messages") or [body]
                    )
                    if chat
                    else len(str(body.get("prompt"))) // 4 + 1
                )
                metrics = {
                    "total_duration": 0.01 + load_s,
                    "load_duration": load_s,
                    "prompt_eval_count": prompt_tokens,
                    "prompt_eval_duration": 0.001,
                    "eval_count": len(pieces),
                    "eval_duration": max(double.seconds_per_token * len(pieces), 0.002),
                }

                gate = double.gate

                def lines() -> Iterator[dict[str, Any]]:
                    for index, piece in enumerate(pieces):
                        if index == 1 and gate is not None:
                            gate.wait(timeout=120)
                        time.sleep(double.seconds_per_token)
                        if chat:
                            yield {
                                "model": model.name,
                                "created_at": _rfc3339(0),
                                "message": {"role": "assistant", "content": piece},
                                "done": False,
                            }
                        else:
                            yield {
                                "model": model.name,
                                "created_at": _rfc3339(0),
                                "response": piece,
                                "done": False,
                            }
                    if fault and fault.in_stream:
                        yield {"error": fault.message}
                        return
                    yield self._final(model, chat, "stop", metrics)

                if stream:
                    self._stream(lines(), cut_after=fault.cut_after if fault else None)
                else:
                    final = self._final(model, chat, "stop", metrics)
                    if chat:
                        final["message"]["content"] = text
                    else:
                        final["response"] = text
                    self._send(200, final)
            finally:
                with double.lock:
                    runner.busy -= 1
                    runner.last_used = time.monotonic()

        def _final(
            self, model: FakeModel, chat: bool, reason: str, metrics: dict[str, float]
        ) -> dict[str, Any]:
            final: dict[str, Any] = {
                "model": model.name,
                "created_at": _rfc3339(0),
                "done": True,
                "done_reason": reason,
            }
            if chat:
                final["message"] = {"role": "assistant", "content": ""}
            else:
                final["response"] = ""
            for key, value in metrics.items():
                as_int = int(value * 1e9) if key.endswith("duration") else int(value)
                if as_int:  # the server omits zero metrics
                    final[key] = as_int
            return final

    return Handler


def main() -> None:
    """Serve until killed, on the address in OLLAMA_HOST: a stand-in `ollama serve` for tests of
    the auto-start path (a script named `ollama` on PATH runs this)."""
    import os
    import sys

    bind = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")
    host, _, port = bind.rpartition(":")
    if sys.argv[1:2] != ["serve"]:
        sys.exit("usage: ollama serve")
    double = OllamaDouble()
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), _handler_for(double))
    server.serve_forever()


if __name__ == "__main__":
    main()
