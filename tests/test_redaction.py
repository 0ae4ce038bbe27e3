"""Redaction: each rule removes its kind of credential, and ordinary text is left alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ai_stack.redaction import STORED_CHARS, bounded, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("key sk-proj-abcdefghijklmnopqrstuvwx1234", "sk-proj-abcdefghijklmnopqrstuvwx1234"),
        (
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        ("gitlab glpat-abcdefghij0123456789xyz", "glpat-abcdefghij0123456789xyz"),
        ("aws AKIAABCDEFGHIJKLMNOP here", "AKIAABCDEFGHIJKLMNOP"),
        (
            "google AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        ),
        ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
        ("hf hf_abcdefghijklmnopqrstuvwxyzABCDEF", "hf_abcdefghijklmnopqrstuvwxyzABCDEF"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.abcdefghijklmnop", "eyJhbGciOiJIUzI1NiJ9"),
        ("Authorization: Bearer abc.def-ghi_jkl012345", "abc.def-ghi_jkl012345"),
        ('DB_PASSWORD="correct horse battery"', "correct horse battery"),
        ("api_key: 12345abcde", "12345abcde"),
        ("client_secret=s3cr3t;", "s3cr3t"),
        ("postgres://admin:hunter22@db.local/app", "hunter22"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
            "MIIEowIBAAKCAQEA",
        ),
        ('{"password": "hunter2", "user": "ann"}', "hunter2"),
        ("{'api_key': 'xyz123abc'}", "xyz123abc"),
        ('db:\n  "secret": "s3cr3t-value"', "s3cr3t-value"),
        ("mysql -u root -pS3cr3tPass mydb", "S3cr3tPass"),
        ("mysqldump --user=app -pletmein99 shop", "letmein99"),
        ("my password is hunter2 so log in", "hunter2"),
        ("the passphrase was Tr0ub4dor&3", "Tr0ub4dor&3"),
        (
            "aws wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY there",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        (
            "npm npm_abcdefghijklmnopqrstuvwxyz0123456789",
            "npm_abcdefghijklmnopqrstuvwxyz0123456789",
        ),
    ],
)
def test_redaction_removes_credentials(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert cleaned is not None and secret not in cleaned and "[redacted]" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "How do I reset my password? Count tokens in a file; the api key rotation policy.",
        "The password is required for login.",
        "Use mysql -p to be asked for the password.",
        "The commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it.",  # a SHA-1: hex, no caps
        "A 40-character line: abcdefghijklmnopqrstuvwxyzabcdefghijklmn",  # no digits, no capitals
        '{"user": "ann", "tokens": 512}',
        "Set the key password in the keystore settings.",
    ],
)
def test_redaction_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("DB_PASS=hunter2x", "DB_PASS=[redacted]"),
        ("mysql --password hunter2x", "mysql --password [redacted]"),
        ("app --password=s3cret", "app --password=[redacted]"),
        (
            "machine example.com login bob password s3cretpw",
            "machine example.com login bob password [redacted]",
        ),
        ("passphrase = 'long words here'", "passphrase = [redacted]"),
        ("curl -u alice:s3cret https://x", "curl -u alice:[redacted] https://x"),
        ("sshpass -p s3cret ssh host", "sshpass -p [redacted] ssh host"),
        ("docker login -u bob -p s3cret", "docker login -u bob -p [redacted]"),
        ("redis-cli -a s3cret ping", "redis-cli -a [redacted] ping"),
        ("Authorization: Basic YWxpY2U6czNjcmV0", "Authorization: Basic [redacted]"),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nabc\n-----END PGP PRIVATE KEY BLOCK-----",
            "[redacted]",
        ),
        (
            "AccountName=x;AccountKey=abc123def456==;EndpointSuffix=core",
            "AccountName=x;AccountKey=[redacted];EndpointSuffix=core",
        ),
        (
            "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            "https://hooks.slack.com/services/[redacted]",
        ),
        ("the password for the wifi is sunsh1ne", "the password for the wifi is [redacted]"),
        ('{"password": "ab\\"cd-rest"}', '{"password": "[redacted]"}'),
    ],
)
def test_the_second_sweeps_shapes_are_redacted(text: str, redacted: str) -> None:
    assert redact(text) == redacted


@pytest.mark.parametrize(
    "text",
    [
        "Boarding pass: 12A",
        "the password reset link",
        "Use a pass-by-reference",
        "You shall not pass",
        "curl -u https://example.com",
        "compass=north",
        "The password is required.",
        "ssh -p 2222 host",
        "docker login registry.example.com",
    ],
)
def test_ordinary_text_near_those_shapes_is_left_alone(text: str) -> None:
    assert redact(text) == text


# Issue 32's shapes, each as it really looks where it was found (a base URL, a connection
# string, a header, a SAS URL, docker's config, lines of attached files), with the secret that
# must not survive. Each is in a context no other rule catches (no "token =" before it).
CORPUS = [
    pytest.param(
        "Backend: OpenAI-compatible server at http://apiuser:S3cretPW99@127.0.0.1:8080/v1",
        "S3cretPW99",
        id="password in OPENAI_BASE_URL",
    ),
    pytest.param(
        "DATABASE_URL=postgres://admin:p@ssW0rd@db.internal:5432/app",
        "ssW0rd",
        id="URL password holding @",
    ),
    pytest.param(
        "git clone https://deploy:ab/cd+ef9==@git.example.com/org/repo.git",
        "cd+ef9",
        id="URL password holding /",
    ),
    pytest.param(
        'curl -H "Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b" '
        "https://api.example.com/v2/items",
        "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
        id="Authorization: Token",
    ),
    pytest.param(
        "https://acct.blob.core.windows.net/c/report.csv?sv=2022-11-02&ss=b&srt=o&sp=r"
        "&se=2026-12-31T00:00:00Z&spr=https&sig=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg%3D%3D",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg",
        id="Azure SAS sig=",
    ),
    pytest.param(
        '{"auths": {"https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcmV0UGFzcw=="}}}',
        "YWxpY2U6czNjcmV0UGFzcw",
        id="docker config auth",
    ),
    pytest.param(
        'SLACK_APP = "xapp-1-A04ABCDEF12-4567890123456-'
        '9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a49382716f5e4d3c2b1a0"',
        "9f8e7d6c5b4a3928",
        id="Slack app-level token",
    ),
    pytest.param(
        'TWILIO_SID = "SK2b4f6a8c0e1d3f5a7c9e2b4d6f8a0c1e"',
        "2b4f6a8c0e1d3f5a7c9e2b4d6f8a0c1e",
        id="Twilio API key",
    ),
    pytest.param(
        "account: AC8f2e4d6c8a0b1c3e5f7a9b2d4f6a8c0e",
        "8f2e4d6c8a0b1c3e5f7a9b2d4f6a8c0e",
        id="Twilio account id",
    ),
    pytest.param(
        "bot = Bot('7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_')",
        "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        id="Telegram bot token",
    ),
    pytest.param(
        "notify: https://discord.com/api/webhooks/1187654321098765432/"
        "kR9sT3uV5wX7yZ1aB3cD5eF7gH9iJ1kL3mN5oP7qR9sT3uV5wX7yZ1aB3cD5eF7gH9",
        "kR9sT3uV5wX7yZ1aB3cD5eF7",
        id="Discord webhook",
    ),
    pytest.param(
        "client.run('MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhIjKl.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789')",
        "AbCdEfGhIjKlMnOpQrStUvWxYz",
        id="Discord bot token",
    ),
    pytest.param(
        'MAILGUN = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"',
        "3ax6xnjp29jd6fds4gc373sgvjxteol0",
        id="Mailgun key",
    ),
    pytest.param(
        "mg = Mailgun('0123456789abcdef0123456789abcdef-1a2b3c4d-5e6f7a8b')",
        "0123456789abcdef0123456789abcdef",
        id="Mailgun key, current shape",
    ),
    pytest.param(
        "headers = {'X-Shopify-Access-Token': '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'}",
        "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        id="Shopify token",
    ),
]


@pytest.mark.parametrize(("text", "secret"), CORPUS)
def test_the_corpus_of_shapes_is_redacted(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert cleaned is not None and secret not in cleaned and "[redacted]" in cleaned


# Look-alikes that must stay as they are: prose, hashes in code, UUIDs, URLs without a
# password, and the near misses of each new rule.
LOOK_ALIKES = [
    "The secret to good bread is patience; the Token class wraps a string.",
    "Authorization: required for every endpoint (see the Token docs).",
    'digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"',  # sha-256
    "md5 d41d8cd98f00b204e9800998ecf8427e and commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "request id 123e4567-e89b-12d3-a456-426614174000",
    "https://alice@example.com/repo.git and git@github.com:org/repo.git",
    "OPENAI_BASE_URL=http://127.0.0.1:8080/v1",
    "https://example.com:8443/search?q=a:b&mail=ann@example.com",
    "http://box:8080/users/ann@example.com/",
    "mailto:ann@example.com, at 12:30:45, version 1.2.3",
    "a key-value store; sig = inspect.signature(fn); ?sig=short",
    '{"author": "Ann", "auth": true}',
    "ticket 12345678:see-the-notes",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_of_the_corpus_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_stored_copy_is_bounded_and_marked() -> None:
    """A 50 MB reply costs the history STORED_CHARS, not 50 MB (and not minutes of rules):
    the copy is cut with a note, and what it keeps is still redacted."""
    huge = "password=hunter2x " + "word " * 10_000_000
    stored = redact(huge)
    assert stored is not None and len(stored) <= STORED_CHARS + 100
    assert stored.startswith("password=[redacted] ")
    assert stored.endswith(f"characters cut: a stored copy keeps at most {STORED_CHARS:,}]")
    whole = redact("a  " * 100 + "password=hunter2x", limit=None)
    assert whole is not None and whole.endswith("password=[redacted]")


def test_a_cut_leaves_no_head_of_a_secret() -> None:
    """The cut falls on whitespace: the first characters of a key cut in two are dropped
    rather than kept too short for their rule."""
    text = "x " * 50 + "sk-proj-abcdefghijklmnopqrstuvwx1234"
    cut = bounded(text, 110)
    assert "sk-" not in cut and cut.startswith("x x ")


# Inputs on which a rule used to backtrack over what it had scanned (quadratic: minutes at this
# size) or to try every way of splitting a run (exponential: never ending).
ADVERSARIAL = {
    "curl": "curl " * 40_000,
    "sshpass": "sshpass " * 25_000,
    "docker login": "docker login " * 15_000,
    "redis-cli": "redis-cli " * 20_000,
    "mysql": "mysql " * 35_000,
    "blank lines": "\n" * 200_000,
    "dots": "a." * 100_000,
    "dashes": "-p" * 100_000,
    "names": "passwordpassword" * 12_000 + "=",
    "quoted names": "'" + "password" * 25_000,
    "escapes": '"password": "' + "\\" * 200_000,
    "schemes": "a://" * 50_000,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_redaction_is_linear_on_adversarial_text(name: str) -> None:
    """Each input is 200 KB: linear rules take a second, a quadratic one minutes, an
    exponential one forever. Run in a child so that a rule that never ends fails the test
    (the timeout is a hang guard, far beyond what linear work takes on a loaded machine)."""
    code = (
        "import sys\nfrom ai_stack.redaction import redact\n"
        "redact(sys.stdin.read(), limit=None)\nprint('done')"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=ADVERSARIAL[name],
            capture_output=True,
            text=True,
            timeout=240,  # inside pytest-timeout's 300 s, so this message is the one shown
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"redacting {name!r} did not end in 4 minutes: a rule backtracks")
    assert done.stdout.strip() == "done", done.stderr
