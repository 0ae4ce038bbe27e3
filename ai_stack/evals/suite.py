"""Eval suites: tasks with checkers the models never see.

YAML::

    name: my suite
    tasks:
      - id: rle
        task: "Write a Python function compress(s) ... compress('aaabcc') -> 'a3b1c2'."
        check:
          asserts: |              # Python, with the answer's functions in scope
            assert compress('') == ''
      - id: lines
        task: Write a shell one-liner that ...
        check:
          command: sh solution.sh | grep -qx 5    # run beside solution.sh / solution.py
      - id: date
        task: Convert "March 5, 2024" to ISO 8601. Reply with the date only.
        check:
          regex: '\\b2024-03-05\\b'               # searched in the answer (or on: stdout)
      - id: sky
        task: Explain in two sentences why the sky is blue.
        check:
          text: |                 # Python, with the answer's text as `answer`
            assert answer.count(".") == 2

HumanEval-style JSON lines (``task_id``, ``prompt``, ``test``, ``entry_point``) load too, so
standard sets run unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ai_stack.config import LimitsSettings
from ai_stack.errors import WorkflowError
from ai_stack.workflow import parse_document, read_bounded

KINDS = ("asserts", "text", "command", "regex")


class Checker(BaseModel):
    """How a final answer is judged: exactly one of ``asserts`` (Python with the answer's code in
    scope), ``text`` (Python with the answer's text as ``answer``), ``command``, ``regex``.

    ``setup`` is Python put before the answer's code (HumanEval prompts' imports).
    """

    model_config = ConfigDict(extra="forbid")

    asserts: str | None = None
    text: str | None = None
    command: str | None = None
    regex: str | None = None
    on: Literal["answer", "stdout"] = "answer"
    setup: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> Checker:
        kinds = [k for k in KINDS if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("give exactly one of asserts, text, command, regex")
        if self.regex:
            try:
                regex.compile(self.regex)  # the engine the checker runs it with
            except regex.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k))


class SuiteTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")]
    task: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    context: str | None = None
    check: Checker


class _SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    tasks: list[SuiteTask] = Field(min_length=1)


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    tasks: list[SuiteTask]
    digest: str  # of the file's bytes


def load_suite(path: Path, limits: LimitsSettings | None = None) -> Suite:
    """Read and validate a suite; every problem is one WorkflowError naming the file."""
    limits = limits or LimitsSettings()
    raw = read_bounded(path, limits, "Eval suite")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkflowError(f"{path} is not UTF-8 text") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        name, tasks = path.stem, _humaneval(path, text)
    else:
        data, _ = parse_document(path, text, limits)
        try:
            parsed = _SuiteFile.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise WorkflowError(
                f"{path}: {where}: {first['msg']}", hint="See docs/eval.md for the suite format."
            ) from None
        name, tasks = parsed.name, parsed.tasks
    if len(tasks) > limits.tasks:
        raise WorkflowError(
            f"{path} has {len(tasks):,} tasks, over the limit of {limits.tasks:,}.",
            hint="Split the suite, or raise limits.tasks in the config.",
        )
    duplicates = sorted(i for i, n in Counter(task.id for task in tasks).items() if n > 1)
    if duplicates:
        raise WorkflowError(f"{path}: duplicate task id {duplicates[0]!r}")
    for task in tasks:  # a checker that cannot run would fail every answer after the whole run
        code = task.check.asserts or task.check.text
        if code is None:
            continue
        try:
            compile(f"{task.check.setup}\n{code}" if task.check.setup else code, task.id, "exec")
        except SyntaxError as exc:
            raise WorkflowError(
                f"{path}: task {task.id!r}: its checker does not compile: {exc.msg} "
                f"(line {exc.lineno} of the checker)",
                hint="Fix the checker's Python; no model has run yet.",
            ) from None
    return Suite(path.resolve(), name, tasks, hashlib.sha256(raw).hexdigest())


class _HumanEvalLine(BaseModel):
    task_id: str | int | None = None
    prompt: str
    test: str
    entry_point: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _humaneval(path: Path, text: str) -> list[SuiteTask]:
    tasks = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = _HumanEvalLine.model_validate_json(line)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(map(str, problem["loc"])) or "the line"
            raise WorkflowError(
                f"{path}:{number}: not a HumanEval-style line ({where}: {problem['msg']})",
                hint="Each line is a JSON object with prompt and test (text) and entry_point "
                "(a function name).",
            ) from None
        prompt, test, entry = item.prompt, item.test, item.entry_point
        task_id = re.sub(r"[^A-Za-z0-9_.-]", "-", str(item.task_id or number))
        imports = "\n".join(
            line for line in prompt.splitlines() if re.match(r"(import|from)\s", line)
        )
        tasks.append(
            SuiteTask(
                id=task_id.strip("-.") or str(number),
                task="Complete this Python function. Reply with the whole function in a "
                f"```python block.\n\n```python\n{prompt.rstrip()}\n```",
                check=Checker(asserts=f"{test}\n\ncheck({entry})\n", setup=imports),
            )
        )
    if not tasks:
        raise WorkflowError(f"{path} has no tasks")
    return tasks
