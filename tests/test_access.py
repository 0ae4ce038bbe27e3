"""The file-access policy: what a workflow (or anyone) may turn into model context."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_stack.access import FilePolicy
from ai_stack.errors import FileAccessError


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = x\n")
    return home


def policy(
    tmp_path: Path, home: Path, *allowed: Path, sensitive: tuple[Path, ...] = (), **limits: int
) -> FilePolicy:
    return FilePolicy.create(allowed, sensitive, home=home, **limits)


def test_files_inside_the_allowed_directory_are_read(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "project"
    (project / "logs").mkdir(parents=True)
    (project / "logs" / "error.log").write_text("KeyError: 'amount'\n")
    assert "KeyError" in policy(tmp_path, home, project).read(project / "logs" / "error.log")


@pytest.mark.parametrize("escape", ["../outside.txt", "../../etc/passwd", "sub/../../outside.txt"])
def test_paths_out_of_the_allowed_directory_are_refused(
    tmp_path: Path, home: Path, escape: str
) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("private")
    with pytest.raises(FileAccessError, match="outside the allowed directories") as info:
        policy(tmp_path, home, project).read(project / escape)
    assert "--allow-path" in (info.value.hint or "")


def test_a_symlink_is_judged_by_where_it_points(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "innocent.txt").symlink_to(home / ".ssh" / "id_ed25519")
    with pytest.raises(FileAccessError, match=r"a link to .*id_ed25519"):
        policy(tmp_path, home, project, home).read(project / "innocent.txt")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (".ssh/id_ed25519", "~/.ssh holds secrets"),
        (".aws/credentials", "~/.aws holds secrets"),
        ("project/.env", "files named .env hold secrets"),
        ("project/.env.production", "files named .env.* hold secrets"),
        ("project/server.pem", "files named *.pem hold secrets"),
        ("project/tls.key", "files named *.key hold secrets"),
        ("project/id_rsa.pub", "files named id_rsa* hold secrets"),
        (".config/gcloud/credentials.db", "~/.config/gcloud holds secrets"),
        (".docker/config.json", "~/.docker/config.json holds secrets"),
        (".netrc", "~/.netrc holds secrets"),
        ("Library/Keychains/login.keychain-db", "~/Library/Keychains holds secrets"),
        (".mozilla/firefox/x.default/logins.json", "~/.mozilla holds secrets"),
        (".config/git/credentials", "~/.config/git/credentials holds secrets"),
        (".cache/huggingface/token", "~/.cache/huggingface/token holds secrets"),
        (".vault-token", "~/.vault-token holds secrets"),
        ("project/.envrc", "files named .envrc hold secrets"),
        # case does not matter (macOS and Windows file systems ignore it)
        ("project/.ENV", "files named .env hold secrets"),
        ("project/ID_RSA", "files named id_rsa* hold secrets"),
        ("project/server.PEM", "files named *.pem hold secrets"),
        (".SSH/config", "~/.ssh holds secrets"),
    ],
)
def test_secret_locations_are_refused_even_when_allowed(
    tmp_path: Path, home: Path, name: str, reason: str
) -> None:
    target = (home / name) if not name.startswith("project/") else tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("secret")
    everything = policy(tmp_path, home, tmp_path)  # the whole tree is allowed...
    with pytest.raises(FileAccessError, match="Refusing to read") as info:
        everything.read(target)
    assert reason in info.value.message  # ...but not a secret in it
    assert f"--allow-sensitive {target.resolve()}" in (info.value.hint or "")
    named = policy(tmp_path, home, tmp_path, sensitive=(target,))
    assert named.read(target) == "secret"  # unless named, one by one


def test_a_directory_named_with_allow_sensitive_allows_what_it_holds(
    tmp_path: Path, home: Path
) -> None:
    """docs/files.md: name "that exact file (or directory)"; a directory covers its files, and
    nothing beside it."""
    (home / ".aws" / "config").write_text("[default]\nregion = eu-west-1\n")
    allowed = policy(tmp_path, home, sensitive=(home / ".aws",))
    assert "aws_secret_access_key" in allowed.read(home / ".aws" / "credentials")
    assert "region" in allowed.read(home / ".aws" / "config")
    with pytest.raises(FileAccessError, match=r"~/\.ssh holds secrets"):
        allowed.read(home / ".ssh" / "id_ed25519")


def test_a_link_out_of_the_allowed_directory_names_where_it_points(
    tmp_path: Path, home: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "elsewhere.txt").write_text("private")
    (project / "notes.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(FileAccessError) as info:
        policy(tmp_path, home, project).read(project / "notes.txt")
    target = (tmp_path / "elsewhere.txt").resolve()
    assert f"notes.txt (a link to {target}) is outside the allowed directories" in (
        info.value.message
    )
    with pytest.raises(FileAccessError) as plain:  # a path with ".." is no link: named as given
        policy(tmp_path, home, project).read(project / ".." / "elsewhere.txt")
    assert "a link to" not in plain.value.message


def test_etc_shadow_is_refused(tmp_path: Path, home: Path) -> None:
    with pytest.raises(FileAccessError, match="/etc/shadow holds secrets"):
        policy(tmp_path, home, Path("/")).check(Path("/etc/shadow"))


def test_size_limits_per_file_and_in_total(tmp_path: Path, home: Path) -> None:
    for name in "abc":
        (tmp_path / f"{name}.txt").write_text("x" * 3000)
    limited = policy(tmp_path, home, tmp_path, max_file_kb=2, max_total_kb=8)
    with pytest.raises(FileAccessError, match="over the 2 KiB limit for one file"):
        limited.read(tmp_path / "a.txt")
    roomy = policy(tmp_path, home, tmp_path, max_file_kb=4, max_total_kb=8)
    roomy.read(tmp_path / "a.txt")
    roomy.read(tmp_path / "b.txt")
    with pytest.raises(FileAccessError, match="over the 8 KiB limit in total"):
        roomy.read(tmp_path / "c.txt")


def test_binary_and_non_utf8_files_are_refused(tmp_path: Path, home: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    allowed = policy(tmp_path, home, tmp_path)
    with pytest.raises(FileAccessError, match="binary file"):
        allowed.read(tmp_path / "image.png")
    with pytest.raises(FileAccessError, match="not UTF-8"):
        allowed.read(tmp_path / "latin1.txt")


def test_named_files_need_no_directory_but_secrets_still_do(tmp_path: Path, home: Path) -> None:
    (tmp_path / "notes.txt").write_text("plain")
    named = policy(tmp_path, home)  # no roots: files the user names on the command line
    assert named.read(tmp_path / "notes.txt") == "plain"
    with pytest.raises(FileAccessError, match="Refusing"):
        named.read(home / ".ssh" / "id_ed25519")
