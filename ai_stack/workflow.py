"""Workflow files: many tasks in one file, validated completely before any model loads.

A workflow (YAML or JSON) has a ``name``, optional ``defaults`` (any run option), ``tasks``
(each with a unique ``id``, the ``task`` text, optional ``context``, ``context_files``,
``depends_on`` and per-task overrides of the role and loop options) and an optional
``output_dir``. Task text and context may use ``{{ outputs.<id> }}`` to insert the final answer
of a task they depend on; it is rendered in a sandbox, since a workflow may come from someone
else. Every error names the file, the line where the parser knows it, and what to fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jinja2
import yaml
from jinja2 import nodes
from jinja2.sandbox import SecurityError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ai_stack import templating
from ai_stack.access import FilePolicy
from ai_stack.config import LimitsSettings, Settings, layer
from ai_stack.context import fit_for
from ai_stack.errors import FileAccessError, InputLimitError, WorkflowError
from ai_stack.files import NotARegularFile, read_regular, unresolved
from ai_stack.templating import BoundedEnvironment

# Run options a single task may override; the rest (backend, memory, history, ...) apply to the
# whole batch and belong in ``defaults``.
TASK_OPTIONS = (
    "planner",
    "critic",
    "executor",
    "max_rounds",
    "approve_score",
    "max_reasks",
    "repeat_penalty",
    "seed",
    "prompts_dir",
)
TASK_KEYS = ("id", "task", "context", "context_files", "depends_on", *TASK_OPTIONS)
# No loader: a task's template stands alone ({% include %} and the like are refused up front).
_ENV = BoundedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_OTHER_TEMPLATES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


class WorkflowTask(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")]
    task: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    context: str | None = None
    context_files: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)


class WorkflowFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    defaults: dict[str, Any] = Field(default_factory=dict)
    tasks: list[WorkflowTask] = Field(min_length=1)
    output_dir: str | None = None


@dataclass
class PlannedTask:
    """A validated task: its settings, its static context, and what it waits for."""

    id: str
    task: str  # may still contain {{ outputs.<id> }}
    context: str | None
    settings: Settings
    depends_on: list[str]
    line: int | None


@dataclass
class Workflow:
    path: Path
    name: str
    tasks: list[PlannedTask]
    output_dir: Path
    digest: str  # of the file's bytes: a resumed batch must be the same workflow


def render(text: str | None, outputs: Mapping[str, str]) -> str | None:
    """Insert earlier tasks' answers into a task's text or context (sandboxed)."""
    if text is None or "{" not in text:
        return text
    try:
        return templating.join(_ENV.from_string(text).generate(outputs=dict(outputs)))
    except jinja2.TemplateError as exc:  # SecurityError included: a workflow may be hostile
        raise WorkflowError(f"cannot render the task's template: {exc}") from None


def read_bounded(path: Path, limits: LimitsSettings, what: str = "Workflow file") -> bytes:
    """A workflow or suite file's bytes, read in chunks up to the size limit: refused when it
    holds more, or when it is not a regular file (a pipe would block, a device never end)."""
    limit = limits.workflow_kb * 1024
    try:
        data = read_regular(path, limit)
    except FileNotFoundError:
        raise WorkflowError(f"{what} not found: {path}") from None
    except NotARegularFile as exc:
        raise WorkflowError(f"{path} {exc.strerror}, not a {what.lower()}") from None
    except IsADirectoryError:
        raise WorkflowError(f"{path} is a directory, not a {what.lower()}") from None
    except PermissionError:
        raise WorkflowError(f"{what} is not readable: {path}") from None
    except OSError as exc:
        raise WorkflowError(f"Cannot read {path}: {exc.strerror}") from None
    if data is None:
        raise InputLimitError(
            f"{path} is over the {limits.workflow_kb:,} KiB limit for {what.lower()}s.",
            hint="If it is meant to be that big, raise limits.workflow_kb in the config.",
        )
    return data


def load_workflow(
    path: Path, base: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> Workflow:
    """Read and validate ``path``. ``base`` is the config file's settings data, ``overrides``
    the command line's; precedence: base < defaults < task < command line. Nothing is left to
    fail later that can be found now: templates are checked against the sandbox, context files
    against the file-access policy, every input against its limits."""
    try:
        limits = Settings.model_validate(layer(base, overrides or {})).limits
    except ValidationError:
        limits = LimitsSettings()  # the settings' own error is reported below, with its place
    raw_bytes = read_bounded(path, limits)
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkflowError(f"{path} is not UTF-8 text") from None
    data, lines = parse_document(path, text, limits)
    where = _Locator(path, lines)
    try:
        parsed = WorkflowFile.model_validate(data)
    except ValidationError as exc:
        raise where.validation_error(exc, ()) from None

    if len(parsed.tasks) > limits.tasks:
        raise InputLimitError(
            f"{path} has {len(parsed.tasks):,} tasks, over the limit of {limits.tasks:,}.",
            hint="Split it into several workflows, or raise limits.tasks in the config.",
        )
    ids: dict[str, int] = {}
    for index, task in enumerate(parsed.tasks):
        if task.id in ids:
            raise where.error(
                ("tasks", index, "id"),
                f"duplicate task id {task.id!r} (first used by task {ids[task.id] + 1})",
                "give every task a unique id",
            )
        ids[task.id] = index

    try:
        defaults_data = layer(base, parsed.defaults)
        batch_settings = Settings.model_validate(layer(defaults_data, overrides or {}))
    except ValidationError as exc:
        raise where.validation_error(exc, ("defaults",)) from None
    policy = batch_settings.file_policy(path.parent)

    planned: dict[str, PlannedTask] = {}
    for index, task in enumerate(parsed.tasks):
        prefix = ("tasks", index)
        extra = dict(task.model_extra or {})
        for key in extra:
            if key in TASK_OPTIONS:
                continue
            if key in Settings.model_fields:
                raise where.error(
                    (*prefix, key),
                    f"{key!r} applies to the whole batch and cannot be set per task",
                    "move it under defaults",
                )
            raise where.error(
                (*prefix, key),
                f"unknown task key {key!r}",
                f"task keys are: {', '.join(TASK_KEYS)}",
            )
        task_options = {k: v for k, v in extra.items() if k in TASK_OPTIONS}
        try:
            settings = Settings.model_validate(layer(defaults_data, task_options, overrides or {}))
        except ValidationError as exc:
            raise where.validation_error(exc, prefix) from None
        for dependency in task.depends_on:
            if dependency not in ids:
                raise where.error(
                    (*prefix, "depends_on"),
                    f"task {task.id!r} depends on unknown task {dependency!r}",
                    f"known ids: {', '.join(ids)}",
                )
        context = _with_files(task, path.parent, policy, where, prefix)
        for field_name, value in (("task", task.task), ("context", task.context)):
            _check_template(value, task, where, (*prefix, field_name))
        try:  # a task too big for its models shows now, not after others' models loaded
            fit_for(settings, task.task, context)
        except InputLimitError as exc:
            raise where.error(prefix, exc.message, exc.hint) from None
        planned[task.id] = PlannedTask(
            task.id, task.task, context, settings, list(task.depends_on), where.line(prefix)
        )

    order = _dependency_order(planned, where, ids)
    output_dir = (path.parent / parsed.output_dir) if parsed.output_dir else None
    if output_dir is not None and not output_dir.resolve().is_relative_to(path.parent.resolve()):
        # reads are confined to the workflow's directory; so are its writes
        raise where.error(
            ("output_dir",),
            f"{parsed.output_dir!r} is outside the workflow's directory.",
            "A workflow file may come from someone else: its outputs stay beside it. To write "
            "elsewhere, say so yourself: ai-stack batch FILE --out DIR",
        )
    return Workflow(
        path=path.resolve(),
        name=parsed.name,
        tasks=[planned[task_id] for task_id in order],
        # its own name unresolved: a link there is refused when the batch opens it
        output_dir=unresolved(output_dir or path.parent / f"{path.stem}-results"),
        digest=hashlib.sha256(raw_bytes).hexdigest(),
    )


def _with_files(
    task: WorkflowTask,
    folder: Path,
    policy: FilePolicy,
    where: _Locator,
    prefix: tuple[Any, ...],
) -> str | None:
    """The task's context with its files appended, each through the file-access policy (a
    workflow may come from someone else: its files stay inside its directory)."""
    parts = [task.context] if task.context else []
    for number, name in enumerate(task.context_files):
        file = folder / Path(name).expanduser()
        try:
            content = policy.read(file)
        except FileAccessError as exc:
            if exc.message.startswith("File not found"):
                raise where.error(
                    (*prefix, "context_files", number),
                    f"context file not found: {file}",
                    "paths are relative to the workflow file",
                ) from None
            raise where.error((*prefix, "context_files", number), exc.message, exc.hint) from None
        parts.append(f"--- {name} ---\n{content.rstrip()}")
    return "\n\n".join(parts) if parts else None


def _check_template(
    text: str | None, task: WorkflowTask, where: _Locator, location: tuple[Any, ...]
) -> None:
    """Syntax, and every ``outputs.<id>`` naming a task this one depends on."""
    if not text or "{" not in text:
        return
    try:
        tree = _ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise where.error(location, f"template error: {exc.message}", None) from None
    for other in tree.find_all(_OTHER_TEMPLATES):
        keyword = type(other).__name__.lower().replace("fromimport", "from")
        raise where.error(
            location,
            f"a task's template cannot use {{% {keyword} %}}: it stands alone",
            "only {{ outputs.<task id> }} is available",
        )
    for name in tree.find_all(nodes.Name):
        if name.name != "outputs" and name.ctx == "load":
            raise where.error(
                location,
                f"unknown template variable {name.name!r}",
                "only {{ outputs.<task id> }} is available",
            )
    used = {n.attr for n in tree.find_all(nodes.Getattr) if _is_outputs(n.node)}
    used |= {
        n.arg.value
        for n in tree.find_all(nodes.Getitem)
        if _is_outputs(n.node) and isinstance(n.arg, nodes.Const)
    }
    missing = sorted(used - set(task.depends_on))
    if missing:
        raise where.error(
            location,
            f"task {task.id!r} uses outputs.{missing[0]} but does not depend on {missing[0]!r}",
            f"add {missing[0]!r} to its depends_on",
        )
    try:  # what the sandbox refuses shows now, not after models were loaded for other tasks
        templating.join(
            _ENV.from_string(text).generate(outputs=dict.fromkeys(task.depends_on, "answer"))
        )
    except SecurityError as exc:
        raise where.error(location, f"the template does something unsafe: {exc}", None) from None
    except jinja2.TemplateError as exc:
        raise where.error(location, f"template error: {exc}", None) from None


def _is_outputs(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "outputs"


def _dependency_order(
    planned: dict[str, PlannedTask], where: _Locator, ids: dict[str, int]
) -> list[str]:
    """File order, moved only as far as dependencies require; a cycle is an error."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(task_id: str, trail: list[str]) -> None:
        if state.get(task_id) == "done":
            return
        if state.get(task_id) == "visiting":
            cycle = " -> ".join([*trail[trail.index(task_id) :], task_id])
            raise where.error(
                ("tasks", ids[task_id], "depends_on"),
                f"dependency cycle: {cycle}",
                "dependencies must form a DAG",
            )
        state[task_id] = "visiting"
        for dependency in planned[task_id].depends_on:
            visit(dependency, [*trail, task_id])
        state[task_id] = "done"
        order.append(task_id)

    for task_id in planned:
        visit(task_id, [])
    return order


# -- parsing with line numbers -----------------------------------------------------------------


def parse_document(
    path: Path, text: str, limits: LimitsSettings
) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """A YAML (or, by its name, JSON) document as Python data, with the line of each value,
    within the limits: no alias bombs, no nesting deep enough to exhaust the stack."""
    too_deep = InputLimitError(
        f"{path} is nested more than {limits.depth} levels deep.",
        hint="Workflows need a few levels; raise limits.depth in the config if this one is real.",
    )
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise too_deep from None
        if _depth(data, limits.depth) > limits.depth:
            raise too_deep
        return data, {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise too_deep from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkflowError(
            f"{path}{line}: YAML syntax error: {problem}",
            hint="Check the indentation and quoting on that line.",
        ) from None
    if node is None:
        raise WorkflowError(f"{path} is empty", hint="See docs/workflows.md for the format.")
    lines: dict[tuple[Any, ...], int] = {}
    budget = _Budget(path, limits)
    return _to_python(path, node, (), lines, budget), lines


@dataclass
class _Budget:
    """Counts the nodes a YAML document expands to (aliases are expanded: a few lines of
    anchors can stand for billions of nodes) and refuses past the limit."""

    path: Path
    limits: LimitsSettings
    nodes: int = 0

    def spend(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.limits.yaml_nodes:
            raise InputLimitError(
                f"{self.path} expands to more than {self.limits.yaml_nodes:,} values (YAML "
                "anchors and aliases multiply them).",
                hint="Write the values out, or raise limits.yaml_nodes in the config.",
            )
        if depth > self.limits.depth:
            raise InputLimitError(
                f"{self.path} is nested more than {self.limits.depth} levels deep.",
                hint="Workflows need a few levels; raise limits.depth in the config.",
            )


def _depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests, counted up to just past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack += [(child, level + 1) for child in item.values()]
        elif isinstance(item, list):
            stack += [(child, level + 1) for child in item]
    return deepest


def _to_python(
    path: Path,
    node: yaml.Node,
    location: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    budget: _Budget,
) -> Any:
    budget.spend(len(location))
    lines[location] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key_node, yaml.ScalarNode):
                raise WorkflowError(
                    f"{path}:{key_node.start_mark.line + 1}: a key must be a plain value",
                    hint="Keys are names like task or depends_on.",
                )
            if key in result:
                raise WorkflowError(
                    f"{path}:{key_node.start_mark.line + 1}: duplicate key {key!r}",
                    hint="Each key may appear once in a mapping.",
                )
            result[key] = _to_python(path, value_node, (*location, key), lines, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_python(path, item, (*location, i), lines, budget)
            for i, item in enumerate(node.value)
        ]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


@dataclass
class _Locator:
    path: Path
    lines: dict[tuple[Any, ...], int]

    def line(self, location: tuple[Any, ...]) -> int | None:
        for end in range(len(location), -1, -1):
            if location[:end] in self.lines:
                return self.lines[location[:end]]
        return None

    def error(self, location: tuple[Any, ...], problem: str, fix: str | None) -> WorkflowError:
        line = self.line(location)
        where = f"{self.path}:{line}" if line else str(self.path)
        dotted = ".".join(str(p) for p in location)
        return WorkflowError(f"{where}: {dotted}: {problem}", hint=fix)

    def validation_error(self, exc: ValidationError, prefix: tuple[Any, ...]) -> WorkflowError:
        first = exc.errors()[0]
        location = (*prefix, *first["loc"])
        message = first["msg"]
        if first["type"] == "missing":
            message = f"missing {first['loc'][-1]!r}"
        elif first["type"] == "extra_forbidden":
            message = f"unknown key {first['loc'][-1]!r}"
        more = len(exc.errors()) - 1
        fix = "See docs/workflows.md for the format." + (
            f" ({more} more problem(s))" if more else ""
        )
        return self.error(location, message, fix)
