"""Gathering the evidence on one answer: static checks, its form and stated requirements
against what the task asks for, and — in the sandbox only — its code run on the task's examples,
the user's checks and edge-case calls."""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ai_stack.evidence.ask import form_checks, printed_by, requirement_checks, result_form
from ai_stack.evidence.examples import called_name, examples, is_call, onto, splat
from ai_stack.evidence.execution import run_python
from ai_stack.evidence.markdown import (
    CodeBlock,
    does_something,
    functions_of,
    parses,
    program_blocks,
    python_source,
    top_level_names,
)
from ai_stack.evidence.requirements import stated
from ai_stack.evidence.static import static_checks
from ai_stack.sandbox import Limits, Sandbox, SandboxReport
from ai_stack.types import DETAIL_CHARS, Ask, Check, Evidence

NOTHING_RAN = "nothing ran: the code holds no statement (only comments or none)"


@dataclass
class EvidenceCollector:
    """Gathers the evidence for an answer: static checks always; execution when the sandbox
    may run code here. ``user_checks`` are the user's check files (name → text), ``commands``
    the user's check commands."""

    sandbox: Sandbox
    user_checks: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=lambda: Limits(seconds=15))

    def function_of(self, task: str, answer: str) -> str | None:
        """The function edge-case calls would test (the one the task names, else the answer's
        first public one), or None when no calls could run: no Python functions, or no sandbox
        allowed to run code."""
        source = python_source(program_blocks(answer))
        if not self.sandbox.can_run or source is None or not parses(source):
            return None
        public = [name for name in functions_of(source) if not name.startswith("_")]
        return self.target(task, source) or (public[0] if public else None)

    def most_checks(self, task: str, probes: int) -> int:
        """How many checks an answer to ``task`` can get at most (static checks, its form,
        the task's examples and stated requirements, the script, edge-case probes, the user's
        checks): what a prompt showing them is sized by."""
        return (
            5
            + len(examples(task))
            + len(stated(task))
            + probes
            + len(self.user_checks)
            + len(self.commands)
        )

    def collect(
        self, task: str, answer: str, probes: Sequence[str] = (), ask: Ask | None = None
    ) -> Evidence:
        """The checks of one answer; ``probes``: edge-case calls of its Python function;
        ``ask``: what the task asks for (unknown when not given)."""
        started = time.monotonic()
        evidence = self._collect(task, answer, probes, ask or Ask())
        evidence.seconds = round(time.monotonic() - started, 3)
        return evidence

    def _collect(self, task: str, answer: str, probes: Sequence[str], ask: Ask) -> Evidence:
        blocks = program_blocks(answer)
        evidence = Evidence(checks=static_checks(blocks))
        evidence.checks += form_checks(ask, answer, blocks)
        evidence.checks += requirement_checks(ask, answer)
        if not blocks:
            return evidence
        if not self.sandbox.can_run:
            evidence.note = SandboxReport.of(self.sandbox).notes[0]
            return evidence
        source = python_source(blocks)
        if source is not None and parses(source) and not does_something(source):
            evidence.checks.append(
                Check(kind="import", name="running the code", passed=None, detail=NOTHING_RAN)
            )
        elif source is not None and parses(source):
            evidence.checks += run_python(
                self.sandbox, source, self._cases(task, source, probes, ask), self.limits
            )
            evidence.executed = True
            evidence.checks += result_form(ask, evidence.checks)
        for command in self.commands:
            evidence.checks.append(self._run_command(command, answer, blocks, source))
            evidence.executed = True
        return evidence

    def computable(self, ask: Ask, answer: str) -> bool:
        """Whether a result the task asks for could be checked against a program computing it:
        the answer gives it without a program, and the sandbox may run one."""
        return (
            ask.kind == "result"
            and self.sandbox.can_run
            and python_source(program_blocks(answer)) is None
        )

    def computed_result(self, reply: str) -> list[str]:
        """What a program in ``reply`` printed when run in the sandbox: one line, or nothing
        when it does not run, prints nothing, or only prints a constant (``print("Red")`` for
        "name a colour" computes nothing: no fact to check the answer against)."""
        source = python_source(program_blocks(reply))
        if source is None or not parses(source) or prints_a_constant(source):
            return []
        script: list[dict[str, object]] = [{"kind": "script", "name": "computing the result"}]
        checks = run_python(self.sandbox, source, script, self.limits)
        printed = printed_by(checks)
        return printed[:1] if printed and "\n" not in printed[0] else []

    def target(self, task: str, source: str) -> str | None:
        """The function an example applies to: one the task names, else the answer's only
        public top-level function."""
        defined = functions_of(source)
        named = [name for name in defined if re.search(rf"\b{re.escape(name)}\b", task)]
        public = [name for name in defined if not name.startswith("_")]
        if named:
            return named[0]
        return public[0] if len(public) == 1 else None

    def _cases(
        self, task: str, source: str, probes: Sequence[str], ask: Ask
    ) -> list[dict[str, object]]:
        cases: list[dict[str, object]] = []
        target = self.target(task, source)
        defined = top_level_names(source)
        classes = re.search(r"^class\s", source, re.M) is not None
        for example in examples(task):
            call = example.call
            if example.bare:
                if target is None or ask.kind not in ("code", "unknown"):
                    continue
                call = f"{target}(*{call})" if splat(source, target, call) else f"{target}({call})"
            elif called_name(call) not in defined:
                if target is None and classes:
                    continue  # a method in prose ("items() returns []"): nothing to call
                if target:
                    call = onto(call, target)  # an example calling another name tests the answer's
            cases.append(
                {
                    "kind": "example",
                    "name": f"{call} should return {example.expected}",
                    "call": call,
                    "expected": example.expected,
                }
            )
        for probe in probes:
            if is_call(probe.strip()):
                cases.append({"kind": "probe", "name": probe.strip(), "call": probe.strip()})
        for name, code in self.user_checks.items():
            cases.append({"kind": "user", "name": name, "code": code})
        cases.append({"kind": "script", "name": "the answer's own demo code"})
        return cases

    def _run_command(
        self, command: str, answer: str, blocks: list[CodeBlock], source: str | None
    ) -> Check:
        shell = "\n\n".join(b.code for b in blocks if b.language == "shell")
        files = {"answer.md": answer, "solution.sh": shell + "\n", "solution.py": source or ""}
        files.update(self.user_checks)
        outcome = self.sandbox.run(["sh", "-c", command], files, limits=self.limits)
        output = (outcome.stdout + outcome.stderr).strip()[-DETAIL_CHARS:]
        return Check(
            kind="command",
            name=command[:DETAIL_CHARS],
            passed=outcome.ok,
            detail=f"{outcome.describe()}: {output}" if output else outcome.describe(),
        )


def prints_a_constant(source: str) -> bool:
    """Whether a program is nothing but prints of constants.

    >>> prints_a_constant("print('Red')"), prints_a_constant("print(0.17 * 2340)")
    (True, False)
    """
    body = ast.parse(source).body
    return bool(body) and all(
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "print"
        and all(isinstance(argument, ast.Constant) for argument in node.value.args)
        for node in body
    )
