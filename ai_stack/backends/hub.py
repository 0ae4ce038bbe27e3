"""GGUF files from the Hugging Face Hub, for the embedded backend: ``hf:OWNER/REPO[:QUANT]`` or
``hf:OWNER/REPO/FILE.gguf``.

Downloads go through ``huggingface_hub`` — the Hub's own client: its cache (``HF_HOME``,
``HF_HUB_CACHE``), resumable transfers, ``HF_ENDPOINT`` and ``HF_TOKEN`` — read when a pull
starts, not when the module is imported. The file's sha256 is checked against the Hub's record
of it before the model is registered; a file that does not match is deleted, never registered.
Every failure the Hub or the network can cause becomes one :class:`AiStackError`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai_stack.errors import BackendError, BackendUnavailableError, ModelNotFoundError, UsageError

PREFIX = "hf:"
# The Hub's rule for OWNER and REPO: letters, digits, - _ . (not first or last: - .)
REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
HF_DEFAULT = "https://huggingface.co"
Report = Callable[[int, int | None], None]  # bytes done, total


@dataclass(frozen=True)
class HubRef:
    """What ``hf:OWNER/REPO[:QUANT | /FILE.gguf]`` names."""

    repo: str
    quant: str | None = None
    filename: str | None = None

    @classmethod
    def parse(cls, text: str) -> HubRef:
        """
        >>> HubRef.parse("hf:bartowski/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M")
        HubRef(repo='bartowski/Qwen2.5-Coder-7B-Instruct-GGUF', quant='Q4_K_M', filename=None)
        >>> HubRef.parse("hf:Qwen/Qwen2-GGUF/qwen2-q8_0.gguf").filename
        'qwen2-q8_0.gguf'
        >>> HubRef.parse("hf:a b/c")
        Traceback (most recent call last):
        ai_stack.errors.UsageError: 'hf:a b/c' is not a Hugging Face model reference.
        """
        body = text.removeprefix(PREFIX).strip()
        body, _, quant = body.partition(":")
        parts = body.split("/")
        if len(parts) < 2 or not all(map(REPO_PART.fullmatch, parts[:2])) or len(body) > 200:
            raise UsageError(
                f"{text!r} is not a Hugging Face model reference.",
                hint="Use hf:OWNER/REPO, hf:OWNER/REPO:QUANT (e.g. :Q4_K_M) or "
                "hf:OWNER/REPO/FILE.gguf",
            )
        filename = "/".join(parts[2:]) or None
        if filename is not None and not filename.lower().endswith(".gguf"):
            raise UsageError(f"{filename} is not a .gguf file.")
        return cls("/".join(parts[:2]), quant.strip() or None, filename)


@dataclass(frozen=True)
class HubFile:
    """One GGUF file in a repo, as the Hub records it."""

    repo: str
    filename: str
    size: int | None
    sha256: str | None
    revision: str | None


def short_name(repo: str, filename: str, quant: str | None) -> str:
    """The ``embedded:NAME`` a pulled file is registered as: the repo's name without its
    ``-GGUF`` and ``-Instruct`` parts, lower case (with the quantization when one was asked
    for that is not the usual Q4_K_M).

    >>> short_name("bartowski/Qwen2.5-Coder-7B-Instruct-GGUF", "x.gguf", "Q4_K_M")
    'qwen2.5-coder-7b'
    >>> short_name("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "x.gguf", "q8_0")
    'qwen2.5-coder-1.5b-q8_0'
    """
    name = repo.split("/")[-1]
    name = re.sub(r"[-_.]gguf$", "", name, flags=re.IGNORECASE)
    name = re.sub(r"[-_]instruct$", "", name, flags=re.IGNORECASE).lower()
    if quant and quant.upper() != "Q4_K_M":
        name += f"-{quant.lower()}"
    return re.sub(r"[^a-z0-9_.-]", "-", name)


def choose(ref: HubRef, files: list[HubFile]) -> HubFile:
    """The file ``ref`` names among a repo's GGUF files; an error listing them otherwise."""
    ggufs = [f for f in files if f.filename.lower().endswith(".gguf")]
    available = ", ".join(sorted(_quant_of(f.filename) or f.filename for f in ggufs)) or "none"
    if ref.filename is not None:
        for file in ggufs:
            if file.filename == ref.filename:
                return file
        raise ModelNotFoundError(
            f"{PREFIX}{ref.repo}/{ref.filename}",
            f"{ref.repo} has no file {ref.filename}.",
            hint=f"Its GGUF files: {available}.",
        )
    whole = [f for f in ggufs if not re.search(r"-\d{5}-of-\d{5}\.gguf$", f.filename)]
    if ref.quant is None:
        if len(whole) == 1:
            return whole[0]
        raise UsageError(
            f"{ref.repo} has several GGUF files; say which quantization.",
            hint=f"Add one of: {available} (e.g. hf:{ref.repo}:Q4_K_M).",
        )
    wanted = ref.quant.lower()
    matches = [f for f in whole if (_quant_of(f.filename) or "").lower() == wanted]
    if len(matches) == 1:
        return matches[0]
    if not matches and any((_quant_of(f.filename) or "").lower() == wanted for f in ggufs):
        raise UsageError(
            f"{ref.repo}'s {ref.quant} file is split in parts, which ai-stack does not join.",
            hint="Choose another quantization, or another repo with the file whole.",
        )
    raise ModelNotFoundError(
        f"{PREFIX}{ref.repo}:{ref.quant}",
        f"{ref.repo} has no {ref.quant} file."
        if not matches
        else f"{ref.repo} has several {ref.quant} files: {', '.join(f.filename for f in matches)}.",
        hint=f"Its GGUF files: {available}."
        if not matches
        else f"Name one: hf:{ref.repo}/{matches[0].filename}",
    )


def _quant_of(filename: str) -> str | None:
    """
    >>> _quant_of("Qwen2.5-Coder-7B-Instruct-Q4_K_M.gguf"), _quant_of("model-f16.gguf")
    ('Q4_K_M', 'f16')
    """
    found = re.search(
        r"(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?:-\d{5}-of-\d{5})?\.gguf$",
        filename,
        flags=re.IGNORECASE,
    )
    return found.group(1) if found else None


class Hub:
    """The Hugging Face Hub as the environment configures it, when a pull starts."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self.endpoint = (env.get("HF_ENDPOINT") or HF_DEFAULT).rstrip("/")
        self.token = env.get("HF_TOKEN") or None
        home = Path(env.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()
        self.cache_dir = Path(env.get("HF_HUB_CACHE") or home / "hub").expanduser()

    def files(self, ref: HubRef) -> list[HubFile]:
        """The repo's files with the sizes and sha256 sums the Hub records."""
        from huggingface_hub import HfApi

        with self._errors(ref.repo):
            info = HfApi(endpoint=self.endpoint, token=self.token).model_info(
                ref.repo, files_metadata=True
            )
        return [
            HubFile(
                ref.repo,
                sibling.rfilename,
                sibling.lfs.size if sibling.lfs else sibling.size,
                sibling.lfs.sha256 if sibling.lfs else None,
                info.sha,
            )
            for sibling in info.siblings or []
        ]

    def download(self, file: HubFile, report: Report) -> Path:
        """The file in the Hub cache (resuming a cut download), its sha256 checked."""
        from huggingface_hub import hf_hub_download
        from tqdm.auto import tqdm

        class DownloadBar(tqdm):
            """The Hub client's progress bar, turned into calls of ``report``."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)
                self.done = int(kwargs.get("initial") or 0)
                self.size = kwargs.get("total")
                report(self.done, self.size)

            def update(self, n: float | None = 1) -> bool | None:
                self.done += int(n or 0)
                report(self.done, self.size)
                return None

        with self._errors(file.repo, file.filename):
            path = Path(
                hf_hub_download(
                    file.repo,
                    file.filename,
                    revision=file.revision,
                    cache_dir=self.cache_dir,
                    endpoint=self.endpoint,
                    token=self.token,
                    tqdm_class=DownloadBar,
                )
            )
        if file.sha256 is not None:
            found = sha256_of(path)
            if found != file.sha256:
                blob = path.resolve()
                path.unlink(missing_ok=True)
                blob.unlink(missing_ok=True)
                raise BackendError(
                    "embedded",
                    f"The downloaded {file.filename} does not match the Hub's checksum "
                    f"(sha256 {found[:12]}… instead of {file.sha256[:12]}…); it was deleted "
                    "and nothing was registered.",
                    hint="Pull again; if it happens again, the file or a proxy is at fault.",
                )
        return path

    def _errors(self, repo: str, filename: str | None = None) -> _HubErrors:
        return _HubErrors(self, repo, filename)


class _HubErrors:
    """Turns what the Hub client raises into one clear AiStackError."""

    def __init__(self, hub: Hub, repo: str, filename: str | None) -> None:
        self.hub, self.repo, self.filename = hub, repo, filename

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> None:
        if error is None or not isinstance(error, Exception):
            return
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        what = self.repo if self.filename is None else f"{self.repo}/{self.filename}"
        token = "HF_TOKEN is set" if self.hub.token else "no HF_TOKEN is set"
        if isinstance(error, GatedRepoError):
            raise BackendError(
                "embedded",
                f"{self.repo} is gated: the Hub wants an accepted licence and a token ({token}).",
                hint=f"Accept its terms at {self.hub.endpoint}/{self.repo}, then set HF_TOKEN "
                "to a token of yours (https://huggingface.co/settings/tokens).",
            ) from None
        if isinstance(error, RepositoryNotFoundError):
            raise ModelNotFoundError(
                f"{PREFIX}{self.repo}",
                f"No model repo {self.repo} on {self.hub.endpoint} (or it is private and {token}).",
                hint="Check the name (OWNER/REPO, as in its URL).",
            ) from None
        if isinstance(error, (EntryNotFoundError, RevisionNotFoundError)):
            raise ModelNotFoundError(f"{PREFIX}{what}", f"{what} is not on the Hub.") from None
        if isinstance(error, LocalEntryNotFoundError) or _is_connection(error):
            raise BackendUnavailableError(
                "embedded",
                f"Cannot reach the Hugging Face Hub at {self.hub.endpoint} to get {what}.",
                hint="Check the connection (or HF_ENDPOINT); a cut download resumes when you "
                "pull again.",
            ) from None
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise BackendError(
                "embedded",
                f"The disk is full: {what} does not fit in {self.hub.cache_dir}.",
                hint="Free some space (or point HF_HOME elsewhere) and pull again: it resumes.",
            ) from None
        if isinstance(error, HfHubHTTPError):
            status = error.response.status_code if error.response is not None else "?"
            raise BackendError(
                "embedded",
                f"The Hub answered {status} for {what}.",
                hint="Try again later; a cut download resumes.",
            ) from None
        if isinstance(error, (ValueError, KeyError, TypeError)):  # a reply not in its format
            raise BackendError(
                "embedded",
                f"The server at {self.hub.endpoint} does not answer like the Hugging Face Hub "
                f"(its reply about {what} is not the Hub's JSON).",
                hint="Check HF_ENDPOINT (unset, it is https://huggingface.co); a login page or "
                "a proxy may be answering instead.",
            ) from None


def _is_connection(error: BaseException) -> bool:
    """A network failure, from whichever HTTP client the Hub library uses (httpx; 2.x: its
    fork httpx2), or the OS."""
    names = {kind.__name__ for kind in type(error).__mro__}
    return bool(names & {"TransportError", "NetworkError", "TimeoutException"}) or isinstance(
        error, (ConnectionError, TimeoutError)
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(hub: Hub, file: HubFile) -> Generator[tuple[int, int | None], None, Path]:
    """Download ``file`` in a worker thread, yielding (bytes done, total) as it goes; returns
    its local path (``StopIteration.value``). A Ctrl-C stops waiting at once; the transfer left
    behind resumes at the next pull."""
    state: dict[str, Any] = {"done": 0, "total": file.size}

    def report(done: int, total: int | None) -> None:
        state["done"], state["total"] = done, total or state["total"]

    def work() -> None:
        try:
            state["path"] = hub.download(file, report)
        except BaseException as exc:  # handed to the waiting thread
            state["error"] = exc

    worker = threading.Thread(target=work, name="hub-download", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
        yield state["done"], state["total"]
    if "error" in state:
        raise state["error"]
    path: Path = state["path"]
    return path


__all__ = ["Hub", "HubFile", "HubRef", "choose", "fetch", "sha256_of", "short_name"]
