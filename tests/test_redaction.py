"""Redaction: each rule removes its kind of credential, and ordinary text is left alone."""

from __future__ import annotations

import pytest

from ai_stack.redaction import redact


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
