"""What settings from a source the user did not write may change: the one rule.

A project's ``./ai-stack.toml`` (read because it is in the working directory), a workflow file's
``defaults`` and task options (workflows are downloaded and shared) and an MCP client's
arguments may only narrow: stricter limits, a smaller budget, fewer allowed paths, the thermal
guard on — or set what is the task's own business (its roles' models and sampling, the review,
its rounds). They never widen the file policy, the limits or the sandbox, never choose where
prompts go, never turn the history off.

Every leaf field of the settings model is classified in :data:`RULES`, by model class and field
name; a field not classified (a new one) is refused, and ``tests/test_trust.py`` walks the
model so that a new field fails the suite until it is classified. A rule compares the value in
force before (the user's own settings) with the value after the untrusted data is applied; the
comparison is on validated values, so ``"10"`` and ``10``, ``~/x`` and ``/home/me/x`` are the
same thing.

This module knows the settings only by their class names, so that ``config`` (which applies the
rule to a project's config) can import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ai_stack.errors import UntrustedSettingError

Kind = Literal["own", "narrow", "refused"]
Key = tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """How one field may change: ``allows(before, after)``; ``what`` completes "may not ..."."""

    kind: Kind
    what: str
    allows: Callable[[Any, Any], bool]
    show_values: bool = False  # say both values in the refusal (numbers, not paths or hosts)
    only: Any = None  # for a flag that may only be set one way: that way


def own() -> Rule:
    """The task's own business (its models, sampling, review): any valid value."""
    return Rule("own", "", lambda before, after: True)


def refused(what: str) -> Rule:
    """Only the user's own settings may change it (a value equal to theirs is harmless)."""
    return Rule("refused", what, lambda before, after: after == before)


def lower(what: str) -> Rule:
    """A bound: the same or smaller. ``None`` (unbounded, or derived from the machine) cannot be
    compared, so only the user's own settings may replace it.

    >>> rule = lower("widen the limits")
    >>> rule.allows(1000, 10), rule.allows(1000, 1001), rule.allows(None, 4.0)
    (True, False, False)
    """
    return Rule("narrow", what, _lower, show_values=True)


def _lower(before: Any, after: Any) -> bool:
    if after == before:
        return True
    return before is not None and after is not None and bool(after <= before)


def only(value: Any, what: str) -> Rule:
    """A switch that may be set one way only (``thermal.enabled``: on, never off)."""
    return Rule("narrow", what, lambda before, after: after in (before, value), only=value)


def ranked(order: Sequence[str], what: str) -> Rule:
    """A choice among values from the strictest to the widest: the same or stricter.

    >>> ranked(["one-at-a-time", "fit"], "x").allows("fit", "one-at-a-time")
    True
    """
    return Rule(
        "narrow", what, lambda before, after: order.index(after) <= order.index(before), True
    )


def within(what: str) -> Rule:
    """Paths: each one the same as, or inside, one of the user's own (symbolic links followed,
    so a link inside an allowed directory cannot point the list outside it).

    >>> within("x").allows([Path("/srv")], [Path("/srv/logs")])
    True
    >>> within("x").allows([Path("/srv")], [Path("/")])
    False
    """
    return Rule("narrow", what, _within)


def _within(before: Sequence[Path], after: Sequence[Path]) -> bool:
    mine = [path.expanduser().resolve() for path in before]
    return all(
        any(path.expanduser().resolve().is_relative_to(root) for root in mine) for path in after
    )


_FILES = "widen the file policy"
_LIMITS = "widen the input limits"
_SANDBOX = "widen the sandbox's limits"
_PROMPTS = "choose where prompts go"

# By settings class, then field. A field named here is one leaf, whatever its type (a table such
# as ``endpoints`` is judged whole); a field of a settings class not named is judged field by
# field in its own class's entry.
RULES: dict[str, dict[str, Rule]] = {
    "Settings": {
        "backend": own(),  # which of the user's backends: hosts and endpoints stay theirs
        "review": own(),
        "direct": own(),
        "raw": own(),
        "max_rounds": own(),
        "approve_score": own(),
        "max_reasks": own(),
        "repeat_penalty": own(),
        "seed": own(),
        "prompts_dir": refused("choose the prompt templates"),
        "models_dir": refused("choose where models are read from"),
        "cluster": refused("choose where calls run or what environment its workers get"),
        "endpoints": refused(_PROMPTS),
        "mcp_servers": refused("add or change MCP servers (they run commands)"),
    },
    "RoleSettings": {
        "model": own(),
        "temperature": own(),
        "max_tokens": own(),
        "num_ctx": own(),  # the memory budget still bounds what loads
        "fixed_ctx": own(),
        "turns": own(),
    },
    "MemorySettings": {
        "budget_gb": lower("widen the memory budget"),
        "policy": ranked(("one-at-a-time", "fit"), "widen the residency policy"),
        "kv_cache_type": refused("describe your Ollama server"),
        "wait_timeout_s": lower("wait longer for the model memory"),
    },
    "OllamaSettings": {
        "host": refused(_PROMPTS),
        "keep_alive": refused("choose how long the server keeps models"),
        "autostart": refused("start a server"),
        "request_timeout_s": lower("wait longer for the server"),
        "stall_timeout_s": lower("wait longer for the server"),
        "reply_max_bytes": lower("take longer replies"),
    },
    "HistorySettings": {
        "enabled": only(True, "turn the history off"),
        "path": refused("choose where the history is kept"),
    },
    "ThermalSettings": {
        "enabled": only(True, "turn the thermal guard off"),
        "poll_s": lower("poll the sensors less often"),
        "max_pause_s": refused("change the thermal policy"),
        "slowdown_fraction": refused("change the thermal policy"),
        "temp_heavy_c": lower("raise the thermal thresholds"),
        "temp_critical_c": lower("raise the thermal thresholds"),
    },
    "EvidenceSettings": {
        "exec": only(False, "run answer code without a sandbox"),
        "probes": lower("widen the review's budget"),
        # deprecated: the lower of it and max_rounds (the task's own) bounds the repair, so a
        # value can only narrow what max_rounds allows
        "attempts": own(),
        "attempt_temperature": own(),
        "rethink": own(),  # one Planner call, inside the budget
        "budget": lower("widen the review's budget"),
        "timeout_s": lower(_SANDBOX),
        "memory_mb": lower(_SANDBOX),
        "output_kb": lower(_SANDBOX),
        "checks": refused("choose code to run"),
        "check_cmds": refused("choose commands to run"),
    },
    "FilesSettings": {
        "allow_paths": within(_FILES),
        "allow_sensitive": within(_FILES),
        "max_file_kb": lower(_FILES),
        "max_total_kb": lower(_FILES),
    },
    "LimitsSettings": {
        "workflow_kb": lower(_LIMITS),
        "tasks": lower(_LIMITS),
        "yaml_nodes": lower(_LIMITS),
        "depth": lower(_LIMITS),
        "truncate_context": only(False, "cut a context to fit"),
    },
    "ConversationSettings": {"max_tokens": lower("carry more of the conversation")},
    "ToolsSettings": {
        "enabled": only(False, "turn the tools on"),
        "names": refused("choose the tools"),
        "max_steps": lower("widen the tool loop's bounds"),
        "timeout_s": lower("widen the tool loop's bounds"),
        "output_kb": lower("widen the tool loop's bounds"),
    },
}
UNCLASSIFIED = refused("set a setting nobody has classified")


@dataclass(frozen=True)
class Untrusted:
    """A source of settings the user did not write, as messages name it."""

    where: str  # "workflow defaults", "./ai-stack.toml"
    who: str  # "a workflow file", "a project config"
    hint: str  # what the user can do instead


def rule_for(model: type[BaseModel], name: str) -> Rule | None:
    """The field's own rule, or None when it is a settings table judged field by field."""
    rule = RULES.get(model.__name__, {}).get(name)
    if rule is None and _table(model, name) is None:
        return UNCLASSIFIED
    return rule


def leaves(model: type[BaseModel], data: Mapping[str, Any], prefix: Key = ()) -> Iterator[Key]:
    """The leaf fields ``data`` sets (keys the model does not have are validation's to name).

    >>> from ai_stack.config import Settings
    >>> sorted(leaves(Settings, {"planner": "x", "files": {"max_file_kb": 1}, "colour": 1}))
    [('files', 'max_file_kb'), ('planner', 'model')]
    """
    for name, value in data.items():
        if name not in model.model_fields:
            continue
        table = _table(model, name) if rule_for(model, name) is None else None
        if table is not None and isinstance(value, str) and "model" in table.model_fields:
            value = {"model": value}  # a role's shorthand: planner = "spec"
        if table is not None and isinstance(value, Mapping):
            yield from leaves(table, value, (*prefix, name))
        else:
            yield (*prefix, name)


def rule_at(model: type[BaseModel], key: Key) -> Rule:
    """The rule for a leaf given by its path from ``model``."""
    for name in key[:-1]:
        table = _table(model, name)
        if table is None:
            return UNCLASSIFIED
        model = table
    return rule_for(model, key[-1]) or UNCLASSIFIED


def check(before: BaseModel, after: BaseModel, data: Mapping[str, Any], source: Untrusted) -> None:
    """Refuse, by name, every field ``data`` sets that ``after`` widens against ``before``."""
    problems = []
    for key in leaves(type(before), data):
        rule = rule_at(type(before), key)
        old, new = _value(before, key), _value(after, key)
        if not rule.allows(old, new):
            problems.append((key, _reason(key, rule, old, new, source)))
    if problems:
        raise UntrustedSettingError(
            [key for key, _ in problems], "; ".join(text for _, text in problems), hint=source.hint
        )


def _reason(key: Key, rule: Rule, old: Any, new: Any, source: Untrusted) -> str:
    """``limits.tasks in workflow defaults: a workflow file may not widen the input limits
    (100000 where yours is 1000)``."""
    text = f"{'.'.join(key)} in {source.where}: {source.who} may not {rule.what}"
    if rule.show_values and old is None:
        text += " (yours is left to this machine: set it in your own config to narrow it)"
    elif rule.show_values and new is not None:
        text += f" ({new} where yours is {old})"
    return text


def _value(settings: BaseModel, key: Key) -> Any:
    value: Any = settings
    for name in key:
        value = getattr(value, name)
    return value


def _table(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The settings class of a field that is itself a table of settings, else None."""
    field = model.model_fields.get(name)
    annotation = field.annotation if field is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
