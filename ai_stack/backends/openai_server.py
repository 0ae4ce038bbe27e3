"""An OpenAI-compatible server — LM Studio, llama-server, llama-swap, mlx-lm, vLLM,
llama-cpp-python's server — behind the backend protocol, on the official ``openai`` client.

Chat is the common API: streamed, with usage taken from whichever chunk carries it and
llama.cpp's ``timings`` where present, and a stream that ends without a finish reason (a newer
request cut it short) retried. Structured output uses ``response_format``, in the form the
server takes — the OpenAI ``json_schema`` form, else ``json_object`` with a schema
(llama-cpp-python) — found by trying once per model and remembered; where the server takes
neither, the reply is validated and re-asked as for any model. What is resident, and how to
load and unload, is the server kind's :mod:`~ai_stack.backends.lifecycles`.

Facts and shapes: ../shared/reference/openai-backends.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import httpx
import openai
from pydantic import BaseModel

from ai_stack.backends.base import (
    BackendHealth,
    ChatOptions,
    ChatResult,
    ChatStream,
    LoadOptions,
    Message,
    ModelInfo,
    ResidentModel,
    exponential_backoff,
    on_this_machine,
    with_retries,
)
from ai_stack.backends.bounds import ReplyGuard, ReplyLimits, brief, what_was_wrong
from ai_stack.backends.lifecycles import DESCRIPTIONS, Lifecycle, detect, lifecycle_for
from ai_stack.config import ServerKind
from ai_stack.errors import (
    AiStackError,
    BackendError,
    BackendUnavailableError,
    BadReplyError,
    ModelNotFoundError,
    TransientBackendError,
)
from ai_stack.redaction import without_password

T = TypeVar("T")
try:  # the openai client (3.x) runs on httpx2; the lifecycle calls on httpx
    import httpx2

    BROKEN: tuple[type[Exception], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover
    BROKEN = (httpx.TransportError,)
# The response_format forms, in the order they are tried: OpenAI's, then llama-cpp-python's
FORMATS = ("json_schema", "json_object")
UNREACHABLE_HINT = "Start the server, or correct its base_url (for openai: OPENAI_BASE_URL)."
NOT_OPENAI_HINT = (
    "Check that its base_url (for openai: OPENAI_BASE_URL) points at an OpenAI-compatible "
    "server's /v1, not at a web page, a proxy or another program."
)
FIRST_FORMAT: dict[ServerKind, str | None] = {"llama-cpp-python": "json_object"}


def server_root(base_url: str) -> str:
    """The server's own root, where the lifecycle endpoints live (``base_url`` less ``/v1``).

    >>> server_root("http://127.0.0.1:1234/v1/")
    'http://127.0.0.1:1234'
    >>> server_root("http://box:8080")
    'http://box:8080'
    """
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


class OpenAIBackend:
    """One OpenAI-compatible server, under the name its models are given (``NAME:model``)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None = None,
        *,
        kind: ServerKind | None = None,
        request_timeout_s: float = 600.0,
        stall_timeout_s: float = 120.0,
        reply_max_bytes: int = 16 * 1024**2,
        connect_timeout_s: float = 3.0,
        attempts: int = 4,
        backoff: Callable[[int], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 0.1,
    ) -> None:
        self.name = name
        self._url = base_url.rstrip("/")  # as given: a password in it is the client's to send
        if not self._url.endswith("/v1"):
            self._url += "/v1"
        # What messages, listings, the history and the machine-wide lease name it by.
        self.host = without_password(self._url)
        self.api_key = api_key
        self.attempts = attempts
        self.backoff = backoff or exponential_backoff
        self.sleep = sleep
        self.poll_s = poll_s
        self._timeout = httpx.Timeout(request_timeout_s, connect=connect_timeout_s)
        self._client_timeout = openai.Timeout(request_timeout_s, connect=connect_timeout_s)
        limits = ReplyLimits(
            name,
            f"the server at {self.host}",
            f"endpoints.{name}",
            request_timeout_s=request_timeout_s,
            stall_timeout_s=stall_timeout_s,
            max_bytes=reply_max_bytes,
        )
        self.guard = ReplyGuard(limits)
        self._kind = kind
        self._client: openai.OpenAI | None = None
        self._http: httpx.Client | None = None
        self._lifecycle: Lifecycle | None = None
        self._formats: dict[str, str | None] = {}  # the response_format a model's server takes

    # -- the server ---------------------------------------------------------------------------

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:  # created on first use: no connections at construction
            self._client = openai.OpenAI(
                base_url=self._url,
                api_key=self.api_key or "not-needed",  # servers that check none take any
                timeout=self._client_timeout,
                max_retries=0,  # retries are ours, with the errors mapped
                # httpx, with every reply bounded: every openai version takes it (3.x types its
                # own httpx2 here, and takes httpx's client too)
                http_client=cast(
                    Any,
                    httpx.Client(
                        timeout=self._timeout,
                        follow_redirects=True,
                        event_hooks=self.guard.hooks(),
                    ),
                ),
            )
        return self._client

    @property
    def http(self) -> httpx.Client:
        """A client for the server's own (non-OpenAI) endpoints."""
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._http = httpx.Client(
                base_url=server_root(self._url),
                headers=headers,
                timeout=self._timeout,
                event_hooks=self.guard.hooks(),
            )
        return self._http

    @property
    def kind(self) -> ServerKind:
        """Which server this is (configured, else detected once from what it answers)."""
        if self._kind is None:
            with self._errors(None):
                self._kind = detect(self.http)
        return self._kind

    @property
    def lifecycle(self) -> Lifecycle:
        if self._lifecycle is None:
            self._lifecycle = lifecycle_for(self.kind)(
                self.name, self.http, self._warm, poll_s=self.poll_s, sleep=self.sleep
            )
        return self._lifecycle

    @property
    def controls_residency(self) -> bool:
        """Whether ai-stack can load and unload this server's models (else the server decides
        and ai-stack only serializes its calls)."""
        return self.lifecycle.controls_residency

    @property
    def residency_note(self) -> str:
        what = f"{DESCRIPTIONS[self.kind]} at {self.host}"
        if self.controls_residency:
            return f"{what}: ai-stack loads and unloads its models"
        return (
            f"{what} has no API to unload a model: it decides what stays in memory; ai-stack "
            "only keeps its calls one at a time"
        )

    @property
    def local(self) -> bool:
        """Whether the server shares this machine's memory (a loopback host)."""
        return on_this_machine(self._url)

    def health(self) -> BackendHealth:
        try:
            response = self.http.get("/v1/models", timeout=2.0)
        except (httpx.HTTPError, AiStackError) as exc:
            detail = f"no server at {self.host} ({type(exc).__name__})"
            return BackendHealth(self.name, False, detail, hint=UNREACHABLE_HINT)
        if response.status_code != 200:
            detail = f"{self.host} answered {response.status_code} to /v1/models"
            return BackendHealth(self.name, False, detail, hint=UNREACHABLE_HINT)
        return BackendHealth(self.name, True, f"{DESCRIPTIONS[self.kind]} at {self.host}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- models ------------------------------------------------------------------------------

    def list_models(self) -> list[ModelInfo]:
        listed = self._retrying(
            lambda: [_Listed.model_validate(_raw(entry)) for entry in self.client.models.list()]
        )
        sizes = self._retrying(self.lifecycle.sizes)
        models = []
        for entry in listed:
            size, context = sizes.get(entry.id, (0, None))
            context = context or entry.max_model_len or entry.context_length
            models.append(
                ModelInfo(entry.id, self.name, size, context_length=context, path=self.host)
            )
        return models

    def describe(self, model: str) -> ModelInfo:
        models = self.list_models()
        for info in models:
            if info.name == model:
                return info
        known = ", ".join(m.name for m in models[:8]) or "none"
        raise ModelNotFoundError(
            f"{self.name}:{model}",
            f"{DESCRIPTIONS[self.kind]} at {self.host} has no model {model!r}.",
            hint=f"Its models: {known}. (Some servers would answer with another model.)",
        )

    def load(self, model: str, options: LoadOptions) -> None:
        self._retrying(lambda: self.lifecycle.load(model, options), model=model)

    def unload(self, model: str) -> None:
        self._retrying(lambda: self.lifecycle.unload(model), model=model)

    def resident(self) -> list[ResidentModel]:
        return self._retrying(self.lifecycle.resident)

    def _warm(self, model: str) -> None:
        """One token: a server that swaps models on request loads this one now."""
        self.client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
        )

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

    def _request(
        self, model: str, messages: list[Message], options: ChatOptions, schema: Any
    ) -> dict[str, Any]:
        penalty = "repetition_penalty" if self.kind.startswith("vllm") else "repeat_penalty"
        request: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},  # mlx-lm reads the key directly
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "extra_body": {penalty: options.repeat_penalty},
        }
        if options.seed is not None:
            request["seed"] = options.seed
        form = self._formats.get(model, FIRST_FORMAT.get(self.kind, FORMATS[0]))
        if schema is not None and form == "json_schema":
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": True},
            }
        elif schema is not None and form == "json_object":
            request["response_format"] = {"type": "json_object", "schema": schema}
        return request

    def _open(
        self, model: str, messages: list[Message], options: ChatOptions, schema: Any
    ) -> tuple[openai.Stream[Any], float]:
        """Send the request; a server that refuses the response_format is asked in its next
        form (remembered for the model), down to none."""
        while True:
            began = time.perf_counter()
            try:
                stream = self.client.chat.completions.create(
                    **self._request(model, messages, options, schema)
                )
                return stream, began
            except (openai.BadRequestError, openai.InternalServerError) as exc:
                form = self._formats.get(model, FIRST_FORMAT.get(self.kind, FORMATS[0]))
                if schema is None or form is None or not _refuses_format(exc):
                    raise
                later = FORMATS[FORMATS.index(form) + 1 :] if form in FORMATS else ()
                self._formats[model] = later[0] if later else None

    def _chat(
        self,
        model: str,
        messages: list[Message],
        options: ChatOptions,
        schema: dict[str, Any] | None,
    ) -> Generator[str, None, ChatResult]:
        pieces: list[str] = []
        first_piece: float | None = None
        usage: _Usage | None = None
        timings = _Timings()
        finish: str | None = None
        with self.guard.reply(options.max_tokens) as watch:
            chunks, started = self._retrying(
                lambda: self._open(model, messages, options, schema), model=model
            )
            events = 0
            with self._errors(model, streamed=lambda: bool(pieces)):
                for raw in chunks:
                    events += 1
                    chunk = _Chunk.model_validate(_raw(raw))
                    usage = chunk.usage or usage
                    timings = chunk.timings or timings
                    for choice in chunk.choices:
                        piece = choice.delta.content if choice.delta else None
                        if piece:
                            watch.piece()
                            first_piece = first_piece or time.perf_counter()
                            pieces.append(piece)
                            yield piece
                        finish = choice.finish_reason or finish
        if finish is None and not events and not _event_stream(chunks.response.headers):
            raise BadReplyError(  # a page or a JSON body, not one event in it
                self.name,
                f"the server at {self.host} answered something that is not the OpenAI API "
                f"(no event stream: {chunks.response.headers.get('content-type', 'no type')}).",
                hint=NOT_OPENAI_HINT,
            )
        if finish is None:  # llama-cpp-python ends a stream a newer request interrupts so
            raise TransientBackendError(
                self.name, "the answer stream ended before it was complete", partial=True
            )
        ended = time.perf_counter()
        prompt = usage.prompt_tokens if usage else (timings.prompt_n or 0) + (timings.cache_n or 0)
        output = usage.completion_tokens if usage else timings.predicted_n or len(pieces)
        decode = (timings.predicted_ms or 0) / 1000 or ended - (first_piece or ended)
        return ChatResult(
            text="".join(pieces),
            prompt_tokens=prompt,
            output_tokens=output,
            ttft_s=(first_piece or ended) - started,
            decode_s=decode,
            wall_s=ended - started,
            finish_reason=finish,
        )

    # -- errors ------------------------------------------------------------------------------

    def _retrying(self, call: Callable[[], T], *, model: str | None = None) -> T:
        """Run ``call`` with the server's failures mapped, retrying the transient ones."""
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
        where = f"the server at {self.host}"
        try:
            yield
        except AiStackError:
            raise
        except (openai.APITimeoutError, httpx.TimeoutException):
            stalled = self.guard.stalled()  # during a reply: no new piece for too long
            if stalled is not None:
                raise stalled from None
            raise BackendError(
                self.name,
                f"{where} did not answer in time.",
                hint="It may be loading a model; try again or raise its request_timeout_s.",
            ) from None
        except (openai.APIConnectionError, httpx.ConnectError):
            raise BackendUnavailableError(
                self.name,
                f"Cannot reach {where}.",
                hint=UNREACHABLE_HINT,
            ) from None
        except openai.AuthenticationError:
            raise BackendError(
                self.name,
                f"{where} refused the API key.",
                hint="Set the environment variable the endpoint's api_key_env names "
                "(OPENAI_API_KEY for openai:).",
            ) from None
        except openai.NotFoundError as exc:
            if model is None:
                raise BackendError(self.name, f"{where}: {_message(exc)}") from None
            raise ModelNotFoundError(
                f"{self.name}:{model}", f"{where} has no model {model!r}: {_message(exc)}"
            ) from None
        except openai.APIStatusError as exc:
            if exc.status_code in (429, 503):
                raise TransientBackendError(
                    self.name, f"{where} is busy: {_message(exc)}", partial=streamed()
                ) from None
            raise BackendError(
                self.name, f"{where} answered {exc.status_code}: {_message(exc)}"
            ) from None
        except (
            openai.APIResponseValidationError,
            ValueError,
            TypeError,
            AttributeError,
            LookupError,  # a lifecycle's JSON without the key every entry has
        ) as exc:
            raise BadReplyError(  # an HTML page, invalid JSON, JSON of the wrong shape
                self.name,
                f"{where} answered something that is not the OpenAI API ({what_was_wrong(exc)}).",
                hint=NOT_OPENAI_HINT,
            ) from None
        except openai.APIError as exc:  # an error event inside a stream
            raise TransientBackendError(
                self.name, f"{where} failed mid-answer: {exc.message}", partial=streamed()
            ) from None
        except BROKEN as exc:  # a connection that broke mid-answer
            raise TransientBackendError(
                self.name, f"the connection to {where} broke ({exc})", partial=streamed()
            ) from None
        except httpx.HTTPError as exc:
            raise BackendError(self.name, f"{where}: {type(exc).__name__}: {exc}") from None


class _Delta(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Timings(BaseModel):
    """llama.cpp's own counts, where there is no usage."""

    prompt_n: int | None = None
    cache_n: int | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None


class _Chunk(BaseModel):
    """What ai-stack reads of a stream chunk, checked: the client builds its chunks from
    whatever the server sent, unvalidated."""

    choices: list[_Choice] = []
    usage: _Usage | None = None
    timings: _Timings | None = None


class _Listed(BaseModel):
    """What ai-stack reads of a ``/v1/models`` entry (the context under vLLM's or LM Studio's
    name)."""

    id: str
    max_model_len: int | None = None
    context_length: int | None = None


def _event_stream(headers: Mapping[str, str]) -> bool:
    return "text/event-stream" in headers.get("content-type", "")


def _raw(model: Any) -> Any:
    """The data the client built ``model`` from, as the server sent it."""
    return model.model_dump(warnings=False, exclude_unset=True)


def _message(exc: openai.APIStatusError) -> str:
    """The message of an error body, whichever shape the server uses (``error`` as a string
    or an object, or ``detail``)."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict):
            return brief(str(error.get("message") or error))
        if error is not None:
            return brief(str(error))
    return brief(exc.message)


def _refuses_format(exc: openai.APIStatusError) -> bool:
    """Whether the server refused the request for its response_format (LM Studio: 400 for
    json_object; llama-cpp-python: 500 for json_schema)."""
    text = _message(exc).lower()
    return "response_format" in text or "json_schema" in text or "json_object" in text


__all__ = ["OpenAIBackend", "server_root"]
