"""Credentials out of every stored copy: the history, batch result files, eval reports.

The rules are data — ``(name, pattern, replacement)`` — documented in docs/history.md (keep the
two in step). A replacement keeps what identifies the secret (``password=``, the URL's user) and
drops the value.

Why not the ``detect-secrets`` library: its detectors were the checklist for these rules (the
provider token shapes, private keys, keywords), but its entropy detectors would redact ordinary
base64 and hex in answers (hashes, test data), its keyword detector is tuned to assignments in
source files rather than prose ("my password is ..."), and it brings a scanning framework with
global settings for what is, here, a list of patterns applied to strings.
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
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
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
    ("Stripe keys", re.compile(r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}"), REDACTED),
    (
        "npm and PyPI tokens",
        re.compile(r"\b(?:npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_\-]{50,})"),
        REDACTED,
    ),
    ("SendGrid keys", re.compile(r"\bSG\.[\w\-]{22}\.[\w\-]{43}"), REDACTED),
    (
        "AWS secret access keys",  # 40 characters of base64 with upper, lower and digits
        re.compile(
            r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
            r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
        ),
        REDACTED,
    ),
    (
        "JSON web tokens",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
        REDACTED,
    ),
    ("bearer tokens", re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]{12,}=*"), rf"\1 {REDACTED}"),
    (
        "basic authorization headers",
        re.compile(r"(?i)\b(authorization:\s*basic\s+)[A-Za-z0-9+/]{8,}=*"),
        rf"\1{REDACTED}",
    ),
    (
        "Slack webhook URLs",
        re.compile(r"(https://hooks\.slack\.com/(?:services|workflows)/)[A-Za-z0-9/_\-]+"),
        rf"\1{REDACTED}",
    ),
    (
        "Azure storage and service bus keys",
        re.compile(r"(?i)\b((?:Account|SharedAccess)Key\s*=\s*)[^;\s\"']+"),
        rf"\1{REDACTED}",
    ),
    (
        "quoted password/secret/token keys (JSON, YAML, dicts)",
        re.compile(
            r"(?i)([\"'])(\w*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key"
            r"|private[_-]?key|credentials?|passphrase)\w*)\1(\s*[:=]\s*)([\"'])"
            r"(?:\\.|(?!\4).)*\4"
        ),
        rf"\1\2\1\3\4{REDACTED}\4",
    ),
    (
        "password options (--password x, --password=x, --passwd, --token, --api-key)",
        re.compile(
            r"(?i)(--(?:password|passwd|pass|passphrase|token|secret|api[-_]key|access[-_]key)"
            r"(?:=|\s+))(?!-)(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
        ),
        rf"\1{REDACTED}",
    ),
    (
        "credentials of common commands (curl -u, sshpass -p, docker login -p, redis-cli -a)",
        re.compile(
            r"\b((?:curl\b[^\n]*?\s(?:-u|--user)\s*[^\s:]+:(?!//)"
            r"|sshpass\b[^\n]*?\s-p\s*"
            r"|docker\s+login\b[^\n]*?\s-p\s*"
            r"|redis-cli\b[^\n]*?\s-a\s+))[^\s'\"]+"
        ),
        rf"\1{REDACTED}",
    ),
    (
        "netrc passwords (machine HOST login USER password SECRET)",
        re.compile(
            r"(?im)((?:\bmachine\s+\S+(?:\s+login\s+\S+)?\s+|^\s*)password\s+)(?!is\b|was\b)\S+"
        ),
        rf"\1{REDACTED}",
    ),
    (
        "command-line passwords (mysql -pSECRET)",
        re.compile(r"\b((?:mysql|mysqldump|mysqladmin|mariadb)\b[^\n]*?\s-p)(?!\s)[^\s'\"]+"),
        rf"\1{REDACTED}",
    ),
    (
        "passwords in prose (my password is ...)",
        re.compile(
            r"(?i)\b((?:password|passphrase|passwd|pin code|secret)(?:\s+for\s+[^\n.]{1,40}?)?"
            r"\s+(?:is|was|=)\s+)([\"']?)(?=[^\s\"']*[0-9@#$%^&*_!\-])[^\s\"',;]+\2"
        ),
        rf"\1{REDACTED}",
    ),
    (
        "password/secret/token/api key assignments",
        re.compile(
            r"(?i)\b([A-Za-z_]*(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key"
            r"|access[_-]?key)[A-Za-z_]*|(?:[A-Za-z0-9]+_)+pass)(\s*[:=]\s*)"
            r"(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
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
