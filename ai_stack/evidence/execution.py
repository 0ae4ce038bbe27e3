"""Running an answer's Python in the sandbox, case by case, through :mod:`.harness`."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from ai_stack.evidence.harness import MARK
from ai_stack.sandbox import Limits, Sandbox, python_executable
from ai_stack.types import DETAIL_CHARS, Check


@cache
def harness_source() -> str:
    """The harness's own source, copied into each sandbox run."""
    return resources.files("ai_stack.evidence").joinpath("harness.py").read_text("utf-8")


def run_python(
    sandbox: Sandbox, source: str, cases: list[dict[str, object]], limits: Limits
) -> list[Check]:
    """Load ``source`` as a module in the sandbox and run each case against it: ``example``
    and ``probe`` cases are calls (compared with ``expected`` when given), ``user`` cases are
    code with asserts or ``test_*`` functions, the module's names in scope."""
    outcome = sandbox.run(
        [python_executable(), "-E", "-s", "harness.py"],
        {"solution.py": source, "harness.py": harness_source(), "cases.json": json.dumps(cases)},
        limits=limits,
    )
    results = []
    for line in outcome.stdout.split("\n"):  # not splitlines(): it splits at the mark's \x1e
        if line.startswith(MARK):  # not the answer's own prints
            results.append(json.loads(line[len(MARK) :]))
    loaded = next((r for r in results if r.get("kind") == "import"), None)
    if loaded is None or loaded["error"]:
        detail = (
            loaded["error"]
            if loaded is not None
            else f"{outcome.describe()}; {outcome.stderr.strip()[-DETAIL_CHARS:]}"
        )
        failed = Check(kind="import", name="running the code", passed=False, detail=detail)
        return [failed.model_copy(update={"detail": detail[:DETAIL_CHARS]})]
    checks = [Check(kind="import", name="running the code", passed=True)]
    for result in results:
        if result.get("kind") == "import" or result.get("skip"):
            continue
        error = result.get("error")
        detail = error or result.get("detail") or ""
        if "actual" in result and not error:
            detail = f"returned {result['actual']}"
        checks.append(
            Check(
                kind=result["kind"],
                name=result["name"][:DETAIL_CHARS],
                passed=result.get("passed"),
                detail=str(detail)[:DETAIL_CHARS],
            )
        )
    if len(results) - 1 < len(cases):  # killed part-way (time, output)
        checks.append(
            Check(
                kind="import",
                name="finishing the checks",
                passed=False,
                detail=outcome.describe(),
            )
        )
    return checks
