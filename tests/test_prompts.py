"""Role templates: defaults render, user overrides win file by file, errors are clear, and the
templates ship inside the wheel."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ai_stack.conversation import ConversationView
from ai_stack.errors import ConfigError
from ai_stack.prompts import FOLLOW_UPS, PROMPT_NAMES, ROLE_PROMPTS, PromptLibrary
from ai_stack.types import Attachment, Check, Critique, Evidence, Plan, PlanStep, Turn

ROOT = Path(__file__).resolve().parent.parent
PLAN = Plan(goal="count lines", steps=[PlanStep(title="find", detail="use find")])
CRITIQUE = Critique(round=1, issues=["no wc"], score=3, verdict="revise")
EVIDENCE = Evidence(
    checks=[
        Check(kind="example", name="f(1) == 2", passed=False, detail="got 3"),
        Check(kind="probe", name="f(0)", passed=None, detail="got 0"),
    ]
)
ANSWER_CRITIQUE = Critique(
    round=1, issues=["f(0) is wrong"], score=3, verdict="revise", subject="answer"
)
SHARED = {"conversation": None, "files": []}
VARIABLES = {
    "planner": SHARED,
    "critic": {**SHARED, "plan": PLAN, "round": 1, "approve_score": 8},
    "revise": {**SHARED, "plan": PLAN, "critique": CRITIQUE},
    "executor": {**SHARED, "plan": PLAN},
    "probe": {"probes": 3, "function": "f"},
    "repeat": {},
    "compute": {},
    "tools": {"tools": [{"name": "read_file", "description": "Read.", "parameters": "{}"}]},
    "review": {"evidence": EVIDENCE, "round": 1, "approve_score": 8},
    "fix": {"evidence": EVIDENCE, "critique": ANSWER_CRITIQUE},
    "contract": SHARED,
    "rethink": {**SHARED, "answer": "def f(x): return 3", "evidence": EVIDENCE, "ask": "code"},
    "shape": {**SHARED, "shape": 'a JSON object with "text"', "requirements": ["in 2 lines"]},
}


@pytest.mark.parametrize("name", ROLE_PROMPTS)
def test_every_role_template_renders_one_user_message_with_the_task(name: str) -> None:
    messages = PromptLibrary().render(name, task="TASK-TEXT", context="CTX", **VARIABLES[name])
    assert [m["role"] for m in messages] == ["user"]  # no system message framing the call
    content = messages[0]["content"]
    assert "TASK-TEXT" in content and "CTX" in content
    if name != "contract":  # the others start with the task: a shared prefix the cache reuses
        assert content.startswith("TASK-TEXT")
    if "plan" in VARIABLES[name]:
        assert "1. find: use find" in content


def test_the_executor_is_sent_the_task_itself_as_a_plain_chat_would() -> None:
    """--direct is the model at its own quality: no team framing, no instruction about fences
    (a coder model answered prose with code under them)."""
    messages = PromptLibrary().render("executor", task="Write a haiku about rain.", context=None)
    assert messages == [{"role": "user", "content": "Write a haiku about rain."}]


@pytest.mark.parametrize("name", FOLLOW_UPS)
def test_follow_ups_are_one_user_message(name: str) -> None:
    (message,) = PromptLibrary().render(name, task="t", context=None, **VARIABLES[name])
    assert message["role"] == "user" and message["content"]


def test_evidence_reaches_the_review_and_the_fix() -> None:
    library = PromptLibrary()
    review = library.render("review", task="t", context=None, **VARIABLES["review"])[0]["content"]
    assert "- FAIL: f(1) == 2: got 3" in review and "- RESULT: f(0): got 0" in review
    fix = library.render("fix", task="t", context=None, **VARIABLES["fix"])[0]["content"]
    assert "- FAIL: f(1) == 2: got 3" in fix and "- f(0) is wrong" in fix


def test_context_is_left_out_when_absent() -> None:
    user = PromptLibrary().render("planner", task="t", context=None, **SHARED)[-1]["content"]
    assert "Context" not in user


def test_revise_prompt_carries_the_critique() -> None:
    user = PromptLibrary().render("revise", task="t", context=None, **VARIABLES["revise"])[-1]
    assert "- no wc" in user["content"] and "score 3/10" in user["content"]


def test_user_directory_overrides_one_file_and_keeps_the_other_defaults(tmp_path: Path) -> None:
    (tmp_path / "planner.j2").write_text(
        "{% block system %}CUSTOM SYSTEM{% endblock %}{% block user %}Do: {{ task }}{% endblock %}"
    )
    library = PromptLibrary(tmp_path)
    assert library.render("planner", task="x", context=None)[0]["content"] == "CUSTOM SYSTEM"
    assert library.source_of("critic").parent != tmp_path
    critic = library.render("critic", task="x", context=None, **VARIABLES["critic"])
    assert "Critic" in critic[-1]["content"]


def test_unknown_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    (tmp_path / "planner.j2").write_text(
        "{% block system %}{{ nonsense }}{% endblock %}{% block user %}u{% endblock %}"
    )
    with pytest.raises(ConfigError, match="unknown variable"):
        PromptLibrary(tmp_path).render("planner", task="x", context=None)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "planner.j2").write_text("{% block system %}\nok\n{% if %}\n{% endblock %}")
    with pytest.raises(ConfigError, match=r"planner.j2 line 3"):
        PromptLibrary(tmp_path).render("planner", task="x", context=None)


def test_missing_block_and_missing_directory(tmp_path: Path) -> None:
    (tmp_path / "planner.j2").write_text("{% block system %}s{% endblock %}")
    with pytest.raises(ConfigError, match=r"no \{% block user %\}"):
        PromptLibrary(tmp_path).render("planner", task="x", context=None)
    with pytest.raises(ConfigError, match="not a directory"):
        PromptLibrary(tmp_path / "absent")


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "planner.j2").write_text(
        "{% block system %}{{ task.__class__.__mro__ }}{% endblock %}"
        "{% block user %}u{% endblock %}"
    )
    with pytest.raises(ConfigError, match="unsafe"):
        PromptLibrary(tmp_path).render("planner", task="x", context=None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "Range too big"),
        ("{{ 'a' * 10**9 }}", "would make 1,000,000,000 items"),
        ("{{ [0] * 10**9 }}", "would make 1,000,000,000 items"),
        ("{{ 7 ** 100000000 }}", "-bit number"),
        ("{% for i in range(99999) %}{{ 'x' * 99 }}{% endfor %}", "renders more than"),
    ],
    ids=["range", "string", "list", "power", "output"],
)
def test_what_a_template_may_build_is_bounded(tmp_path: Path, body: str, message: str) -> None:
    """Each of these took gigabytes or hung (exit 70 at best): now one clear error."""
    (tmp_path / "planner.j2").write_text(
        "{% block system %}s{% endblock %}{% block user %}" + body + "{% endblock %}"
    )
    with pytest.raises(ConfigError, match=message):
        PromptLibrary(tmp_path).render("planner", task="x", context=None)


def test_installed_wheel_contains_and_finds_the_prompts(tmp_path: Path) -> None:
    """Build the wheel, unpack it away from the checkout, ask the package where its prompts are."""
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling is not installed (it comes with the dev extra)")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("ai_stack-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    for name in PROMPT_NAMES:
        assert f"ai_stack/_prompts/{name}.j2" in names
    assert "ai_stack/evidence/harness.py" in names  # copied into the sandbox from the package
    probe = (
        "from ai_stack.prompts import default_prompts_dir, PromptLibrary; "
        "print(default_prompts_dir()); "
        "print(PromptLibrary().render('planner', task='t', context=None, conversation=None,"
        " files=[])[-1]['content'].count('Role: Planner'))"
    )
    out = subprocess.run(
        [sys.executable, "-s", "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    found = Path(out.stdout.splitlines()[0])
    assert found.is_relative_to(site)
    assert out.stdout.splitlines()[1] == "1"  # the shipped planner prompt, rendered


def test_the_conversation_and_files_come_first_in_every_role_prompt() -> None:
    """The shared part — earlier turns, then files, then the task — opens each user message, so
    a backend's prompt cache reuses it across roles and from one turn to the next."""
    view = ConversationView(
        "SUMMARY-TEXT", (Turn(number=2, task="TURN-TASK", answer="TURN-ANSWER", files=["a.py"]),)
    )
    files = [Attachment(path="notes.txt", text="FILE-TEXT")]
    library = PromptLibrary()
    users = []
    for name in ROLE_PROMPTS:
        shared = {**VARIABLES[name], "conversation": view, "files": files}
        user = library.render(name, task="TASK-TEXT", context=None, **shared)[-1]["content"]
        task = "Request: TASK-TEXT" if name == "contract" else "Task: TASK-TEXT"
        parts = ("SUMMARY-TEXT", "TURN-TASK", "TURN-ANSWER", "FILE-TEXT", task)
        order = [user.index(part) for part in parts]
        assert order == sorted(order), name
        assert "Turn 2. User (with a.py): TURN-TASK" in user and "The file notes.txt:" in user
        if name != "contract":  # a question about the task, not a prefix shared with the others
            users.append(user[: user.index(task)])
    assert len(set(users)) == 1


def test_the_summary_prompt_folds_in_the_summary_so_far() -> None:
    library = PromptLibrary()
    first = library.render(
        "summarise", subject="file", title="app.log", summary=None, pieces=["PIECE"]
    )[-1]["content"]
    assert "The file app.log:" in first and "PIECE" in first and "so far" not in first
    later = library.render(
        "summarise", subject="turns", title="turns 1-2", summary="EARLIER", pieces=["P1", "P2"]
    )[-1]["content"]
    assert later.index("EARLIER") < later.index("P1") < later.index("P2")
    assert "combines the summary so far" in later


@pytest.mark.parametrize(
    ("kind", "ask", "asks"),
    [
        ("result", "result", "Reply to the task with the result\nthe program printed"),
        ("form", "code", "the complete\ncorrected answer"),
        ("example", "code", "the complete\ncorrected answer"),
        ("requirement", "prose", "meets every requirement that failed"),
        ("form", "prose", "meets every requirement that failed"),
    ],
)
def test_the_fix_asks_for_what_the_failures_and_the_kind_of_task_call_for(
    kind: str, ask: str, asks: str
) -> None:
    """A prose answer failing a stated requirement is never told to fix its code."""
    failed = Check(kind=kind, name="n", passed=False, detail="d")  # type: ignore[arg-type]
    (fix,) = PromptLibrary().render(
        "fix",
        task="t",
        context=None,
        evidence=Evidence(checks=[failed]),
        critique=ANSWER_CRITIQUE,
        ask=ask,
    )
    assert asks in fix["content"]
    assert ("in your code" in fix["content"]) == (ask == "code")


def test_a_template_that_links_outside_the_prompt_directory_is_refused(tmp_path: Path) -> None:
    """`ln -s ~/.ssh/id_ed25519 p/key.j2` and an include would put the key in every prompt."""
    secret = tmp_path / "secret.txt"
    secret.write_text("PRIVATE-KEY-TEXT")
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "key.j2").symlink_to(secret)
    (prompts / "planner.j2").write_text(
        "{% block system %}s{% endblock %}{% block user %}{% include 'key.j2' %}{% endblock %}"
    )
    with pytest.raises(ConfigError, match="outside the prompt directories"):
        PromptLibrary(prompts).render("planner", task="t", context=None)
