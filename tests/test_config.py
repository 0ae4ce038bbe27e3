"""Settings: defaults < TOML file < environment < flags, and one clear error for each bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import platformdirs
import pytest

from ai_stack.config import load_settings, user_config_file, user_dir
from ai_stack.errors import ConfigError
from tests.conftest import invoke


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file() -> None:
    settings = load_settings()
    assert settings.backend == "auto"
    assert settings.max_rounds == 2
    assert settings.planner.model is None
    assert settings.executor.max_tokens > settings.critic.max_tokens


def test_user_dir_follows_ai_stack_home(isolated_home: Path) -> None:
    assert user_dir() == isolated_home
    assert load_settings().resolved_models_dir() == isolated_home / "models"


def test_role_shorthand_and_tables_in_toml(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        'backend = "embedded"\nmax_rounds = 1\nplanner = "embedded:smollm2"\n'
        '[executor]\nmodel = "ollama:qwen2.5:14b"\nmax_tokens = 900\n',
    )
    settings = load_settings(config)
    assert settings.backend == "embedded"
    assert settings.max_rounds == 1
    assert settings.planner.model == "embedded:smollm2"
    assert settings.executor.model == "ollama:qwen2.5:14b"
    assert settings.executor.max_tokens == 900


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml", 'planner = "from-file"\nmax_rounds = 1\n[critic]\nmodel = "file"\n'
    )
    env = {"AI_STACK_PLANNER": "from-env", "AI_STACK_MAX_ROUNDS": "4"}
    settings = load_settings(config, {"max_rounds": 3, "critic": {"model": None}}, environ=env)
    assert settings.planner.model == "from-env"
    assert settings.max_rounds == 3  # flag beats environment
    assert settings.critic.model == "file"  # an unset flag (None) changes nothing


def test_local_file_is_found_in_the_working_directory() -> None:
    write(Path.cwd() / "ai-stack.toml", "max_rounds = 5\n")
    assert load_settings().max_rounds == 5


def test_user_dir_config_is_used_when_there_is_no_local_file(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True)
    write(isolated_home / "config.toml", "approve_score = 6\n")
    assert load_settings().approve_score == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("max_rounds = [", "not valid TOML"),
        ("colour = 'red'\n", "colour: Extra inputs are not permitted"),
        ("[planner]\ntemperature = 9\n", "planner.temperature"),
        ("max_rounds = 'many'\n", "max_rounds"),
    ],
)
def test_bad_config_files_give_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    config = write(tmp_path / "bad.toml", content)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert message in str(info.value)
    assert str(config) in str(info.value)


def test_missing_and_directory_config_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="directory"):
        load_settings(tmp_path)


def test_binary_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"UTF-8|TOML"):
        load_settings(config)


@pytest.mark.parametrize(
    "toml",
    [
        '[ollama]\nhost = "http://attacker.example:80"\n',
        '[files]\nallow_paths = ["/"]\n',
        '[files]\nallow_sensitive = ["~/.ssh/id_ed25519"]\n',
        "[evidence]\nexec = true\n",
        "[history]\nenabled = false\n",
        'prompts_dir = "p"\n',
        # limits and safety settings: a project config may narrow them, never widen them
        "[limits]\ntasks = 5000\n",
        "[limits]\ntruncate_context = true\n",
        "[evidence]\nbudget = 50\n",
        "[evidence]\nmemory_mb = 65536\n",
        "[thermal]\nenabled = false\n",
        "[memory]\nbudget_gb = 4096\n",
    ],
)
def test_a_project_config_may_not_widen_access_or_redirect_prompts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str
) -> None:
    """Clone a repository, run ai-stack in it: its ai-stack.toml must not send your keys to
    someone else's server. Named with --config, it is your own choice."""
    (tmp_path / "ai-stack.toml").write_text("max_rounds = 1\n" + toml)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="a project config may not"):
        load_settings()
    assert load_settings(tmp_path / "ai-stack.toml").max_rounds == 1  # explicit: trusted


def test_a_project_config_with_harmless_keys_is_read_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ai-stack.toml").write_text('max_rounds = 1\n[executor]\nmodel = "embedded:x"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.max_rounds == 1 and settings.source == tmp_path / "ai-stack.toml"


def test_a_seed_is_a_number_or_random_from_toml(tmp_path: Path) -> None:
    """TOML has no null: "remove the line for random" kept 42, so random has a name."""
    assert load_settings().seed == 42
    assert load_settings(write(tmp_path / "r.toml", 'seed = "random"\n')).seed == "random"
    assert load_settings(write(tmp_path / "n.toml", "seed = 7\n")).seed == 7
    with pytest.raises(ConfigError, match="seed"):
        load_settings(write(tmp_path / "bad.toml", 'seed = "lucky"\n'))


# -- where the user's config file is, and `ai-stack config path|show` --------------------------


@pytest.fixture
def platform_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """No AI_STACK_HOME: the platform's directories, inside tmp_path (XDG on Linux, HOME on
    macOS). Returns (the config file's new place, its old place in the user data dir)."""
    monkeypatch.delenv("AI_STACK_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    new = Path(platformdirs.user_config_dir("ai-stack", appauthor=False)) / "config.toml"
    old = Path(platformdirs.user_data_dir("ai-stack", appauthor=False)) / "config.toml"
    assert tmp_path in new.parents and tmp_path in old.parents
    if sys.platform.startswith("linux"):
        assert new == tmp_path / "xdg-config" / "ai-stack" / "config.toml"
    return new, old


def test_the_config_file_is_in_the_platform_config_dir(platform_dirs: tuple[Path, Path]) -> None:
    new, _ = platform_dirs
    assert user_config_file() == new  # where to create it
    new.parent.mkdir(parents=True)
    write(new, "approve_score = 6\n")
    settings = load_settings()
    assert settings.approve_score == 6 and settings.source == new


def test_the_old_place_is_read_until_the_new_one_exists(platform_dirs: tuple[Path, Path]) -> None:
    new, old = platform_dirs
    if new == old:
        pytest.skip("one directory for both on this platform")
    old.parent.mkdir(parents=True)
    write(old, "approve_score = 5\n")
    assert load_settings().approve_score == 5 and user_config_file() == old
    new.parent.mkdir(parents=True)
    write(new, "approve_score = 7\n")
    assert load_settings().approve_score == 7 and user_config_file() == new


def test_ai_stack_home_holds_the_config_too(isolated_home: Path) -> None:
    assert user_config_file() == isolated_home / "config.toml"
    code, out, err = invoke("config", "path")
    assert code == 0 and out == f"{isolated_home / 'config.toml'}\n", err


def test_config_show_redacts_and_says_where_each_setting_came_from(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolated_home.mkdir(parents=True)
    path = write(
        isolated_home / "config.toml",
        'max_rounds = 1\nexecutor = "ollama:qwen2.5:7b"\n'
        '[ollama]\nhost = "http://me:hunter2@gpu-box:11434"\n'
        '[cluster.slots.a.env]\nHF_TOKEN = "abc123"\nOLLAMA_HOST = "http://127.0.0.1:11434"\n',
    )
    monkeypatch.setenv("AI_STACK_BACKEND", "embedded")
    code, out, err = invoke("config", "show")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["max_rounds"], shown["backend"], shown["review"]) == (1, "embedded", "team")
    assert shown["executor"]["model"] == "ollama:qwen2.5:7b"
    assert shown["ollama"]["host"] == "http://me:[redacted]@gpu-box:11434"
    env = shown["cluster"]["slots"]["a"]["env"]
    assert env == {"HF_TOKEN": "[redacted]", "OLLAMA_HOST": "http://127.0.0.1:11434"}
    assert "hunter2" not in out + err and "abc123" not in out + err
    assert f"Config file: {path} (yours), sets max_rounds, executor.model, ollama.host" in err
    assert "Environment: AI_STACK_BACKEND sets backend" in err


def test_config_show_without_a_file_and_with_a_bad_one(isolated_home: Path) -> None:
    code, out, err = invoke("config", "show")
    assert code == 0 and json.loads(out)["max_rounds"] == 2
    assert f"Config file: none (yours would be {isolated_home / 'config.toml'})" in err
    isolated_home.mkdir(parents=True)
    write(isolated_home / "config.toml", "max_rounds = [\n")
    code, out, err = invoke("config", "show")
    assert code == 2 and "not valid TOML" in err and "Traceback" not in err and out == ""
