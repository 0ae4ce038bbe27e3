"""Judging a final answer with a suite's checker, in the sandbox."""

from __future__ import annotations

import regex

from ai_stack.evals.suite import Checker
from ai_stack.evidence import code_blocks, python_source, run_python
from ai_stack.evidence.markdown import prose_of
from ai_stack.sandbox import Limits, Sandbox, python_executable
from ai_stack.types import Check


def check_answer(sandbox: Sandbox, checker: Checker, answer: str, limits: Limits) -> Check:
    """Pass or fail, with what decided it."""
    blocks = code_blocks(answer)
    source = python_source(blocks)
    program = f"{checker.setup}\n\n{source}" if checker.setup and source else source
    shell = "\n\n".join(b.code for b in blocks if b.language == "shell")
    if checker.asserts:
        if program is None:
            return Check(kind="user", name="checker", passed=False, detail="no Python code")
        checks = run_python(
            sandbox,
            program,
            [{"kind": "user", "name": "checker.py", "code": checker.asserts}],
            limits,
        )
        failed = [c for c in checks if c.passed is False]
        detail = failed[0].detail if failed else "all asserts passed"
        return Check(kind="user", name="checker", passed=not failed, detail=detail)
    if checker.text:  # the answer's text (a reply wrapped whole in a prose fence, unwrapped)
        checks = run_python(
            sandbox,
            f"answer = {prose_of(answer)!r}\n",
            [{"kind": "user", "name": "checker.py", "code": checker.text}],
            limits,
        )
        failed = [c for c in checks if c.passed is False]
        detail = failed[0].detail if failed else "all asserts passed"
        return Check(kind="user", name="checker", passed=not failed, detail=detail)
    if checker.regex and checker.on == "answer":
        return _search(checker.regex, answer, limits.seconds, "no match")
    files = {"answer.md": answer, "solution.sh": shell + "\n", "solution.py": program or ""}
    if checker.regex:  # on stdout: run what the answer offers
        argv = (
            [python_executable(), "-E", "-s", "solution.py"] if program else ["sh", "solution.sh"]
        )
        outcome = sandbox.run(argv, files, limits=limits)
        return _search(
            checker.regex, outcome.stdout, limits.seconds, f"no match in {outcome.stdout[-200:]!r}"
        )
    assert checker.command is not None
    outcome = sandbox.run(["sh", "-c", checker.command], files, limits=limits)
    output = (outcome.stdout + outcome.stderr).strip()[-200:]
    return Check(
        kind="user",
        name="checker",
        passed=outcome.ok,
        detail=f"{outcome.describe()}: {output}" if output else outcome.describe(),
    )


def _search(pattern: str, text: str, seconds: float, missed: str) -> Check:
    """The suite's regex searched in ``text`` for at most ``seconds``: a pattern that
    backtracks without end on this text (``^(a+)+$``) fails the check instead of hanging the
    eval (``re`` cannot be stopped; ``regex`` takes a timeout)."""
    try:
        found = regex.search(pattern, text, regex.M, timeout=seconds)
    except TimeoutError:
        return Check(
            kind="user",
            name="checker",
            passed=False,
            detail=f"the checker's regex gave up after {seconds:g} s on this text",
        )
    return Check(
        kind="user",
        name="checker",
        passed=found is not None,
        detail=f"matched {found.group(0)!r}" if found else missed,
    )
