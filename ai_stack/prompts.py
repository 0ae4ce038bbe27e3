"""Role prompts: Jinja templates with a ``system`` and a ``user`` block each; follow-ups (the
answer review's steps, which continue the Executor's conversation) have a ``user`` block only.

Templates are looked up in the user's ``prompts_dir`` first, then in the defaults, file by file.
Rendering is sandboxed (a prompt directory may come from someone else) and strict (a missing
variable is an error, not an empty string).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SecurityError

from ai_stack import templating
from ai_stack.backends.base import Message
from ai_stack.errors import ConfigError
from ai_stack.templating import BoundedEnvironment

ROLE_PROMPTS = ("planner", "critic", "revise", "executor", "contract", "rethink", "shape")
FOLLOW_UPS = ("probe", "compute", "review", "fix", "repeat", "tools")
SUMMARY_PROMPT = "summarise"  # condenses earlier turns or a file that do not fit the context
PROMPT_NAMES = (*ROLE_PROMPTS, *FOLLOW_UPS, SUMMARY_PROMPT)
# What every prompt may use, and what it is when a call has none: no earlier turns, no files.
SHARED_DEFAULTS: dict[str, Any] = {
    "conversation": None,
    "files": [],
    "plan": None,
    "approach": None,
    "requirements": [],
    "notes": [],
    "brief": "",
    "ask": "unknown",
}


def default_prompts_dir() -> Path:
    """The shipped templates: inside the installed wheel, or top-level prompts/ in a checkout."""
    packaged = Path(str(resources.files("ai_stack") / "_prompts"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "prompts"


class _ConfinedLoader(jinja2.FileSystemLoader):
    """Templates from the search path only: one that resolves outside its directory (a
    symbolic link to ``~/.ssh/id_ed25519``, included by another template) is refused, so a
    prompt directory from someone else cannot put a file into every prompt."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        real = Path(filename).resolve()
        roots = [Path(directory).resolve() for directory in self.searchpath]
        if not any(real.is_relative_to(root) for root in roots):
            raise SecurityError(
                f"template {template!r} resolves to {real}, outside the prompt directories"
            )
        return source, filename, uptodate


class PromptLibrary:
    """Renders role templates into chat messages."""

    def __init__(self, user_dir: Path | None = None) -> None:
        defaults = default_prompts_dir()
        if not defaults.is_dir():
            raise ConfigError(
                f"Default prompt templates not found at {defaults}",
                hint="Reinstall ai-stack; the package is incomplete.",
            )
        search_path = [str(defaults)]
        if user_dir is not None:
            if not user_dir.is_dir():
                raise ConfigError(f"prompts_dir {user_dir} is not a directory")
            search_path.insert(0, str(user_dir))
        self.search_path = [Path(p) for p in search_path]
        self._env = BoundedEnvironment(
            loader=_ConfinedLoader(search_path),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )

    def source_of(self, name: str) -> Path:
        """The file that ``name`` renders from (user override or default)."""
        for directory in self.search_path:
            candidate = directory / f"{name}.j2"
            if candidate.is_file():
                return candidate
        raise ConfigError(f"No prompt template named {name!r} in {self.search_path}")

    def sources(self) -> dict[str, str]:
        """Which file each role template renders from (kept with a run's configuration)."""
        return {name: str(self.source_of(name).resolve()) for name in PROMPT_NAMES}

    def render(self, name: str, **variables: Any) -> list[Message]:
        """The system and user messages for one role call (the user message only for a
        follow-up)."""
        filename = f"{name}.j2"
        try:
            template = self._env.get_template(filename)
            messages = []
            for block in ("user",) if name in FOLLOW_UPS else ("system", "user"):
                if block not in template.blocks:
                    raise ConfigError(
                        f"Prompt template {self.source_of(name)} has no {{% block {block} %}}"
                    )
                context = template.new_context({**SHARED_DEFAULTS, **variables})
                text = templating.join(template.blocks[block](context)).strip()
                if text or block == "user":  # an empty system message is no system message
                    messages.append({"role": block, "content": text})
            return messages
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"Prompt template {exc.filename or filename} line {exc.lineno}: {exc.message}"
            ) from None
        except jinja2.UndefinedError as exc:
            raise ConfigError(
                f"Prompt template {self.source_of(name)} uses an unknown variable: {exc.message}"
            ) from None
        except SecurityError as exc:
            raise ConfigError(
                f"Prompt template {self.source_of(name)} attempted unsafe access: {exc}"
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise ConfigError(f"Prompt template not found: {exc.name}") from None
