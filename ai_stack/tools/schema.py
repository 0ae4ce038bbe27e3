"""The step schema: what the Executor's reply in the tool loop must be, built from the tools
offered, so constrained decoding (a JSON-schema grammar on every backend) makes every step
parse and validate.

A step is one of: ``{"tool": NAME, "arguments": {...}}`` for each tool, its arguments under that
tool's own schema; or ``{"tool": "answer", "arguments": {"text": "..."}}``, the final answer.
Every branch has the same two keys in the same order, so a small model chooses by the name
first and the grammar then holds it to that tool's arguments (a discriminated union on
``tool``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from ai_stack.tools.base import Tool, Toolbox

ANSWER = "answer"


@dataclass(frozen=True)
class Call:
    """A step that calls a tool."""

    tool: str
    arguments: dict[str, Any]

    def key(self) -> str:
        """The call as one string, to tell a repeated call.

        >>> Call("read_file", {"path": "a"}).key() == Call("read_file", {"path": "a"}).key()
        True
        """
        return json.dumps([self.tool, self.arguments], sort_keys=True)


@dataclass(frozen=True)
class Answer:
    """The step that ends the loop."""

    text: str


Step = Call | Answer


class StepInvalid(ValueError):
    """A reply that is not a valid step; the message says why (for a re-ask)."""


def arguments_schema(tool: Tool) -> dict[str, Any]:
    """``tool``'s argument schema as a grammar should see it: an object that takes no other
    keys (else a grammar lets a model add any), titles and descriptions left out.

    >>> from ai_stack.tools.base import Tool
    >>> arguments_schema(Tool("t", "d", {"type": "object", "properties": {}}, print))
    {'type': 'object', 'properties': {}, 'additionalProperties': False}
    """
    schema = _without_notes(copy.deepcopy(tool.parameters))
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
        schema.setdefault("additionalProperties", False)
    return schema


def _without_notes(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_notes(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: (
            {name: _without_notes(value) for name, value in item.items()}
            if key == "properties" and isinstance(item, dict)
            else _without_notes(item)
        )
        for key, item in node.items()
        if key not in ("title", "description", "$schema")
    }


def _branch(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"tool": {"const": name}, "arguments": arguments},
        "required": ["tool", "arguments"],
        "additionalProperties": False,
    }


def step_schema(toolbox: Toolbox, *, answer_only: bool = False) -> dict[str, Any]:
    """The schema of one step with ``toolbox``'s tools (only the answer: ``answer_only``, for
    the step after the limit)."""
    answer = _branch(
        ANSWER,
        {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
            "additionalProperties": False,
        },
    )
    if answer_only or not len(toolbox):
        return answer
    return {"oneOf": [*(_branch(t.name, arguments_schema(t)) for t in toolbox), answer]}


def parse_step(text: str, schema: dict[str, Any]) -> Step:
    """The step ``text`` holds, valid under ``schema``; a :class:`StepInvalid` saying why not.

    >>> from ai_stack.tools.base import Toolbox
    >>> parse_step('{"tool": "answer", "arguments": {"text": "42"}}', step_schema(Toolbox([])))
    Answer(text='42')
    """
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise StepInvalid(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    if isinstance(data, dict) and "oneOf" in schema and isinstance(data.get("tool"), str):
        # name the branch the model chose, so the error says what is wrong with its arguments
        for branch in schema["oneOf"]:
            if branch["properties"]["tool"]["const"] == data["tool"]:
                schema = branch
                break
        else:
            names = [b["properties"]["tool"]["const"] for b in schema["oneOf"]]
            raise StepInvalid(f"no tool named {data['tool']!r}; the tools are {', '.join(names)}")
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(part) for part in exc.absolute_path) or "reply"
        raise StepInvalid(f"{where}: {exc.message}"[:300]) from None
    if data["tool"] == ANSWER:
        return Answer(data["arguments"]["text"])
    return Call(data["tool"], data["arguments"])


__all__ = ["ANSWER", "Answer", "Call", "Step", "StepInvalid", "arguments_schema", "parse_step"]
