"""The text of a PDF, page by page, through pypdf (pure Python; imported on first use).

A PDF is binary to the file-access policy, so it is admitted here instead: its location is
checked like any file's, its bytes are bounded (``MAX_PDF_BYTES``), and the text extracted from
it must pass the policy's text checks and per-file limit before it is indexed. A PDF pypdf
cannot read (damaged, encrypted) is refused with that reason.
"""

from __future__ import annotations

import io
import logging

from ai_stack.errors import FileAccessError

MAX_PDF_BYTES = 64 * 1024 * 1024  # a manual or a paper; past this, a scan or an archive


def pdf_pages(name: str, data: bytes) -> list[str]:
    """The text of each page of the PDF ``data`` (``name`` for messages)."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:  # pragma: no cover - pypdf is a dependency
        raise FileAccessError(name, f"{name} is a PDF, and pypdf is not installed.") from None
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings are not the user's
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise FileAccessError(name, f"{name} is an encrypted PDF.")
        return [page.extract_text() or "" for page in reader.pages]
    except FileAccessError:
        raise
    except PdfReadError as exc:
        raise FileAccessError(name, f"{name} is not a PDF pypdf can read ({exc}).") from None
    except Exception as exc:  # a parser of files from anywhere: any fault means "unreadable"
        raise FileAccessError(
            name, f"{name} is not a PDF pypdf can read ({type(exc).__name__}: {exc})."
        ) from None


__all__ = ["MAX_PDF_BYTES", "pdf_pages"]
