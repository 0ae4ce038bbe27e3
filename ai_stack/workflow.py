"""Workflow files: many tasks in one file, validated completely before any model loads.

A workflow (YAML or JSON) has a ``name``, optional ``defaults`` (run options that may only
narrow the user's own: :mod:`ai_stack.trust`), ``tasks``
(each with a unique ``id``, the ``task`` text, optional ``context``, ``context_files``, ``kb``
(knowledge indexes, whose files the workflow may read), ``depends_on`` and per-task overrides
of the role and loop options) and an optional
``output_dir``. Task text and context may use ``{{ outputs.<id> }}`` to insert the final answer
of a task they depend on; it is rendered in a sandbox, since a workflow may come from someone
else. Every error names the file, the line where the parser knows it, and what to fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jinja2
import yaml
from jinja2 import nodes
from jinja2.sandbox import SecurityError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ai_stack import templating
from ai_stack.access import FilePolicy
from ai_stack.config import LimitsSettings, Settings, layer, narrowed
from ai_stack.context import fit_for
from ai_stack.errors import (
    AiStackError,
    FileAccessError,
    InputLimitError,
    UntrustedSettingError,
    WorkflowError,
)
from ai_stack.files import NotARegularFile, read_regular, unresolved
from ai_stack.knowledge.store import IndexStore
from ai_stack.templating import BoundedEnvironment
from ai_stack.trust import Untrusted

# Run options a single task may override; the rest (backend, memory, history, ...) apply to the
# whole batch and belong in ``defaults``. Both may only narrow the user's own settings (trust.py).
TASK_OPTIONS = (
    "planner",
    "critic",
    "executor",
    "max_rounds",
    "approve_score",
    "max_reasks",
    "repeat_penalty",
    "seed",
)
_HINT = (
    "A workflow file may come from someone else: what widens your settings is yours to set, on "
    "the command line or in your own config (docs/workflows.md#what-a-workflow-may-set)."
)
TASK_KEYS = ("id", "task", "context", "context_files", "kb", "depends_on", *TASK_OPTIONS)
# No loader: a task's template stands alone ({% include %} and the like are refused up front).
_ENV = BoundedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_OTHER_TEMPLATES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


class WorkflowTask(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")]
    task: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    context: str | None = None
    context_files: list[str] = Field(default_factory=list)
    kb: list[str] = Field(default_factory=list)
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
    knowledge: tuple[str, ...] = ()  # knowledge indexes whose passages become its sources


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
        raise too_many_tasks(path, len(parsed.tasks), limits)
    ids: dict[str, int] = {}
    for index, task in enumerate(parsed.tasks):
        if task.id in ids:
            raise where.error(
                ("tasks", index, "id"),
                f"duplicate task id {task.id!r} (first used by task {ids[task.id] + 1})",
                "give every task a unique id",
            )
        ids[task.id] = index

    source = Untrusted("workflow defaults", "a workflow file", _HINT)
    defaults_data = _narrowed(base, parsed.defaults, source, where, ("defaults",))
    try:
        batch_settings = Settings.model_validate(layer(defaults_data, overrides or {}))
    except ValidationError as exc:
        raise where.validation_error(exc, ("defaults",)) from None
    policy = batch_settings.file_policy(path.parent)

    planned: dict[str, PlannedTask] = {}
    for index, task in enumerate(parsed.tasks):
        prefix = ("tasks", index)
        extra = dict(task.model_extra or {})
        for key in extra:
            if key not in Settings.model_fields:
                raise where.error(
                    (*prefix, key),
                    f"unknown task key {key!r}",
                    f"task keys are: {', '.join(TASK_KEYS)}",
                )
        source = Untrusted(f"task {task.id}", "a workflow file", _HINT)
        task_data = _narrowed(defaults_data, extra, source, where, prefix)
        for key in extra:
            if key not in TASK_OPTIONS:
                raise where.error(
                    (*prefix, key),
                    f"{key!r} applies to the whole batch and cannot be set per task",
                    "move it under defaults",
                )
        try:
            settings = Settings.model_validate(layer(task_data, overrides or {}))
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
        _check_knowledge(task, policy, where, prefix)
        for field_name, value in (("task", task.task), ("context", task.context)):
            _check_template(value, task, where, (*prefix, field_name))
        try:  # a task too big for its models shows now, not after others' models loaded
            fit_for(settings, task.task, context)
        except InputLimitError as exc:
            raise where.error(prefix, exc.message, exc.hint) from None
        planned[task.id] = PlannedTask(
            task.id,
            task.task,
            context,
            settings,
            list(task.depends_on),
            where.line(prefix),
            tuple(task.kb),
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


def _narrowed(
    base: Mapping[str, Any],
    data: Mapping[str, Any],
    source: Untrusted,
    where: _Locator,
    prefix: tuple[Any, ...],
) -> dict[str, Any]:
    """``base`` with the workflow's settings ``data`` on top: they may only narrow it."""
    try:
        return narrowed(base, data, source)
    except ValidationError as exc:
        raise where.validation_error(exc, prefix) from None
    except UntrustedSettingError as exc:
        raise where.error(prefix + exc.keys[0], exc.message, exc.hint, named=False) from None


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


def _check_knowledge(
    task: WorkflowTask, policy: FilePolicy, where: _Locator, prefix: tuple[Any, ...]
) -> None:
    """Each index the task names exists, and holds only what the workflow may read: its files
    inside the workflow's directory or a directory the user allowed (a workflow may come from
    someone else, and an index of your notes is not its to read)."""
    for number, name in enumerate(task.kb):
        location = (*prefix, "kb", number)
        try:
            with IndexStore.open(name) as store:
                for root in store.info.roots:
                    policy.check(Path(root.real))
        except FileAccessError as exc:
            raise where.error(
                location,
                f"the knowledge index {name!r} holds files the workflow may not read: "
                f"{exc.message}",
                exc.hint,
            ) from None
        except AiStackError as exc:
            raise where.error(location, exc.message, exc.hint) from None


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
    within the limits: no alias bombs, no nesting deep enough to exhaust the stack.

    The nesting is measured before the document is built (the builders recurse once or twice
    per level; ``limits.depth`` stays well below what they can follow)."""
    if path.suffix.lower() == ".json":
        _refuse_deep(path, _json_depth(text), limits)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise _too_deep(path, _json_depth(text), "the JSON reader can follow") from None
        return data, {}
    depth = _yaml_depth(text, DEPTH_SCANNED)
    _refuse_deep(path, depth, limits)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise _too_deep(path, depth, "the YAML reader can follow") from None
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
    _refuse_many_tasks(path, node, limits)
    lines: dict[tuple[Any, ...], int] = {}
    budget = _Budget(path, limits)
    return _to_python(path, node, (), lines, budget), lines


def _refuse_deep(path: Path, depth: int, limits: LimitsSettings) -> None:
    if depth > limits.depth:
        raise _too_deep(path, depth, f"the limit of {limits.depth}")


def _too_deep(path: Path, depth: int, limit: str) -> InputLimitError:
    levels = f"more than {DEPTH_SCANNED:,}" if depth > DEPTH_SCANNED else f"{depth:,}"
    return InputLimitError(
        f"{path} is nested {levels} levels deep, more than {limit}.",
        hint="Workflows need a few levels; raise limits.depth in the config if this one is real.",
    )


# How deep the YAML depth scan follows a document: its scanner takes time in the square of the
# depth of flow collections ([[[...), so past this the depth is only known to be greater.
DEPTH_SCANNED = 1000


def _yaml_depth(text: str, stop: int) -> int:
    """How deep a YAML document's mappings and lists nest, read from the parser's events
    (which keep their own stack: no recursion), up to just past ``stop``; a syntax error is
    left to the composer.

    >>> _yaml_depth("a: [[1], {b: 2}]", 10), _yaml_depth("- - x", 10), _yaml_depth("[[[1]]]", 1)
    (3, 2, 2)
    """
    depth = deepest = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                deepest = max(deepest, depth)
                if deepest > stop:
                    break
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return deepest


def _json_depth(text: str) -> int:
    """How deep a JSON document's objects and arrays nest (brackets outside strings).

    >>> _json_depth('{"a": [[1], "]]]"]}')
    3
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _refuse_many_tasks(path: Path, node: yaml.Node, limits: LimitsSettings) -> None:
    """Too many tasks, said before they are built (as values they would exceed
    ``limits.yaml_nodes`` first, and be blamed on aliases)."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        tasks = value.value if key.value == "tasks" and isinstance(value, yaml.SequenceNode) else []
        if len(tasks) > limits.tasks:
            raise too_many_tasks(path, len(tasks), limits)


def too_many_tasks(path: Path, count: int, limits: LimitsSettings) -> InputLimitError:
    return InputLimitError(
        f"{path} has {count:,} tasks, over the limit of {limits.tasks:,}.",
        hint="Split it into several files, or raise limits.tasks in the config.",
    )


@dataclass
class _Budget:
    """Counts the nodes a YAML document expands to (aliases are expanded: a few lines of
    anchors can stand for billions of nodes) and refuses past the limit."""

    path: Path
    limits: LimitsSettings
    nodes: int = 0
    seen: set[int] = field(default_factory=set)  # the collections built so far
    aliased: bool = False  # one was built again: an alias

    def spend(self, node: yaml.Node, depth: int) -> None:
        self.nodes += 1
        if depth > self.limits.depth:  # an alias nests what its anchor holds deeper still
            raise InputLimitError(
                f"{self.path} is nested more than {self.limits.depth} levels deep once its "
                "aliases are expanded.",
                hint="Write the values out, or raise limits.depth in the config.",
            )
        if isinstance(node, yaml.CollectionNode):
            self.aliased |= id(node) in self.seen
            self.seen.add(id(node))
        if self.nodes > self.limits.yaml_nodes:
            how = (
                "expands to more than {:,} values (YAML anchors and aliases multiply them)"
                if self.aliased
                else "holds more than {:,} values"
            )
            raise InputLimitError(
                f"{self.path} {how.format(self.limits.yaml_nodes)}.",
                hint="Write the values out, or raise limits.yaml_nodes in the config."
                if self.aliased
                else "Split it into several files, or raise limits.yaml_nodes in the config.",
            )


def _to_python(
    path: Path,
    node: yaml.Node,
    location: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    budget: _Budget,
) -> Any:
    budget.spend(node, len(location))
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

    def error(
        self, location: tuple[Any, ...], problem: str, fix: str | None, *, named: bool = True
    ) -> WorkflowError:
        """``file:line: location: problem``; the location left out where the problem names it
        (``named=False``) or there is none (the whole file)."""
        line = self.line(location)
        where = f"{self.path}:{line}" if line else str(self.path)
        dotted = ".".join(str(p) for p in location)
        return WorkflowError(
            f"{where}: {dotted}: {problem}" if named and dotted else f"{where}: {problem}",
            hint=fix,
        )

    def validation_error(self, exc: ValidationError, prefix: tuple[Any, ...]) -> WorkflowError:
        first = exc.errors()[0]
        location = (*prefix, *first["loc"])
        message = first["msg"]
        if not location and first["type"] == "model_type":
            message = f"a workflow is a mapping (name, tasks, ...), not {_kind(first['input'])}"
        elif first["type"] == "missing":
            message = f"missing {first['loc'][-1]!r}"
        elif first["type"] == "extra_forbidden":
            message = f"unknown key {first['loc'][-1]!r}"
        more = len(exc.errors()) - 1
        fix = "See docs/workflows.md for the format." + (
            f" ({more} more problem(s))" if more else ""
        )
        return self.error(location, message, fix)


def _kind(value: Any) -> str:
    """What a YAML or JSON value is, for messages.

    >>> _kind([1]), _kind("x"), _kind(3)
    ('a list', 'a string', 'a number')
    """
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true or false"
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"
