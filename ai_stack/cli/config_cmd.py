"""``ai-stack config path|show``: where your config file is, and the settings in force — with
secrets redacted and the keys each source set — so "which value won, and why" needs no reading
of the loading rules."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ai_stack.cli.common import command, config_options
from ai_stack.config import (
    ENV_OVERRIDES,
    LOCAL_CONFIG_NAME,
    Settings,
    read_config_file,
    user_config_file,
)
from ai_stack.redaction import REDACTED, redact, redact_all


@click.group("config")
def config() -> None:
    """Show where your config file is and the settings in force."""


@config.command("path")
def path_command() -> None:
    """Print the path of your config file (create it there if it does not exist yet)."""
    click.echo(str(user_config_file()))


@config.command("show")
@config_options
def show_command(config_file: Path | None, debug: bool) -> None:
    """Print the settings in force as JSON on stdout (defaults < config file < environment;
    secrets redacted), and on stderr which file and variables set which keys."""
    with command(config_file, debug) as (console, settings):
        for line in sources(config_file):
            console.print(f"[dim]{escape(line)}[/]")
        click.echo(json.dumps(shown(settings), indent=2, ensure_ascii=False))


def shown(settings: Settings) -> dict[str, Any]:
    """The settings as data fit to show: every string through the redaction rules, and the
    value of any cluster environment variable whose name says it is a secret."""
    data: dict[str, Any] = redact_all(settings.model_dump(mode="json"))
    for slot in data["cluster"]["slots"].values():
        slot["env"] = {
            name: REDACTED if redact(f"{name}={value}") != f"{name}={value}" else value
            for name, value in slot["env"].items()
        }
    return data


def sources(config_file: Path | None) -> list[str]:
    """One line per source of settings, with the keys it set: ``--config FILE`` alone, else
    yours, then this directory's ``ai-stack.toml`` on top (where it may only narrow)."""
    lines = []
    if config_file is not None:
        files = [(config_file, "given with --config: read alone")]
    else:
        files = [
            (user_config_file(), "yours"),
            (Path.cwd() / LOCAL_CONFIG_NAME, "this directory's: may only narrow yours"),
        ]
    for path, kind in files:
        if path.is_file():
            names = ", ".join(leaves(read_config_file(path))) or "nothing"
            lines.append(f"Config file: {path} ({kind}), sets {names}")
        elif kind == "yours":
            lines.append(f"Config file: none (yours would be {path})")
    for variable, keys in ENV_OVERRIDES.items():
        if os.environ.get(variable):
            lines.append(f"Environment: {variable} sets {'.'.join(keys)}")
    lines.append("Everything else: the defaults (docs/configuration.md)")
    return lines


def leaves(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys a config file sets (a role given as a spec sets its ``model``).

    >>> leaves({"backend": "ollama", "executor": "qwen2.5:7b", "memory": {"policy": "fit"}})
    ['backend', 'executor.model', 'memory.policy']
    """
    found = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            found += leaves(value, f"{prefix}{key}.")
        elif not prefix and key in ("planner", "critic", "executor"):
            found.append(f"{key}.model")
        else:
            found.append(f"{prefix}{key}")
    return found
