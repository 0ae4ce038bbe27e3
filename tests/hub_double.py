"""A local HTTP server that speaks the part of the Hugging Face Hub's API a GGUF pull uses, so
``huggingface_hub`` itself runs against it (``HF_ENDPOINT``): the model-info call with file
sizes and sha256 sums, and HEAD/GET of ``/{repo}/resolve/{revision}/{file}`` with ranges.

Faults on demand: a repo that is gated (401, ``X-Error-Code: GatedRepo``), one that does not
exist (404, ``RepoNotFound``), a download cut after N bytes, a wrong sha256 in the record, and
an endpoint that is no Hub at all (``html``: every request answered 200 with a web page, as a
login portal, a proxy or a mistyped ``HF_ENDPOINT`` does).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubDouble:
    files: dict[str, dict[str, Path]] = field(default_factory=dict)  # repo -> name -> file
    gated: set[str] = field(default_factory=set)
    wrong_sha: set[str] = field(default_factory=set)  # file names recorded with a wrong sum
    cut_after: int | None = None  # the first download of a file stops after this many bytes
    html: bool = False  # answer every request with a web page
    requests: list[dict[str, Any]] = field(default_factory=list)
    host: str = ""
    _sums: dict[Path, str] = field(default_factory=dict)

    def sha256(self, path: Path) -> str:
        if path not in self._sums:
            self._sums[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._sums[path]

    @contextmanager
    def start(self) -> Iterator[HubDouble]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self.host = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def _handler(hub: HubDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, *, body: bool) -> None:
            path = self.path.split("?")[0]
            hub.requests.append(
                {"method": self.command, "path": path, "range": self.headers.get("Range")}
            )
            if hub.html:
                return self._page(body=body)
            info = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path)
            repo = (info or resolve).group(1) if (info or resolve) else None
            if repo is None or repo not in hub.files:
                return self._error(404, "RepoNotFound", "Repository not found")
            if repo in hub.gated:
                return self._error(401, "GatedRepo", "Access to this model is restricted")
            if info:
                return self._json(
                    {
                        "id": repo,
                        "modelId": repo,
                        "sha": COMMIT,
                        "siblings": [
                            {
                                "rfilename": name,
                                "size": file.stat().st_size,
                                "lfs": {
                                    "sha256": "0" * 64
                                    if name in hub.wrong_sha
                                    else hub.sha256(file),
                                    "size": file.stat().st_size,
                                    "pointerSize": 134,
                                },
                            }
                            for name, file in hub.files[repo].items()
                        ],
                    }
                )
            assert resolve is not None
            name = resolve.group(2)
            file = hub.files[repo].get(name)
            if file is None:
                return self._error(404, "EntryNotFound", "Entry not found")
            self._file(file, body=body)

        def _file(self, file: Path, *, body: bool) -> None:
            size = file.stat().st_size
            start = 0
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if wanted:
                start = int(wanted.group(1))
            self.send_response(206 if wanted else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hub.sha256(file)}"')
            self.send_header("X-Linked-Etag", f'"{hub.sha256(file)}"')
            self.send_header("X-Linked-Size", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(size - start))
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if not body:
                return
            with file.open("rb") as handle:
                handle.seek(start)
                sent = start
                cut, hub.cut_after = hub.cut_after, None
                while chunk := handle.read(1 << 20):
                    if cut is not None and sent + len(chunk) > cut:
                        self.wfile.write(chunk[: max(cut - sent, 0)])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)  # the transfer is cut mid-file
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)

        def _page(self, *, body: bool) -> None:
            payload = b"<!doctype html><html><body><h1>Sign in to continue</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def _json(self, data: dict[str, Any]) -> None:
            payload = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _error(self, status: int, code: str, message: str) -> None:
            payload = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    return Handler
