"""Evidence about an answer, so the Critic and the Executor work from facts rather than opinions.

For the code in an answer:

- **static checks**, always (they run nothing): Python syntax and undefined names (pyflakes),
  shell syntax (``bash -n``);
- **execution**, in the :mod:`~ai_stack.sandbox` only: the examples the task states
  (``compress('aaabcc') -> 'a3b1c2'``, doctest ``>>>`` lines, ``Input:``/``Output:`` pairs), the
  user's checks (``--check FILE``: asserts or ``test_*`` functions with the answer's names in
  scope; ``--check-cmd CMD``: a command run beside the answer's files), and edge-case calls the
  Critic proposes, whose actual results it then judges.

Each fact is a :class:`Check`; ``passed`` is True or False for what can be decided, None for an
output shown for judgement.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pyflakes.api
import pyflakes.messages

from ai_stack.sandbox import Limits, Sandbox, SandboxReport, python_executable
from ai_stack.types import Check, Evidence

DETAIL_CHARS = 300
_SERIOUS = (
    pyflakes.messages.UndefinedName,
    pyflakes.messages.UndefinedLocal,
    pyflakes.messages.UndefinedExport,
    pyflakes.messages.ReturnOutsideFunction,
    pyflakes.messages.YieldOutsideFunction,
    pyflakes.messages.DuplicateArgument,
)
_PYTHON = {"python", "py", "python3", "py3"}
_SHELL = {"bash", "sh", "shell", "zsh", "console"}
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)


@dataclass(frozen=True, slots=True)
class CodeBlock:
    language: Literal["python", "shell", "other"]
    code: str


def code_blocks(answer: str) -> list[CodeBlock]:
    """The fenced code blocks of a Markdown answer (an unclosed last fence counts), by language.

    >>> text = "x\\n```python\\ndef f(): pass\\n```\\n```bash\\nls\\n```"
    >>> [b.language for b in code_blocks(text)]
    ['python', 'shell']
    """
    blocks = []
    for tag, code in _FENCE.findall(answer):
        code = textwrap.dedent(code).strip("\n")
        if not code.strip():
            continue
        tag = tag.lower()
        if tag in _PYTHON or (
            not tag and _parses(code) and re.search(r"^\s*(def|class|import|from)\b", code, re.M)
        ):
            blocks.append(CodeBlock("python", code))
        elif tag in _SHELL or not tag:
            blocks.append(CodeBlock("shell", _strip_prompts(code)))
        else:
            blocks.append(CodeBlock("other", code))
    return blocks


def _strip_prompts(code: str) -> str:
    """``$ ls`` → ``ls``: shell blocks often show a prompt."""
    lines = code.splitlines()
    if lines and all(line.startswith("$ ") or not line.strip() for line in lines):
        return "\n".join(line[2:] for line in lines)
    return code


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def python_source(blocks: Sequence[CodeBlock]) -> str | None:
    """The program an answer offers: its Python blocks that define something, joined (usage
    snippets after them are left out), else its first Python block."""
    python = [b.code for b in blocks if b.language == "python"]
    if not python:
        return None
    defining = [code for code in python if re.search(r"^\s*(def|class)\s", code, re.M)]
    return "\n\n".join(defining) if defining else python[0]


# -- static checks ---------------------------------------------------------------------------


class _Collector:
    """A pyflakes reporter that keeps what it reports."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def syntaxError(self, filename: str, msg: str, lineno: int, offset: int, text: str) -> None:
        line = (text or "").strip()
        self.checks.append(
            Check(
                kind="syntax",
                name="Python syntax",
                passed=False,
                detail=f"line {lineno}: {msg}: {line}"[:DETAIL_CHARS],
            )
        )

    def unexpectedError(self, filename: str, msg: str) -> None:
        self.checks.append(Check(kind="syntax", name="Python syntax", passed=False, detail=msg))

    def flake(self, message: pyflakes.messages.Message) -> None:
        if isinstance(message, _SERIOUS):
            text = message.message % message.message_args
            self.checks.append(
                Check(
                    kind="names",
                    name="names defined",
                    passed=False,
                    detail=f"line {message.lineno}: {text}",
                )
            )


def static_checks(blocks: Sequence[CodeBlock]) -> list[Check]:
    """Syntax and undefined names for Python, syntax for shell. Runs nothing."""
    checks: list[Check] = []
    source = python_source(blocks)
    if source is not None:
        collector = _Collector()
        pyflakes.api.check(source, "answer.py", collector)
        checks += collector.checks
        if not collector.checks:
            checks.append(Check(kind="syntax", name="Python syntax and names", passed=True))
    bash = shutil.which("bash")
    for block in blocks:
        if block.language != "shell" or bash is None:
            continue
        done = subprocess.run(
            [bash, "-n"], input=block.code, capture_output=True, text=True, timeout=5, check=False
        )
        detail = done.stderr.replace("bash: ", "").strip()[:DETAIL_CHARS]
        checks.append(
            Check(
                kind="syntax",
                name=f"shell syntax: {_first_line(block.code)}",
                passed=done.returncode == 0,
                detail=detail,
            )
        )
    return checks


def _first_line(code: str, width: int = 60) -> str:
    line = code.strip().splitlines()[0] if code.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


# -- examples stated in the task --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Example:
    """``call`` gives ``expected``. ``call`` is a Python expression, or a bare input to give to
    the answer's function (``'aaabcc' -> 'a3b1c2'``)."""

    call: str
    expected: str
    bare: bool = False


_ARROW = re.compile(
    r"\s*(?:->|→|=>|==>|==|\bshould return\b|\breturns\b|\bshould give\b|\bgives\b)\s*"
)


def examples(task: str) -> list[Example]:
    """Input/output examples the task states: doctest lines, ``expr -> value`` (also ``→``,
    ``=>``, ``==``, ``returns``, ``should return``, ``gives``), ``Input:``/``Output:`` pairs.

    >>> examples("For example compress('aaabcc') should return 'a3b1c2'.")
    [Example(call="compress('aaabcc')", expected="'a3b1c2'", bare=False)]
    >>> examples("'aaabcc' -> 'a3b1c2' and '' -> ''")[1]
    Example(call="''", expected="''", bare=True)
    >>> examples(">>> add(2, 3)\\n5")
    [Example(call='add(2, 3)', expected='5', bare=False)]
    """
    found: list[Example] = []
    found += _doctests(task)
    for match in _ARROW.finditer(task):
        left = _expression_before(task[: match.start()])
        right = _literal_after(task[match.end() :])
        if left is not None and right is not None:
            found.append(Example(left[0], right, bare=left[1]))
    for match in re.finditer(r"(?im)^\W*input\s*:\s*(.+?)\s*$\s*^\W*output\s*:\s*(.+?)\s*$", task):
        value, expected = _literal_after(match.group(1)), _literal_after(match.group(2))
        if value is not None and expected is not None:
            found.append(Example(value, expected, bare=True))
    return list(dict.fromkeys(found))


def _doctests(text: str) -> list[Example]:
    found = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">>> ") and index + 1 < len(lines):
            expected = lines[index + 1].strip()
            call = stripped[4:].strip()
            if _is_literal(expected) and _is_call(call):
                found.append(Example(call, expected))
    return found


def _expression_before(text: str) -> tuple[str, bool] | None:
    """The longest call (``name(...)``) or literal that ends ``text``; bare is True for a
    literal."""
    text = text.rstrip()
    best: tuple[str, bool] | None = None
    for start in range(len(text) - 1, max(len(text) - 300, -1), -1):
        candidate = text[start:]
        if not candidate[:1].strip():
            continue
        if _is_call(candidate):
            best = (candidate, False)
        elif _is_literal(candidate) and not re.match(r"[\w.]", text[start - 1 : start] or " "):
            best = (candidate, True)
    return best


def _literal_after(text: str) -> str | None:
    """The longest literal that starts ``text`` (trailing punctuation dropped)."""
    text = text.lstrip()
    best = None
    for end in range(1, min(len(text), 300) + 1):
        candidate = text[:end]
        continues = re.match(r"\w|\.\d", text[end : end + 2])  # 2 of 2.5, 2. of 2.5
        if candidate.endswith(",") or (re.match(r"[\w.]", candidate[-1]) and continues):
            continue
        if _is_literal(candidate):
            best = candidate
    if best is not None and best.endswith("."):  # "returns 5." is 5, not 5.0
        best = best[:-1] if _is_literal(best[:-1]) else best
    return best


def _is_call(text: str) -> bool:
    """``name(literal, ...)``: a call whose arguments are all literals (so ``f(s) returns True
    if ...`` in prose is no example)."""
    if text != text.strip():
        return False
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError):
        return False
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return False
    arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
    placeholder = any(isinstance(a, ast.Constant) and a.value is Ellipsis for a in arguments)
    return not placeholder and all(_is_literal(ast.unparse(argument)) for argument in arguments)


def _is_literal(text: str) -> bool:
    if text != text.strip() or not text:
        return False
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


# -- what the task asks for -------------------------------------------------------------------

# Generous on purpose: a request for code taken for a question would lose the user's program,
# a question taken for a request for code only keeps the program it was answered with.
_CODE_REQUEST = re.compile(
    r"\b(functions?|scripts?|programs?|code|one-?liners?|commands?|class(es)?|methods?|"
    r"snippets?|implement\w*|regex(es|p)?|regular expressions?|quer(y|ies)|modules?|"
    r"librar(y|ies)|packages?|api|algorithms?|loops?|syntax|examples?|explain\w*|show|"
    r"write|how (to|do|does|can|could|would|should)|python|bash|shell|zsh|sh|awk|sed|sql|"
    r"javascript|typescript|java|rust|golang|c\+\+|c#|ruby|php|swift|kotlin)(?!\w)",
    re.I,
)


def asks_for_code(task: str) -> bool:
    """Whether the task asks for code (a function, a script, a command...) rather than a result.

    >>> asks_for_code("Write a shell one-liner that prints the largest file.")
    True
    >>> asks_for_code("Convert 72 degrees Fahrenheit to Celsius. Reply with the number only.")
    False
    >>> asks_for_code("How do I reverse a list in Python?"), asks_for_code("How many days in May?")
    (True, False)
    """
    return _CODE_REQUEST.search(task) is not None


def result_form(task: str, checks: Sequence[Check], earlier: Sequence[str] = ()) -> list[Check]:
    """A failed check when the task asks for a result and the answer is a program that prints
    it: the user asked for the number, not for code that computes it. Program-aided answers are
    how small models get arithmetic right (PAL, Gao et al. 2022); the program's output, run in
    the sandbox, is the result the answer should give. ``earlier``: the conversation's earlier
    requests ("now make it print in upper case" may be about the script asked for before)."""
    if asks_for_code(task) or any(asks_for_code(text) for text in earlier):
        return []
    printed = [
        c.detail.removeprefix("printed: ")
        for c in checks
        if c.kind == "script" and c.passed and c.detail.startswith("printed: ")
    ]
    if not printed:
        return []
    return [
        Check(
            kind="result",
            name="the task asks for a result, not a program",
            passed=False,
            detail=f"your program printed: {printed[0]}"[:DETAIL_CHARS],
        )
    ]


# -- running code ------------------------------------------------------------------------------

_MARK = "\x1eai-stack "
# Imports the answer as a module (so an ``if __name__ == "__main__"`` block does not run), then
# evaluates each call with a time limit of its own, and prints one JSON line per result.
_HARNESS = r"""
import ast, contextlib, io, json, signal, sys, traceback, types

def _timeout(signum, frame):
    raise TimeoutError("took longer than %d s" % LIMIT)

def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

def _frames(exc):
    return [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "solution.py"]

def _deliberate(exc):
    frames = _frames(exc)
    return bool(frames) and (frames[-1].line or "").strip().startswith("raise")

def _where(exc):
    frames = _frames(exc)
    at = " (line %d: %s)" % (frames[-1].lineno, (frames[-1].line or "").strip()) if frames else ""
    return "raised %s: %s%s" % (type(exc).__name__, exc, at)

LIMIT = 3
MARK = "\x1eai-stack "
signal.signal(signal.SIGALRM, _timeout)
cases = json.load(open("cases.json"))
module = types.ModuleType("solution")
module.__file__ = "solution.py"
sys.modules["solution"] = module
# Definitions first (functions, classes, imports, assignments); the answer's own demo code —
# prints, calls — runs only as the "script" case, so a crash there hides no other check.
tree = ast.parse(open("solution.py").read())
KEEP = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
        ast.Assign, ast.AnnAssign)
definitions = [node for node in tree.body if isinstance(node, KEEP)]
demo = [node for node in tree.body if not isinstance(node, KEEP)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
signal.alarm(LIMIT)
try:
    exec(compile(ast.Module(definitions, []), "solution.py", "exec"), module.__dict__)
    loaded = None
except BaseException as exc:
    loaded = _where(exc)
finally:
    signal.alarm(0)
print(MARK + json.dumps({"kind": "import", "error": loaded}))
namespace = module.__dict__
for case in cases if loaded is None else []:
    result = {"kind": case["kind"], "name": case["name"]}
    signal.alarm(LIMIT)
    try:
        if case["kind"] == "script":
            if not demo:
                result["skip"] = True
            else:
                printed = io.StringIO()
                with contextlib.redirect_stdout(printed):
                    exec(compile(ast.Module(demo, []), "solution.py", "exec"), namespace)
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
            result["detail"] = "%d test function(s) passed" % len(tests) if tests else "passed"
        else:
            actual = eval(case["call"], namespace)
            result["actual"] = _short(actual)
            if case.get("expected") is not None:
                expected = eval(case["expected"], {})
                result["passed"] = actual == expected or (
                    isinstance(actual, (list, tuple)) and isinstance(expected, (list, tuple))
                    and list(actual) == list(expected))
    except AssertionError as exc:
        if case["kind"] == "script":
            result["passed"] = False
            result["error"] = _where(exc)
            print(MARK + json.dumps(result))
            continue
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == case["name"]]
        lines = case["code"].splitlines()  # compiled from text: linecache has no copy of it
        line = lines[frames[-1].lineno - 1].strip() if frames and frames[-1].lineno else ""
        result["passed"] = False
        result["error"] = ("assertion failed: " + line + (" (%s)" % exc if str(exc) else ""))
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
            elif _deliberate(exc) or isinstance(exc, (TypeError, AttributeError, OSError)):
                result["passed"] = None
    finally:
        signal.alarm(0)
    print(MARK + json.dumps(result))
"""


@dataclass
class EvidenceCollector:
    """Gathers the evidence for an answer: static checks always; execution when the sandbox
    may run code here. ``checks`` are the user's check files (name → text), ``commands`` the
    user's check commands."""

    sandbox: Sandbox
    checks: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=lambda: Limits(seconds=15))

    def function_of(self, task: str, answer: str) -> str | None:
        """The function edge-case calls would test (the one the task names, else the answer's
        first public one), or None when no calls could run: no Python functions, or no sandbox
        allowed to run code."""
        source = python_source(code_blocks(answer))
        if not self.sandbox.can_run or source is None or not _parses(source):
            return None
        defined = [
            node.name
            for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
        ]
        return self.target(task, source) or (defined[0] if defined else None)

    def most_checks(self, task: str, probes: int) -> int:
        """How many checks an answer to ``task`` can get at most (static checks, the task's
        examples, the script, edge-case probes, the user's checks): what a prompt showing
        them is sized by."""
        return 4 + len(examples(task)) + probes + len(self.checks) + len(self.commands)

    def collect(
        self, task: str, answer: str, probes: Sequence[str] = (), earlier: Sequence[str] = ()
    ) -> Evidence:
        """The checks of one answer; ``probes``: edge-case calls of its Python function;
        ``earlier``: the conversation's earlier requests (the summary, the turns' tasks)."""
        started = time.monotonic()
        evidence = self._collect(task, answer, probes, earlier)
        evidence.seconds = round(time.monotonic() - started, 3)
        return evidence

    def _collect(
        self, task: str, answer: str, probes: Sequence[str], earlier: Sequence[str]
    ) -> Evidence:
        blocks = code_blocks(answer)
        evidence = Evidence(checks=static_checks(blocks))
        if not blocks:
            if asks_for_code(task):
                evidence.checks.append(
                    Check(
                        kind="form",
                        name="the task asks for code",
                        passed=False,
                        detail="the answer has no code block",
                    )
                )
            return evidence
        if not self.sandbox.can_run:
            evidence.note = SandboxReport.of(self.sandbox).notes[0]
            return evidence
        source = python_source(blocks)
        if source is not None and _parses(source):
            evidence.checks += self._run_python(task, source, probes)
            evidence.executed = True
            evidence.checks += result_form(task, evidence.checks, earlier)
        for command in self.commands:
            evidence.checks.append(self._run_command(command, answer, blocks, source))
            evidence.executed = True
        return evidence

    def target(self, task: str, source: str) -> str | None:
        """The function a bare example applies to: one the task names, else the answer's only
        public top-level function."""
        defined = [
            node.name
            for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        named = [name for name in defined if re.search(rf"\b{re.escape(name)}\b", task)]
        public = [name for name in defined if not name.startswith("_")]
        if named:
            return named[0]
        return public[0] if len(public) == 1 else None

    def _cases(self, task: str, source: str, probes: Sequence[str]) -> list[dict[str, object]]:
        cases: list[dict[str, object]] = []
        target = self.target(task, source)
        for example in examples(task):
            call = example.call
            if example.bare:
                if target is None:
                    continue
                call = f"{target}(*{call})" if _splat(source, target, call) else f"{target}({call})"
            cases.append(
                {
                    "kind": "example",
                    "name": f"{call} should return {example.expected}",
                    "call": call,
                    "expected": example.expected,
                }
            )
        for probe in probes:
            if _is_call(probe.strip()):
                cases.append({"kind": "probe", "name": probe.strip(), "call": probe.strip()})
        for name, code in self.checks.items():
            cases.append({"kind": "user", "name": name, "code": code})
        cases.append({"kind": "script", "name": "the answer's own demo code"})
        return cases

    def _run_python(self, task: str, source: str, probes: Sequence[str]) -> list[Check]:
        return run_python(self.sandbox, source, self._cases(task, source, probes), self.limits)

    def _run_command(
        self, command: str, answer: str, blocks: list[CodeBlock], source: str | None
    ) -> Check:
        shell = "\n\n".join(b.code for b in blocks if b.language == "shell")
        files = {"answer.md": answer, "solution.sh": shell + "\n", "solution.py": source or ""}
        files.update(self.checks)
        outcome = self.sandbox.run(["sh", "-c", command], files, limits=self.limits)
        output = (outcome.stdout + outcome.stderr).strip()[-DETAIL_CHARS:]
        return Check(
            kind="command",
            name=command[:DETAIL_CHARS],
            passed=outcome.ok,
            detail=f"{outcome.describe()}: {output}" if output else outcome.describe(),
        )


def run_python(
    sandbox: Sandbox, source: str, cases: list[dict[str, object]], limits: Limits
) -> list[Check]:
    """Load ``source`` as a module in the sandbox and run each case against it: ``example``
    and ``probe`` cases are calls (compared with ``expected`` when given), ``user`` cases are
    code with asserts or ``test_*`` functions, the module's names in scope."""
    outcome = sandbox.run(
        [python_executable(), "-E", "-s", "harness.py"],
        {"solution.py": source, "harness.py": _HARNESS, "cases.json": json.dumps(cases)},
        limits=limits,
    )
    results = []
    for line in outcome.stdout.split("\n"):  # not splitlines(): it splits at the mark's \x1e
        if line.startswith(_MARK):  # not the answer's own prints
            results.append(json.loads(line[len(_MARK) :]))
    loaded = next((r for r in results if r.get("kind") == "import"), None)
    if loaded is None:
        detail = f"{outcome.describe()}; {outcome.stderr.strip()[-DETAIL_CHARS:]}"
        return [Check(kind="import", name="running the code", passed=False, detail=detail)]
    if loaded["error"]:
        return [
            Check(
                kind="import",
                name="running the code",
                passed=False,
                detail=loaded["error"][:DETAIL_CHARS],
            )
        ]
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


def _splat(source: str, function: str, literal: str) -> bool:
    """Whether a bare tuple input is the function's positional arguments (its arity matches)."""
    value = ast.literal_eval(literal)
    if not isinstance(value, tuple):
        return False
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return len(node.args.args) == len(value) > 1
    return False


__all__ = [
    "Check",
    "CodeBlock",
    "Evidence",
    "EvidenceCollector",
    "Example",
    "code_blocks",
    "examples",
    "python_source",
    "static_checks",
]
