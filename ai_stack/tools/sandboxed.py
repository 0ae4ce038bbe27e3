"""The tools that run code: ``run_python`` and ``run_shell``, only in the sandbox
(:mod:`ai_stack.sandbox`): a fresh directory, no network, no home directory, the evidence
limits on time, memory and output. Where no isolating sandbox exists they refuse (the model
sees why), unless the user opted in with ``--exec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ai_stack.sandbox import Outcome, Sandbox, python_executable
from ai_stack.tools.base import Tool, ToolError


def describe(outcome: Outcome) -> str:
    """What a run printed and how it ended, as the model reads it.

    >>> describe(Outcome(0, "4\\n", "", 0.1))
    'exit code 0\\nstdout:\\n4'
    """
    parts = [outcome.describe()]
    if outcome.stdout.strip():
        parts.append("stdout:\n" + outcome.stdout.rstrip())
    if outcome.stderr.strip():
        parts.append("stderr:\n" + outcome.stderr.rstrip())
    return "\n".join(parts)


def sandbox_tools(sandbox: Sandbox) -> list[Tool]:
    """``run_python`` and ``run_shell`` in ``sandbox``."""

    def run(argv: list[str], files: dict[str, str] | None = None) -> str:
        if not sandbox.can_run:
            raise ToolError(
                "code cannot run here: no isolating sandbox on this machine (the user may allow "
                "it with --exec)"
            )
        return describe(sandbox.run(argv, files))

    def run_python(args: Mapping[str, Any]) -> str:
        code = args.get("code")
        if not isinstance(code, str) or not code.strip():
            raise ToolError("code must be a non-empty string")
        return run([python_executable(), "-I", "main.py"], {"main.py": code})

    def run_shell(args: Mapping[str, Any]) -> str:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("command must be a non-empty string")
        return run(["/bin/sh", "-c", command])

    return [
        Tool(
            "run_python",
            "Run a Python program in a sandbox (no network, no files of the user); see its output.",
            {
                "type": "object",
                "properties": {"code": {"type": "string", "maxLength": 8000}},
                "required": ["code"],
                "additionalProperties": False,
            },
            run_python,
        ),
        Tool(
            "run_shell",
            "Run a shell command in a sandbox (no network, no files of the user); see its output.",
            {
                "type": "object",
                "properties": {"command": {"type": "string", "maxLength": 2000}},
                "required": ["command"],
                "additionalProperties": False,
            },
            run_shell,
        ),
    ]


__all__ = ["describe", "sandbox_tools"]
