"""Credentials out of every stored copy: the history, batch result files, eval reports.

The rules are data — ``(name, pattern, replacement)`` — documented in docs/history.md (keep the
two in step). A replacement keeps what identifies the secret (``password=``, the URL's user) and
drops the value.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

Rule = tuple[str, re.Pattern[str], str]

RULES: list[Rule] = [
    (
        "private key blocks",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
        REDACTED,
    ),
    (
        "OpenAI/Anthropic-style keys",
        re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"),
        REDACTED,
    ),
    (
        "GitHub tokens",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
        REDACTED,
    ),
    ("GitLab tokens", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"), REDACTED),
    ("AWS access key ids", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    ("Google API keys", re.compile(r"\bAIza[A-Za-z0-9_\-]{35}\b"), REDACTED),
    ("Slack tokens", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), REDACTED),
    ("Hugging Face tokens", re.compile(r"\bhf_[A-Za-z0-9]{30,}"), REDACTED),
    (
        "JSON web tokens",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
        REDACTED,
    ),
    ("bearer tokens", re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]{12,}=*"), rf"\1 {REDACTED}"),
    (
        "password/secret/token/api key assignments",
        re.compile(
            r"(?i)\b([A-Za-z_]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)"
            r"[A-Za-z_]*)(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
        ),
        rf"\1\2{REDACTED}",
    ),
    (
        "credentials in URLs",
        re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+):[^\s@/]+@"),
        rf"\1:{REDACTED}@",
    ),
]


def redact(text: str | None) -> str | None:
    """Replace obvious credentials with ``[redacted]``.

    >>> redact("export OPENAI_API_KEY=sk-abcdefghijklmnopqrstuv and password: hunter2")
    'export OPENAI_API_KEY=[redacted] and password: [redacted]'
    >>> redact("curl -H 'Authorization: Bearer abcdef1234567890xyz' https://u:p4ss@host/x")
    "curl -H 'Authorization: Bearer [redacted]' https://u:[redacted]@host/x"
    """
    if not text:
        return text
    for _, pattern, replacement in RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_all(value: Any) -> Any:
    """:func:`redact` every string inside a JSON-like value (before it is serialised, so a rule
    can never eat a quote and break the JSON)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_all(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    return value


__all__ = ["REDACTED", "RULES", "redact", "redact_all"]
