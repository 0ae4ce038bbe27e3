"""The Ollama backend, on the official ``ollama`` client.

Facts it relies on (../shared/reference/ollama-api.md): an empty generate loads a model and an
empty generate with ``keep_alive: 0`` unloads it, but the unload is asynchronous, so ``unload``
polls ``/api/ps`` until the model is gone. Load-time options (``num_ctx``, ``num_thread``, ...)
are fixed per model at its first load and sent unchanged on every later request, because the
server silently reloads a model whose load-time options change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import ollama

from ai_stack.backends.base import (
    BackendHealth,
    ChatOptions,
    ChatResult,
    ChatStream,
    LoadOptions,
    Message,
    ModelInfo,
    PullProgress,
    ResidentModel,
    exponential_backoff,
    on_this_machine,
    with_retries,
)
from ai_stack.backends.bounds import ReplyGuard, ReplyLimits, brief, what_was_wrong
from ai_stack.config import resolve_host
from ai_stack.errors import (
    AiStackError,
    BackendError,
    BackendUnavailableError,
    BadReplyError,
    ModelNotFoundError,
    TransientBackendError,
)

T = TypeVar("T")
NOT_OLLAMA_HINT = (
    "Check that OLLAMA_HOST (or ollama.host) points at an Ollama server, not at another "
    "program, a proxy or a login page."
)
PROBE_S = 2.0  # a health check's whole answer: a server that drips it is not waited for
START_HINT = (
    "Start it with `ollama serve` (or set ollama.autostart = true), point OLLAMA_HOST at it, "
    "or use --backend embedded."
)


class OllamaBackend:
    """An Ollama server behind the backend protocol."""

    name = "ollama"

    def __init__(
        self,
        host: str | None = None,
        *,
        keep_alive: str | float = "10m",
        request_timeout_s: float = 600.0,
        stall_timeout_s: float = 120.0,
        reply_max_bytes: int = 16 * 1024**2,
        connect_timeout_s: float = 3.0,
        unload_timeout_s: float = 15.0,
        poll_interval_s: float = 0.05,
        attempts: int = 4,
        backoff: Callable[[int], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        log_dir: Path | None = None,
    ) -> None:
        self.host = resolve_host(host if host is not None else os.environ.get("OLLAMA_HOST"))
        self.keep_alive = keep_alive
        self.unload_timeout_s = unload_timeout_s
        self.poll_interval_s = poll_interval_s
        self.attempts = attempts
        self.backoff = backoff or exponential_backoff
        self.sleep = sleep
        self.log_dir = log_dir
        self._timeout = httpx.Timeout(request_timeout_s, connect=connect_timeout_s)
        limits = ReplyLimits(
            self.name,
            f"Ollama at {self.host}",
            "ollama",
            request_timeout_s=request_timeout_s,
            stall_timeout_s=stall_timeout_s,
            max_bytes=reply_max_bytes,
        )
        self.guard = ReplyGuard(limits, exempt=("/api/pull",))  # a pull runs as long as it runs
        self._client: ollama.Client | None = None
        self._load_options: dict[str, dict[str, Any]] = {}
        self._sizes: dict[str, int] = {}  # size on disk from the last /api/tags listing
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def client(self) -> ollama.Client:
        if self._client is None:  # created on first use: no connections at construction
            self._client = ollama.Client(
                host=self.host, timeout=self._timeout, event_hooks=self.guard.hooks()
            )
        return self._client

    # -- server ------------------------------------------------------------------------------

    def health(self) -> BackendHealth:
        hooks = ReplyGuard(self.guard.limits).hooks()  # its own watch, whatever is in flight
        try:
            with httpx.Client(timeout=PROBE_S, event_hooks=hooks) as probe:
                response = probe.get(f"{self.host}/api/version")
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, AiStackError) as exc:
            detail = f"no Ollama server at {self.host} ({type(exc).__name__})"
            return BackendHealth(self.name, False, detail)
        except ValueError as exc:  # an answer, but not JSON
            return self._not_ollama(what_was_wrong(exc))
        version = body.get("version") if isinstance(body, dict) else None
        if not isinstance(version, str):
            return self._not_ollama("no version")
        return BackendHealth(self.name, True, f"Ollama {version} at {self.host}", version)

    def _not_ollama(self, what: str) -> BackendHealth:
        detail = f"{self.host} answers, but not as Ollama does ({what})"
        return BackendHealth(self.name, False, detail, hint=NOT_OLLAMA_HINT)

    @property
    def local(self) -> bool:
        """Whether the server shares this machine's memory (a loopback host)."""
        return on_this_machine(self.host)

    def start_server(self, *, timeout_s: float = 20.0) -> BackendHealth:
        """Start ``ollama serve`` if a binary is on PATH and wait until it answers."""
        binary = shutil.which("ollama")
        if binary is None:
            return BackendHealth(self.name, False, "no `ollama` binary on PATH to start")
        log_path = (self.log_dir or Path.cwd()) / "ollama-serve.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        bind = self.host.split("://", 1)[1].split("/", 1)[0]
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "OLLAMA_HOST": bind},
            )
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            health = self.health()
            if health.available:
                return health
            if self._process.poll() is not None:
                self._process = None
                raise BackendUnavailableError(
                    self.name, f"`ollama serve` exited at once; see {log_path}", hint=START_HINT
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        self.stop_server()
        raise BackendUnavailableError(
            self.name, f"`ollama serve` did not answer within {timeout_s:.0f} s; see {log_path}"
        )

    def stop_server(self) -> None:
        """Stop the server this backend started (never one it found running)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    # -- discovery ---------------------------------------------------------------------------

    def list_models(self) -> list[ModelInfo]:
        listed = self._retrying(lambda: self.client.list())
        models = [
            ModelInfo(
                name=m.model or "",
                backend=self.name,
                size_bytes=int(m.size or 0),
                family=m.details.family if m.details else None,
                parameters=m.details.parameter_size if m.details else None,
                quantization=m.details.quantization_level if m.details else None,
            )
            for m in listed.models
        ]
        self._sizes = {m.name: m.size_bytes for m in models}
        return models

    def describe(self, model: str) -> ModelInfo:
        shown = self._retrying(lambda: self.client.show(model), model=model)
        if not self._size_of(model):  # /api/show has no size: list once, then reuse it
            self.list_models()
        size = self._size_of(model)
        details = shown.details
        info = ModelInfo(
            name=model,
            backend=self.name,
            size_bytes=size,
            family=details.family if details else None,
            parameters=details.parameter_size if details else None,
            quantization=details.quantization_level if details else None,
        )
        meta = dict(shown.modelinfo or {})
        info.apply_gguf_metadata(meta)
        return info

    def _size_of(self, model: str) -> int:
        return self._sizes.get(model) or self._sizes.get(f"{model}:latest") or 0

    def pull(self, model: str) -> Iterator[PullProgress]:
        """Download ``model``, yielding the server's progress. An interrupted pull resumes
        where it stopped, so broken connections are retried by asking again."""
        for attempt in range(1, self.attempts + 1):
            try:
                with self._errors(model):
                    for part in self.client.pull(model, stream=True):
                        yield PullProgress(
                            part.status or "", part.digest, part.total, part.completed
                        )
                return
            except TransientBackendError as exc:
                if "does not exist" in exc.message or "not found" in exc.message:
                    raise ModelNotFoundError(
                        model,
                        f"There is no model {model!r} in the Ollama library.",
                        hint="Check the name and tag at https://ollama.com/library.",
                    ) from None
                if attempt == self.attempts:
                    raise
                yield PullProgress(f"retrying after: {exc.message}")
                self.sleep(self.backoff(attempt))

    # -- residency ---------------------------------------------------------------------------

    def load(self, model: str, options: LoadOptions) -> None:
        wanted = _load_time_options(options)
        if model in self._load_options and self._load_options[model] != wanted:
            self.unload(model)  # an explicit, counted reload instead of a silent one
        self._load_options[model] = wanted
        self._retrying(
            lambda: self.client.generate(model=model, keep_alive=self.keep_alive, options=wanted),
            model=model,
        )

    def unload(self, model: str) -> None:
        self._retrying(lambda: self.client.generate(model=model, keep_alive=0), model=model)
        deadline = time.monotonic() + self.unload_timeout_s
        while any(r.name == model for r in self.resident()):
            if time.monotonic() > deadline:
                raise BackendError(
                    self.name,
                    f"Ollama still lists {model} as loaded {self.unload_timeout_s:.0f} s after "
                    "it was asked to unload it.",
                    hint="A request from another client may be holding it; try again later.",
                )
            time.sleep(self.poll_interval_s)

    def resident(self) -> list[ResidentModel]:
        running = self._retrying(lambda: self.client.ps())
        return [
            ResidentModel(
                m.model or m.name or "",
                self.name,
                int(m.size or 0),
                m.context_length,
                m.expires_at,
                None if m.size_vram is None else int(m.size_vram),
            )
            for m in running.models
        ]

    def remove(self, model: str) -> None:
        """Unload ``model`` (deleting does not), then delete it from the server."""
        if any(r.name == model for r in self.resident()):
            self.unload(model)
        self._retrying(lambda: self.client.delete(model), model=model)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.stop_server()

    # -- generation --------------------------------------------------------------------------

    def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        options: ChatOptions,
        schema: dict[str, Any] | None = None,
    ) -> ChatStream:
        return ChatStream(self._chat(model, messages, options, schema))

    def _chat(
        self,
        model: str,
        messages: list[Message],
        options: ChatOptions,
        schema: dict[str, Any] | None,
    ) -> Generator[str, None, ChatResult]:
        request_options: dict[str, Any] = {
            **self._load_options.get(model, {}),
            "temperature": options.temperature,
            "num_predict": options.max_tokens,
            "repeat_penalty": options.repeat_penalty,
        }
        if options.seed is not None:
            request_options["seed"] = options.seed

        def start() -> tuple[Iterator[Any], Any, float]:
            began = time.perf_counter()
            chunks = iter(
                self.client.chat(
                    model=model,
                    messages=messages,
                    stream=True,
                    format=schema,
                    options=request_options,
                    keep_alive=self.keep_alive,
                )
            )
            first = next(chunks, None)  # the request is sent on the first next()
            if first is None:
                raise BadReplyError(self.name, f"Ollama at {self.host} answered an empty stream.")
            return chunks, first, began

        pieces: list[str] = []
        first_piece: float | None = None
        with self.guard.reply(options.max_tokens) as watch:
            chunks, chunk, started = self._retrying(start, model=model)
            with self._errors(model, streamed=lambda: bool(pieces)):
                while True:
                    piece = chunk.message.content if chunk.message else ""
                    if piece:
                        watch.piece()
                        first_piece = first_piece or time.perf_counter()
                        pieces.append(piece)
                        yield piece
                    if chunk.done:
                        break
                    try:
                        chunk = next(chunks)
                    except StopIteration:
                        raise TransientBackendError(
                            self.name,
                            "the answer stream ended before it was complete",
                            partial=True,
                        ) from None
        ended = time.perf_counter()
        return ChatResult(
            text="".join(pieces),
            prompt_tokens=chunk.prompt_eval_count or 0,
            output_tokens=chunk.eval_count or 0,
            ttft_s=(first_piece or ended) - started,
            decode_s=(chunk.eval_duration or 0) / 1e9,
            load_s=(chunk.load_duration or 0) / 1e9,
            wall_s=ended - started,
            finish_reason=chunk.done_reason or "stop",
        )

    # -- errors ------------------------------------------------------------------------------

    def _retrying(self, call: Callable[[], T], *, model: str | None = None) -> T:
        """Run ``call`` with Ollama's failures mapped, retrying the transient ones with backoff."""
        return with_retries(
            call,
            lambda: self._errors(model),
            attempts=self.attempts,
            backoff=self.backoff,
            sleep=self.sleep,
        )

    @contextmanager
    def _errors(
        self, model: str | None, streamed: Callable[[], bool] = lambda: False
    ) -> Iterator[None]:
        try:
            yield
        except AiStackError:
            raise
        except ollama.ResponseError as exc:
            raise self._response_error(exc, model, partial=streamed()) from None
        except (ConnectionError, httpx.ConnectError):
            raise BackendUnavailableError(
                self.name, f"Cannot reach the Ollama server at {self.host}.", hint=START_HINT
            ) from None
        except httpx.TimeoutException as exc:
            stalled = self.guard.stalled()  # during a reply: no new piece for too long
            if stalled is not None:
                raise stalled from None
            raise BackendError(
                self.name,
                f"Ollama at {self.host} did not answer in time ({type(exc).__name__}).",
                hint="It may be loading a model; try again or raise ollama.request_timeout_s.",
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise TransientBackendError(
                self.name, f"the connection to Ollama broke ({exc})", partial=streamed()
            ) from None
        except (ValueError, TypeError, AttributeError) as exc:  # what the client parsed
            raise BadReplyError(
                self.name,
                f"Ollama at {self.host} answered something that is not Ollama's API "
                f"({what_was_wrong(exc)}).",
                hint=NOT_OLLAMA_HINT,
            ) from None

    def _response_error(
        self, exc: ollama.ResponseError, model: str | None, *, partial: bool
    ) -> Exception:
        message = brief(str(exc.error))
        if exc.status_code == 404 and model:
            return ModelNotFoundError(
                model,
                f"The Ollama model {model!r} is not installed.",
                hint=f"Pull it with: ai-stack models pull {model}  (or: ollama pull {model})",
            )
        if exc.status_code in (429, 503) or "server busy" in message:
            return TransientBackendError(self.name, f"Ollama is busy: {message}", partial=partial)
        if "memory" in message.lower():
            return BackendError(
                self.name,
                f"Ollama could not load {model or 'the model'}: {message}",
                hint="Use a smaller model or a smaller num_ctx, or lower the memory budget.",
            )
        if exc.status_code == -1:  # an error line inside a 200 stream
            return TransientBackendError(
                self.name, f"Ollama failed mid-answer: {message}", partial=partial
            )
        return BackendError(self.name, f"Ollama error ({exc.status_code}): {message}")


def _load_time_options(options: LoadOptions) -> dict[str, Any]:
    values = {
        "num_ctx": options.num_ctx,
        "num_batch": options.num_batch,
        "num_thread": options.num_thread,
        "num_gpu": options.num_gpu,
        "use_mmap": options.use_mmap,
    }
    return {key: value for key, value in values.items() if value is not None}
