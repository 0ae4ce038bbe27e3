"""What an OpenAI-compatible server lets a client do about which models it holds in memory.

The chat API is common to them all; the model lifecycle is not (../shared/reference/
openai-backends.md). Each kind of server gets a :class:`Lifecycle` — which models are resident,
how to load one, how to unload one and know it is gone:

- **llama-server in router mode**: ``GET /models`` (``status.value``), ``POST /models/load``,
  ``POST /models/unload`` — both asynchronous, so the status is polled;
- **llama-swap**: ``GET /running``, ``POST /api/models/unload/{model}``; a model loads when a
  request names it (``GET /upstream/{model}/health``);
- **LM Studio**: ``GET /api/v1/models`` (``loaded_instances``), ``POST /api/v1/models/load``,
  ``POST /api/v1/models/unload`` (by instance id);
- **vLLM with sleep mode**: its one model sleeps (``POST /sleep``) and wakes (``POST /wake_up``),
  ``GET /is_sleeping`` says which;
- everything else (mlx-lm, llama-cpp-python's server, a one-model llama-server, vLLM without
  sleep mode): **no lifecycle** — the server decides; ai-stack says so and never claims to
  control what is resident. A "load" there is a one-token request, which makes servers that swap
  on request (mlx-lm, llama-cpp-python) load the model then, so its load is timed as a load.

:func:`detect` tells the kind from what the server answers; the config may name it instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ai_stack.backends.base import LoadOptions, ResidentModel
from ai_stack.config import ServerKind
from ai_stack.errors import BackendError, ReplyLimitError

DESCRIPTIONS: dict[ServerKind, str] = {
    "llama-server-router": "llama-server (router)",
    "llama-server": "llama-server (one model)",
    "llama-swap": "llama-swap",
    "lmstudio": "LM Studio",
    "vllm-sleep": "vLLM (sleep mode)",
    "vllm": "vLLM",
    "llama-cpp-python": "llama-cpp-python's server",
    "generic": "an OpenAI-compatible server",
}


PROBE_TIMEOUT_S = 5.0  # a server that accepts a connection and never answers is not waited for


def _json(response: httpx.Response) -> Any:
    """The body of a 200 reply as JSON, or None (LM Studio answers an unknown path with 200 and
    an ``error``, others with 404 or text)."""
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return None if isinstance(body, dict) and "error" in body else body


def detect(http: httpx.Client) -> ServerKind:
    """The kind of server behind ``http`` (its root, without ``/v1``), from the endpoints only
    that kind has. Each probe is a GET that neither loads nor wakes a model."""

    def get(path: str) -> Any:
        try:
            return _json(http.get(path, timeout=PROBE_TIMEOUT_S))
        except (httpx.HTTPError, ReplyLimitError):  # no answer, or one that drips
            return None

    props = get("/props")
    if isinstance(props, dict):
        if props.get("role") == "router":
            return "llama-server-router"
        if "default_generation_settings" in props:
            return "llama-server"
    running = get("/running")
    if isinstance(running, dict) and isinstance(running.get("running"), list):
        return "llama-swap"
    studio = get("/api/v1/models")
    if isinstance(studio, dict) and isinstance(studio.get("models"), list):
        return "lmstudio"
    sleeping = get("/is_sleeping")
    if isinstance(sleeping, dict) and "is_sleeping" in sleeping:
        return "vllm-sleep"
    listed = get("/v1/models")
    owners = {
        entry.get("owned_by")
        for entry in (listed or {}).get("data", [])
        if isinstance(listed, dict) and isinstance(entry, dict)
    }
    if "vllm" in owners:
        return "vllm"
    if "me" in owners:
        return "llama-cpp-python"
    return "generic"


@dataclass
class Lifecycle:
    """No lifecycle: the server decides what is resident (see the module docstring)."""

    backend: str  # the name models are listed under (the endpoint's)
    http: httpx.Client
    warm: Callable[[str], None]  # a one-token request for a model
    poll_s: float = 0.1
    timeout_s: float = 300.0
    sleep: Callable[[float], None] = time.sleep

    controls_residency = False

    def resident(self) -> list[ResidentModel]:
        return []

    def sizes(self) -> dict[str, tuple[int, int | None]]:
        """What the server says of its models: size in bytes and context length, by name."""
        return {}

    def load(self, model: str, options: LoadOptions) -> None:
        self.warm(model)

    def unload(self, model: str) -> None:
        return None

    # -- for the lifecycles that poll ---------------------------------------------------------

    def _until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise BackendError(self.backend, f"{what} did not happen in {self.timeout_s:.0f} s")
            self.sleep(self.poll_s)

    def _names(self) -> set[str]:
        return {model.name for model in self.resident()}

    def _post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(path, json=body) if body is not None else self.http.post(path)


class LlamaServerRouter(Lifecycle):
    """llama-server started without a model: one child process per loaded model."""

    controls_residency = True
    RUNNING = ("loading", "loaded", "sleeping")

    def _models(self) -> list[dict[str, Any]]:
        listed = _json(self.http.get("/models"))
        return [m for m in (listed or {}).get("data", []) if isinstance(m, dict)]

    def resident(self) -> list[ResidentModel]:
        return [
            ResidentModel(
                m["id"], self.backend, int((m.get("meta") or {}).get("size") or 0), _ctx(m)
            )
            for m in self._models()
            if (m.get("status") or {}).get("value") in self.RUNNING
        ]

    def sizes(self) -> dict[str, tuple[int, int | None]]:
        return {
            m["id"]: (
                int((m.get("meta") or {}).get("size") or 0),
                (m.get("meta") or {}).get("n_ctx_train"),
            )
            for m in self._models()
        }

    def load(self, model: str, options: LoadOptions) -> None:
        answer = self._post("/models/load", {"model": model})
        if answer.status_code != 200 and "already running" not in answer.text:
            raise BackendError(self.backend, f"llama-server could not load {model}: {answer.text}")

        def loaded() -> bool:
            status = next((m.get("status") or {} for m in self._models() if m["id"] == model), {})
            if status.get("failed"):
                raise BackendError(self.backend, f"llama-server failed to load {model}")
            return status.get("value") == "loaded"

        self._until(loaded, f"llama-server loading {model}")

    def unload(self, model: str) -> None:
        answer = self._post("/models/unload", {"model": model})
        if answer.status_code != 200 and "not running" not in answer.text:
            raise BackendError(
                self.backend, f"llama-server could not unload {model}: {answer.text}"
            )
        self._until(lambda: model not in self._names(), f"llama-server unloading {model}")


class LlamaSwap(Lifecycle):
    """llama-swap: a model starts when a request names it; stopping one is a call."""

    controls_residency = True

    def resident(self) -> list[ResidentModel]:
        running = _json(self.http.get("/running")) or {}
        return [
            ResidentModel(entry["model"], self.backend, 0)
            for entry in running.get("running", [])
            if entry.get("state") in ("starting", "ready", "stopping")
        ]

    def load(self, model: str, options: LoadOptions) -> None:
        self.http.get(f"/upstream/{quote(model, safe='')}/health")  # starts it, waits for it

        def ready() -> bool:
            running = _json(self.http.get("/running")) or {}
            return any(
                e.get("model") == model and e.get("state") == "ready"
                for e in running.get("running", [])
            )

        self._until(ready, f"llama-swap starting {model}")

    def unload(self, model: str) -> None:
        answer = self._post(f"/api/models/unload/{quote(model, safe='')}")
        if answer.status_code != 200:
            raise BackendError(self.backend, f"llama-swap could not stop {model}: {answer.text}")
        self._until(lambda: model not in self._names(), f"llama-swap stopping {model}")


class LMStudio(Lifecycle):
    """LM Studio's native REST API (0.4+): instances of models, loaded and unloaded by id."""

    controls_residency = True

    def _models(self) -> list[dict[str, Any]]:
        listed = _json(self.http.get("/api/v1/models")) or {}
        return [m for m in listed.get("models", []) if isinstance(m, dict)]

    def resident(self) -> list[ResidentModel]:
        return [
            ResidentModel(
                m["key"],
                self.backend,
                int(m.get("size_bytes") or 0),
                (instance.get("config") or {}).get("context_length"),
            )
            for m in self._models()
            for instance in m.get("loaded_instances") or []
        ]

    def sizes(self) -> dict[str, tuple[int, int | None]]:
        return {
            m["key"]: (int(m.get("size_bytes") or 0), m.get("max_context_length"))
            for m in self._models()
        }

    def load(self, model: str, options: LoadOptions) -> None:
        answer = self._post(
            "/api/v1/models/load", {"model": model, "context_length": options.num_ctx}
        )
        if _json(answer) is None:
            raise BackendError(self.backend, f"LM Studio could not load {model}: {answer.text}")

    def unload(self, model: str) -> None:
        for entry in self._models():
            if entry["key"] != model:
                continue
            for instance in entry.get("loaded_instances") or []:
                self._post("/api/v1/models/unload", {"instance_id": instance["id"]})
        self._until(lambda: model not in self._names(), f"LM Studio unloading {model}")


class VLLMSleep(Lifecycle):
    """vLLM with ``--enable-sleep-mode``: its one model is put to sleep (weights out of the
    GPU, KV cache dropped) and woken."""

    controls_residency = True

    def _served(self) -> list[str]:
        listed = _json(self.http.get("/v1/models")) or {}
        return [entry["id"] for entry in listed.get("data", []) if isinstance(entry, dict)]

    def _sleeping(self) -> bool:
        return bool((_json(self.http.get("/is_sleeping")) or {}).get("is_sleeping"))

    def resident(self) -> list[ResidentModel]:
        if self._sleeping():
            return []
        return [ResidentModel(name, self.backend, 0) for name in self._served()]

    def load(self, model: str, options: LoadOptions) -> None:
        self._post("/wake_up")
        self._until(lambda: not self._sleeping(), "vLLM waking up")

    def unload(self, model: str) -> None:
        self._post("/sleep?level=1")
        self._until(self._sleeping, "vLLM going to sleep")


def _ctx(model: dict[str, Any]) -> int | None:
    args = (model.get("status") or {}).get("args") or []
    for flag in ("-c", "--ctx-size", "-ctx"):
        if flag in args and args.index(flag) + 1 < len(args):
            value = args[args.index(flag) + 1]
            return int(value) if str(value).isdigit() else None
    return None


LIFECYCLES: dict[ServerKind, type[Lifecycle]] = {
    "llama-server-router": LlamaServerRouter,
    "llama-swap": LlamaSwap,
    "lmstudio": LMStudio,
    "vllm-sleep": VLLMSleep,
}


def lifecycle_for(kind: ServerKind) -> type[Lifecycle]:
    """The lifecycle of ``kind`` (servers without one get the no-lifecycle base)."""
    return LIFECYCLES.get(kind, Lifecycle)


__all__ = [
    "DESCRIPTIONS",
    "Lifecycle",
    "detect",
    "lifecycle_for",
]
