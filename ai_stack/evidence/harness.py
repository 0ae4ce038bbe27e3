"""The program that runs an answer's code in the sandbox: ``python harness.py`` in a directory
holding ``solution.py`` (the answer's Python) and ``cases.json`` (what to run).

It imports the answer as a module (so an ``if __name__ == "__main__"`` block does not run),
evaluates each case with a time limit of its own, and prints one JSON line per result, each
after a mark the answer's own prints cannot fake by accident. It is copied into the sandbox as
it is and run there alone: it imports nothing of ai_stack.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import signal
import sys
import traceback
import types
from typing import Any

LIMIT = 3  # seconds per case
MARK = "\x1eai-stack "
SOLUTION = "solution.py"
# Definitions run first (functions, classes, imports, assignments); the answer's own demo code —
# prints, calls — runs only as the "script" case, so a crash there hides no other check.
KEEP = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Import,
    ast.ImportFrom,
    ast.Assign,
    ast.AnnAssign,
)


def _timeout(signum: int, frame: object) -> None:
    raise TimeoutError(f"took longer than {LIMIT} s")


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == SOLUTION]


def _deliberate(exc: BaseException) -> bool:
    frames = _frames(exc)
    return bool(frames) and (frames[-1].line or "").strip().startswith("raise")


def _where(exc: BaseException) -> str:
    frames = _frames(exc)
    at = f" (line {frames[-1].lineno}: {(frames[-1].line or '').strip()})" if frames else ""
    return f"raised {type(exc).__name__}: {exc}{at}"


def _emit(result: dict[str, Any]) -> None:
    print(MARK + json.dumps(result), flush=True)


def _assertion(case: dict[str, Any], exc: AssertionError) -> str:
    """The line of a user check whose assert failed (compiled from text: linecache has none)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == case["name"]]
    lines = case["code"].splitlines()
    line = lines[frames[-1].lineno - 1].strip() if frames and frames[-1].lineno else ""
    return "assertion failed: " + line + (f" ({exc})" if str(exc) else "")


def _run_case(case: dict[str, Any], namespace: dict[str, Any], demo: list[ast.stmt]) -> None:
    result: dict[str, Any] = {"kind": case["kind"], "name": case["name"]}
    signal.alarm(LIMIT)
    try:
        if case["kind"] == "script":
            if not demo:
                result["skip"] = True
            else:
                printed = io.StringIO()
                with contextlib.redirect_stdout(printed):
                    exec(compile(ast.Module(demo, []), SOLUTION, "exec"), namespace)
                result["passed"] = True
                if printed.getvalue().strip():
                    result["detail"] = "printed: " + printed.getvalue().strip()[:300]
        elif case["kind"] == "user":
            scope = dict(namespace)
            exec(compile(case["code"], case["name"], "exec"), scope)
            tests = [v for k, v in scope.items() if k.startswith("test_") and callable(v)]
            for test in tests:
                test()
            result["passed"] = True
            result["detail"] = f"{len(tests)} test function(s) passed" if tests else "passed"
        else:
            actual = eval(case["call"], namespace)
            result["actual"] = _short(actual)
            if case.get("expected") is not None:
                expected = eval(case["expected"], {})
                result["passed"] = actual == expected or (
                    isinstance(actual, list | tuple)
                    and isinstance(expected, list | tuple)
                    and list(actual) == list(expected)
                )
    except AssertionError as exc:
        result["error"] = _assertion(case, exc) if case["kind"] == "user" else _where(exc)
        # The answer's own demo asserting is its own test of itself, and a small model's tests
        # are often wrong (it asserted human_size(2**30 - 1) == '1 GiB'): a result to judge, not
        # a failure; the task's examples and the user's checks decide.
        result["passed"] = None if case["kind"] == "script" else False
    except BaseException as exc:
        result["error"] = _where(exc)
        result["passed"] = False
        if case["kind"] == "probe":
            # A call that does not fit the function is the prober's mistake: dropped. An input
            # the answer rejects on purpose (a raise statement), of a type it was not written
            # for, or that needs a file the sandbox lacks, is a result to judge. Anything else it
            # trips over is a bug.
            if isinstance(exc, TypeError) and not _frames(exc):
                result["skip"] = True
            elif _deliberate(exc) or isinstance(exc, TypeError | AttributeError | OSError):
                result["passed"] = None
    finally:
        signal.alarm(0)
    _emit(result)


def main() -> None:
    signal.signal(signal.SIGALRM, _timeout)
    with open("cases.json") as handle:
        cases = json.load(handle)
    module = types.ModuleType("solution")
    module.__file__ = SOLUTION
    sys.modules["solution"] = module
    with open(SOLUTION) as handle:
        tree = ast.parse(handle.read())
    definitions: list[ast.stmt] = [node for node in tree.body if isinstance(node, KEEP)]
    demo = [
        node
        for node in tree.body
        if not isinstance(node, KEEP)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]
    signal.alarm(LIMIT)
    try:
        exec(compile(ast.Module(definitions, []), SOLUTION, "exec"), module.__dict__)
        loaded = None
    except BaseException as exc:
        loaded = _where(exc)
    finally:
        signal.alarm(0)
    _emit({"kind": "import", "error": loaded})
    if loaded is None:
        for case in cases:
            _run_case(case, module.__dict__, demo)


if __name__ == "__main__":
    main()
