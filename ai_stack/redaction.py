"""Credentials out of every stored copy: the history, batch result files, eval reports.

The rules are data — ``Rule(name, pattern, replacement, clues)`` — documented in
docs/history.md (keep the two in step). A replacement keeps what identifies the secret
(``password=``, the URL's user) and drops the value.

Every stored copy is bounded first (``STORED_CHARS``; past it the text is cut with a note), and
every rule runs in time linear in the text: a quantifier that could restart at each character
of a long run is anchored at the run's start or bounded, so no input (a 50 MB line of ``curl``
or of dots) makes a rule backtrack over what it has already scanned. tests/test_redaction.py
holds the corpus of shapes, both ways, and the adversarial inputs.

Why not the ``detect-secrets`` library: its detectors were the checklist for these rules (the
provider token shapes, private keys, keywords), but its entropy detectors would redact ordinary
base64 and hex in answers (hashes, test data), its keyword detector is tuned to assignments in
source files rather than prose ("my password is ..."), and it brings a scanning framework with
global settings for what is, here, a list of patterns applied to strings. Measured again for
issue 32 (detect-secrets 1.5.0, its 27 plugins' ``analyze_line`` over 1 MB of prose and code, line
by line): about ten times as long as these rules, and none of its plugins flags 9 of the 15
shapes in that issue's corpus (Slack ``xapp-``, Shopify, Mailgun, Discord webhooks, Azure SAS
``sig=``, docker's ``"auth"``, ``Authorization: Token``, a URL password holding ``/``).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

REDACTED = "[redacted]"


class Rule(NamedTuple):
    """One kind of credential: its pattern, what replaces a match, and its clues — strings (in
    :meth:`str.casefold` form) at least one of which every match contains, so a text holding
    none skips the rule: on ordinary prose the rules' work falls to a fifth. ``None``: no such
    string, always run."""

    name: str
    pattern: re.Pattern[str]
    replacement: str
    clues: tuple[str, ...] | None


# A URL's password ends at the last "@" that a host follows (it may hold "@" and "/");
# "host:8080/path" is a port, not a password.
URL_PASSWORD = re.compile(
    r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]{0,30}://[^\s:/@?#]{1,200}):"
    r"(?![0-9]{1,5}(?:[/?#\s]|$))[^\s?#]{1,256}?"
    r"@(?=[a-z0-9\[][a-z0-9.\-\[\]:%]{0,253}(?:[/?#\s\"'<>),;\]]|$))"
)

RULES: list[Rule] = [
    Rule(
        "private key blocks",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.S,
        ),
        REDACTED,
        ("-----begin ",),
    ),
    Rule(
        "OpenAI/Anthropic-style keys",
        re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"),
        REDACTED,
        ("sk-",),
    ),
    Rule(
        "GitHub tokens",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
        REDACTED,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Rule("GitLab tokens", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"), REDACTED, ("glpat-",)),
    Rule(
        "AWS access key ids",
        re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        REDACTED,
        ("akia", "asia"),
    ),
    Rule("Google API keys", re.compile(r"\bAIza[A-Za-z0-9_\-]{35}\b"), REDACTED, ("aiza",)),
    Rule(
        "Slack tokens",
        re.compile(r"\b(?:xox[abposre]|xapp|xoxe\.xox[bp])-[A-Za-z0-9\-]{10,}"),
        REDACTED,
        ("xox", "xapp-"),
    ),
    Rule("Hugging Face tokens", re.compile(r"\bhf_[A-Za-z0-9]{30,}"), REDACTED, ("hf_",)),
    Rule("Stripe keys", re.compile(r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}"), REDACTED, ("_live_",)),
    Rule(
        "npm and PyPI tokens",
        re.compile(r"\b(?:npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_\-]{50,})"),
        REDACTED,
        ("npm_", "pypi-"),
    ),
    Rule("SendGrid keys", re.compile(r"\bSG\.[\w\-]{22}\.[\w\-]{43}"), REDACTED, ("sg.",)),
    Rule(
        "Twilio API keys and account ids",
        re.compile(r"\b(?:SK|AC)[0-9a-f]{32}\b"),
        REDACTED,
        ("sk", "ac"),
    ),
    Rule(
        "Telegram bot tokens",
        re.compile(r"(?<![0-9])[0-9]{8,10}:[A-Za-z0-9_\-]{35}(?![A-Za-z0-9_\-])"),
        REDACTED,
        (":",),
    ),
    Rule(
        "Discord bot tokens",
        re.compile(r"\b[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,}"),
        REDACTED,
        (".",),
    ),
    Rule(
        "Mailgun keys",
        re.compile(r"\b(?:key-[0-9a-zA-Z]{32}|[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8})\b"),
        REDACTED,
        ("key-", "-"),
    ),
    Rule(
        "Shopify tokens",
        re.compile(r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b"),
        REDACTED,
        ("shpat_", "shpca_", "shppa_", "shpss_"),
    ),
    Rule(
        "AWS secret access keys",  # 40 characters of base64 with upper, lower and digits
        re.compile(
            r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
            r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
        ),
        REDACTED,
        None,
    ),
    Rule(
        "JSON web tokens",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
        REDACTED,
        ("eyj",),
    ),
    Rule(
        "bearer tokens",
        re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]{12,}=*"),
        rf"\1 {REDACTED}",
        ("bearer",),
    ),
    Rule(
        "basic authorization headers",
        re.compile(r"(?i)\b(authorization:\s*basic\s+)[A-Za-z0-9+/]{8,}=*"),
        rf"\1{REDACTED}",
        ("authorization",),
    ),
    Rule(
        "authorization headers of any scheme (Token, Bot, ApiKey, none)",
        re.compile(
            r"(?i)\b((?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?"
            r"(?:[a-z][a-z0-9_\-]{0,20}[ \t]+)?)(?=[^\s\"',;]{0,200}?[0-9])"
            r"[A-Za-z0-9._~+/=:\-]{8,}"
        ),
        rf"\1{REDACTED}",
        ("authorization",),
    ),
    Rule(
        "Slack webhook URLs",
        re.compile(r"(https://hooks\.slack\.com/(?:services|workflows)/)[A-Za-z0-9/_\-]+"),
        rf"\1{REDACTED}",
        ("https://hooks.slack.com/",),
    ),
    Rule(
        "Discord webhook URLs",
        re.compile(
            r"(https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/[0-9]+/)"
            r"[A-Za-z0-9_\-]+"
        ),
        rf"\1{REDACTED}",
        ("/api/webhooks/",),
    ),
    Rule(
        "Azure storage and service bus keys",
        re.compile(r"(?i)\b((?:Account|SharedAccess)Key\s*=\s*)[^;\s\"']+"),
        rf"\1{REDACTED}",
        ("key",),
    ),
    Rule(
        "Azure shared access signatures (sig= in a SAS URL or token)",
        re.compile(r"(?i)([?&]sig=)[^&\s\"'#<>]{8,}"),
        rf"\1{REDACTED}",
        ("sig=",),
    ),
    Rule(
        'quoted password/secret/token keys (JSON, YAML, dicts; docker\'s "auth")',
        re.compile(
            r"(?i)([\"'])(\w{0,64}?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key"
            r"|private[_-]?key|credentials?|passphrase)\w{0,64}|auth)\1(\s*[:=]\s*)([\"'])"
            r"(?:\\.|(?!\4)[^\\\n])*\4"
        ),
        rf"\1\2\1\3\4{REDACTED}\4",
        ("pass", "pwd", "secret", "token", "key", "credential", "auth"),
    ),
    Rule(
        "password options (--password x, --password=x, --passwd, --token, --api-key)",
        re.compile(
            r"(?i)(--(?:password|passwd|pass|passphrase|token|secret|api[-_]key|access[-_]key)"
            r"(?:=|\s+))(?!-)(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
        ),
        rf"\1{REDACTED}",
        ("--",),
    ),
    Rule(
        "credentials of common commands (curl -u, sshpass -p, docker login -p, redis-cli -a)",
        re.compile(
            r"\b((?:curl\b[^\n]{0,200}?\s(?:-u|--user)\s*[^\s:]{1,100}:(?!//)"
            r"|sshpass\b[^\n]{0,200}?\s-p\s*"
            r"|docker\s+login\b[^\n]{0,200}?\s-p\s*"
            r"|redis-cli\b[^\n]{0,200}?\s-a\s+))[^\s'\"]+"
        ),
        rf"\1{REDACTED}",
        ("curl", "sshpass", "docker", "redis-cli"),
    ),
    Rule(
        "netrc passwords (machine HOST login USER password SECRET)",
        re.compile(
            r"(?im)((?:\bmachine\s+\S+(?:\s+login\s+\S+)?\s+|^[ \t]*)password\s+)(?!is\b|was\b)\S+"
        ),
        rf"\1{REDACTED}",
        ("password",),
    ),
    Rule(
        "command-line passwords (mysql -pSECRET)",
        re.compile(r"\b((?:mysql|mysqldump|mysqladmin|mariadb)\b[^\n]{0,200}?\s-p)(?!\s)[^\s'\"]+"),
        rf"\1{REDACTED}",
        ("mysql", "mariadb"),
    ),
    Rule(
        "passwords in prose (my password is ...)",
        re.compile(
            r"(?i)\b((?:password|passphrase|passwd|pin code|secret)(?:\s+for\s+[^\n.]{1,40}?)?"
            r"\s+(?:is|was|=)\s+)([\"']?)(?=[^\s\"']*[0-9@#$%^&*_!\-])[^\s\"',;]+\2"
        ),
        rf"\1{REDACTED}",
        ("pass", "secret", "pin code"),
    ),
    Rule(
        "password/secret/token/api key assignments",
        # The match starts at the keyword (what precedes it in the name, DB_ of DB_PASSWORD,
        # stays as it is), and the lookahead lets the engine skip to the letters a keyword
        # starts with: a name's start found by \b and a lazy scan cost ten times as much.
        re.compile(
            r"(?i)(?=[psta_])((?:pass(?:word|wd|phrase)|pwd|secret|token|api[_-]?key"
            r"|access[_-]?key)[A-Za-z_]{0,64}|(?<=[A-Za-z0-9])_pass)(\s*[:=]\s*)"
            r"(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
        ),
        rf"\1\2{REDACTED}",
        ("pass", "pwd", "secret", "token", "key"),
    ),
    Rule("credentials in URLs", URL_PASSWORD, rf"\1:{REDACTED}@", ("://",)),
]


STORED_CHARS = 4 * 1024 * 1024
"""The most of one text a stored copy keeps: twice what the default file limits let into a run
(``files.max_total_kb``), so an ordinary run is kept whole, while a 50 MB reply or file costs
the history 4 MB and its redaction seconds rather than minutes."""


def bounded(text: str, limit: int = STORED_CHARS) -> str:
    """``text`` cut to about ``limit`` characters, with a note saying how much was cut.

    The cut falls on whitespace near the limit where there is some, so it does not leave the
    head of a token too short for its rule to recognise.

    >>> bounded("short text", 100)
    'short text'
    >>> bounded("one two three four", 9)
    'one two\\n[... 11 characters cut: a stored copy keeps at most 9]'
    """
    if len(text) <= limit:
        return text
    near = limit - min(4096, limit // 2)  # how far back the cut may move
    space = max(text.rfind(c, near, limit) for c in " \t\n")
    head = text[: space if space > 0 else near]
    cut = len(text) - len(head)
    return f"{head}\n[... {cut:,} characters cut: a stored copy keeps at most {limit:,}]"


def redact(text: str | None, *, limit: int | None = STORED_CHARS) -> str | None:
    """Replace obvious credentials with ``[redacted]``, in a copy bounded to ``limit``
    characters (:func:`bounded`; ``None``: the whole text, for a copy that is not stored).

    >>> redact("export OPENAI_API_KEY=sk-abcdefghijklmnopqrstuv and password: hunter2")
    'export OPENAI_API_KEY=[redacted] and password: [redacted]'
    >>> redact("curl -H 'Authorization: Bearer abcdef1234567890xyz' https://u:p4ss@host/x")
    "curl -H 'Authorization: Bearer [redacted]' https://u:[redacted]@host/x"
    """
    if not text:
        return text
    if limit is not None:
        text = bounded(text, limit)
    lowered = text.casefold()  # the long s and the Kelvin sign match s and k under (?i)
    for rule in RULES:
        if rule.clues is None or any(clue in lowered for clue in rule.clues):
            text = rule.pattern.sub(rule.replacement, text)
    return text


def redact_all(value: Any, *, limit: int | None = STORED_CHARS) -> Any:
    """:func:`redact` every string inside a JSON-like value (before it is serialised, so a rule
    can never eat a quote and break the JSON), each bounded to ``limit``."""
    if isinstance(value, str):
        return redact(value, limit=limit)
    if isinstance(value, list):
        return [redact_all(item, limit=limit) for item in value]
    if isinstance(value, dict):
        return {key: redact_all(item, limit=limit) for key, item in value.items()}
    return value


def without_password(url: str) -> str:
    """``url`` as it may be shown or stored: the password of its user part replaced (the
    user kept, so it still says which account).

    >>> without_password("http://apiuser:S3cret/PW@127.0.0.1:8080/v1")
    'http://apiuser:[redacted]@127.0.0.1:8080/v1'
    >>> without_password("http://127.0.0.1:8080/v1/a@b")
    'http://127.0.0.1:8080/v1/a@b'
    """
    return URL_PASSWORD.sub(rf"\1:{REDACTED}@", url)


__all__ = [
    "REDACTED",
    "RULES",
    "STORED_CHARS",
    "bounded",
    "redact",
    "redact_all",
    "without_password",
]
