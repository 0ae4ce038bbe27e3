"""Shared data shapes: role outputs (Plan, Verdict), metrics, the run result and pipeline events.

Plan and Verdict double as the JSON schemas that constrain generation, so every string and list
in them is bounded: llama.cpp's grammar enforces lengths, and an unbounded string lets a small
model run away (hundreds of tokens of "000..." and JSON that never closes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

Role = Literal["planner", "critic", "executor"]
ROLES: tuple[Role, ...] = ("planner", "critic", "executor")
Phase = Literal[
    "plan",
    "critique",
    "revise",
    "contract",
    "execute",
    "probe",
    "compute",
    "review",
    "fix",
    "shape",
    "rethink",
    "attempt",
    "summarise",
    "act",
]
"""``plan``/``critique``/``revise``: the plan review; ``contract``: the Planner turns the task into
its requirements; ``execute``: the first answer; ``probe`` (the Critic proposes edge-case calls),
``review`` (it judges the answer with the evidence) and ``fix`` (the Executor revises the
answer): the answer review; ``rethink`` (the Planner, shown the failing answer, proposes another
approach) and ``attempt`` (a fresh answer that never sees the failed one): the repair when fixes
stall; ``summarise``: the Executor's model condenses earlier turns or a file that do not fit the
context; ``act``: a step of the Executor's tool loop (a tool call, or the answer after them)."""
Mode = Literal["raw", "direct", "none", "plan", "answer", "both", "team"]
"""``raw``: the task as the only message (what ``ollama run`` gives; an eval baseline);
``direct``: one Executor call. Otherwise the value of ``--review``; :mod:`ai_stack.modes` says
which calls each makes."""
Review = Literal["none", "plan", "answer", "both", "team"]
StopReason = Literal["approved", "score", "unchanged", "no_progress", "max_rounds", "budget"]
UnloadCause = Literal["policy", "options", "foreign", "thermal", "shutdown"]
"""Why a model was unloaded: the residency policy made room, its load-time options changed,
another client had loaded it, the thermal policy shed it, or the program is ending."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


_NonBlank = AfterValidator(_not_blank)
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=80), _NonBlank]
Text = Annotated[str, StringConstraints(min_length=1, max_length=160), _NonBlank]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=200), _NonBlank]


class PlanStep(BaseModel):
    """One step of a plan: what to do, and why or how in a sentence."""

    model_config = ConfigDict(extra="forbid")

    title: ShortText
    detail: LongText


class Plan(BaseModel):
    """The Planner's structured answer."""

    model_config = ConfigDict(extra="forbid")

    goal: Text
    steps: list[PlanStep] = Field(min_length=1, max_length=6)


class Verdict(BaseModel):
    """The Critic's structured answer; ``issues`` comes first so the model reasons, then scores."""

    model_config = ConfigDict(extra="forbid")

    issues: list[Text] = Field(default_factory=list, max_length=5)
    score: int = Field(ge=0, le=10)
    verdict: Literal["approve", "revise"]


class ProbeCalls(BaseModel):
    """The Critic's edge-case calls for an answer's functions, run in the sandbox before it
    judges the answer (``compress('')``, ``compress('a' * 1000)``)."""

    model_config = ConfigDict(extra="forbid")

    calls: list[Text] = Field(default_factory=list, max_length=5)


RequirementKind = Literal[
    "words",
    "sentences",
    "paragraphs",
    "bullets",
    "sections",
    "lowercase",
    "uppercase",
    "include",
    "avoid",
    "starts_with",
    "ends_with",
    "title",
    "placeholders",
    "postscript",
    "json",
    "letters",
    "capital_words",
    "highlights",
    "quoted",
    "characters",
    "lines",
    "numbered",
    "one_per_line",
    "separator",
    "nothing_else",
    "title_case",
    "language",
    "signature",
    "format_choice",
    "judgement",
]
"""What a requirement asks of an answer: a count (of words, sentences, paragraphs, bullets,
sections, ``[placeholders]``, ``*highlighted*`` spans, words in capitals, a letter, characters,
lines, numbered items, items one per line), a case (or title case), a word or phrase to use or
avoid, a start or an end, a title, a postscript, JSON, the whole answer in double quotes, items
split by a separator, nothing but the answer, a signature, one of stated options (``text``:
``yes|no``); ``language`` and ``judgement`` are what no code checks (a language, a tone, a
loose amount such as "a couple of sentences" — judged, never failed)."""
Relation = Literal["at least", "at most", "exactly", "none"]


class Requirement(BaseModel):
    """One thing the task states that the answer must do, with the task's own words for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quote: Text
    check: RequirementKind
    relation: Relation = "none"
    count: int = Field(default=0, ge=0, le=10_000)
    text: Annotated[str, StringConstraints(max_length=80)] = ""

    def describe(self) -> str:
        """``sentences: exactly 2 ("in two sentences")``."""
        what = self.check.replace("_", " ")
        if self.relation != "none":
            what += f": {self.relation} {self.count}"
        if self.text:
            what += f" {self.text!r}"
        return f'{what} ("{self.quote}")'


class Contract(BaseModel):
    """The Planner's reading of a task whose words leave it open: the kind of reply it wants —
    code to be written, one value (a number, a date, a name), or text. One short question:
    measured on Qwen2.5-Coder-1.5B, asked for requirements with quotes as well, it called 3 of 4
    prose tasks code and invented every quote, at 15-30 s a call; asked this alone, 11 of 12
    right at 2 s (docs/eval.md). The requirements a task states are read from its words by
    code."""

    model_config = ConfigDict(extra="forbid")

    answer: Literal["code", "value", "text"]


AskKind = Literal["code", "result", "prose", "unknown"]


class Ask(BaseModel):
    """What a task asks for, decided once per task and read by every check, prompt and choice
    after it: code (with its language, and the function its signature names), a result, or
    prose; with the requirements its words state about the answer's form. ``by``: who decided,
    the task's own words or the Planner; the kind is ``unknown`` where nothing could tell, and
    then no answer is failed for its form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AskKind = "unknown"
    language: str = ""  # code: "python", "shell", ... as far as it is known
    function: str = ""  # code: the function the task's signature names
    requirements: tuple[Requirement, ...] = ()
    by: Literal["task", "planner", ""] = ""

    @property
    def checked(self) -> list[Requirement]:
        """The requirements code checks (the rest are left for judgement)."""
        return [r for r in self.requirements if r.check != "judgement"]

    def describe(self) -> str:
        """``prose, 2 requirements`` / ``code (python)``.

        >>> Ask(kind="code", language="python").describe()
        'code (python)'
        """
        what: str = self.kind
        if self.language:
            what += f" ({self.language})"
        if self.requirements:
            count = len(self.requirements)
            what += f", {count} requirement{'' if count == 1 else 's'}"
        return what


class Rethink(BaseModel):
    """The Planner's second look when fixes stall: what went wrong, and another approach."""

    model_config = ConfigDict(extra="forbid")

    cause: LongText
    approach: list[ShortText] = Field(min_length=1, max_length=4)


class Critique(Verdict):
    """A Verdict as recorded in a run, with the round it belongs to. ``subject`` says what was
    reviewed; an answer critique's ``source`` is ``evidence`` when failed checks decided it (or a
    final re-check approved it) without a Critic call."""

    round: int
    subject: Literal["plan", "answer"] = "plan"
    source: Literal["critic", "evidence"] = "critic"


CheckKind = Literal[
    "syntax",
    "names",
    "import",
    "example",
    "user",
    "command",
    "probe",
    "script",
    "result",
    "form",
    "requirement",
]
DETAIL_CHARS = 300  # the most of a check's detail kept


class Check(BaseModel):
    """One fact about an answer."""

    kind: CheckKind
    name: str
    passed: bool | None
    detail: str = ""


class Evidence(BaseModel):
    """Every check made on one version of an answer."""

    checks: list[Check] = Field(default_factory=list)
    executed: bool = False  # whether any code ran (in the sandbox)
    note: str | None = None  # e.g. why execution was skipped
    seconds: float = 0.0  # spent checking

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    @property
    def decided(self) -> list[Check]:
        return [c for c in self.checks if c.passed is not None]

    def summary(self) -> str:
        """``3 of 4 checks passed``, or what there was instead."""
        if not self.decided:
            return "no checks could be run" if not self.checks else "outputs only, nothing decided"
        passed = len(self.decided) - len(self.failures)
        return f"{passed} of {len(self.decided)} checks passed"


class AnswerVersion(BaseModel):
    """One version of the Executor's answer, with the evidence gathered on it. ``phase``: the
    call that wrote it (the first answer, a fix, an answer written in the shape the task's
    requirements give, a fresh attempt), or what code made of an earlier version: ``mended``,
    the case or quotes the task asks for applied; ``computed``, the one line a program
    computing the asked-for value printed, given as that value."""

    version: int
    text: str
    evidence: Evidence | None = None
    phase: Literal["execute", "fix", "mended", "shape", "attempt", "computed"] = "execute"


class PhaseMetrics(BaseModel):
    """Measurements of one model call. One entry per call, re-asks included."""

    role: Role
    phase: Phase
    model: str
    round: int = 0
    attempt: int = 1
    load_s: float = 0.0
    ttft_s: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    tokens_per_s: float = 0.0
    wall_s: float = 0.0
    thermal: str = "unknown"


class ThermalDecision(BaseModel):
    """Something the thermal policy did or noticed, with its reason."""

    kind: Literal["note", "pause", "unload", "refuse"]
    level: str
    reason: str
    seconds: float = 0.0


class ModelMemory(BaseModel):
    """A model's estimated footprint next to what its backend reported once it was loaded.

    ``num_ctx`` is the context it was loaded with; ``cpu_layers`` how many of its layers the
    estimate puts on the CPU because the footprint exceeds the GPU's share (0: all on the GPU;
    None: no GPU limit known here); ``gpu_bytes`` what the server reports on the GPU."""

    model: str
    estimate_bytes: int
    resident_bytes: int | None = None
    num_ctx: int | None = None
    kv_cache_type: str | None = None
    cpu_layers: int | None = None
    gpu_bytes: int | None = None


class RunMetrics(BaseModel):
    """Per-call metrics plus run totals (loads and unloads made during this run)."""

    phases: list[PhaseMetrics] = Field(default_factory=list)
    loads: int = 0
    unloads: int = 0
    load_s: float = 0.0
    wall_s: float = 0.0
    policy: str = "one-at-a-time"
    budget_bytes: int = 0
    gpu_limit_bytes: int | None = None
    memory: list[ModelMemory] = Field(default_factory=list)
    thermal: list[ThermalDecision] = Field(default_factory=list)


class Source(BaseModel):
    """A passage retrieved from a knowledge index (``--kb``), numbered for citation as [n]."""

    n: int
    index: str
    path: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"[{self.n}] {self.path}:{self.start}-{self.end}"


class Citations(BaseModel):
    """The answer's citations checked against the sources it was given: every [n] it cites
    must name one of them (``unknown``: those that name none)."""

    cited: list[int]
    unknown: list[int]

    @property
    def passed(self) -> bool:
        return not self.unknown


class Attachment(BaseModel):
    """A file (or piped input, or a retrieved passage) given to a task as context, as the roles
    see it."""

    path: str  # as the user named it; "stdin" for piped input; file:start-end for a passage
    text: str
    summarised: bool = False  # the text is a summary: the whole file did not fit
    source: Source | None = None  # a passage of a knowledge index, cited by its number


class Turn(BaseModel):
    """One finished exchange of a conversation: the task and the answer chosen for it."""

    number: int
    task: str
    answer: str
    files: list[str] = Field(default_factory=list)  # paths attached to that task
    run_id: str | None = None


class ToolCallRecord(BaseModel):
    """One tool call of the Executor's (``--tools``) and its result as the model saw it."""

    step: int
    tool: str
    arguments: str  # the call's JSON, redacted
    result: str  # bounded and redacted
    ok: bool
    truncated: bool = False
    seconds: float = 0.0


class RunResult(BaseModel):
    """What ``--json`` prints: the stable contract documented in docs/json-output.md.

    ``plan``, ``plans``, ``critiques``, ``rounds``, ``stop_reason`` describe the plan review
    (``plan`` and ``stop_reason`` are null when no plan was made or reviewed); the ``answer_``
    fields the answer review. ``output`` is the answer chosen: the version with the fewest
    failed checks, the latest among equals."""

    id: str
    task: str
    context: str | None = None
    mode: Mode = "answer"
    models: dict[Role, str]
    contract: Contract | None = None  # the Planner's reading of the task (team mode)
    ask: Ask | None = None  # what the task asks for, and who decided (team mode)
    plan: Plan | None
    plans: list[Plan]
    critiques: list[Critique]
    rounds: int
    stop_reason: StopReason | None
    answers: list[AnswerVersion] = Field(default_factory=list)
    answer_critiques: list[Critique] = Field(default_factory=list)
    answer_rounds: int = 0
    answer_stop_reason: StopReason | None = None
    chosen_answer: int = 1
    output: str
    # the task's own checks the answer given fails, "name (detail)": a run that checked its
    # answer says what it did not meet (--strict turns it into the exit code)
    unmet: list[str] = Field(default_factory=list)
    seed: int | None = None  # the sampling seed the run used: --seed N reproduces it
    metrics: RunMetrics
    conversation_id: str | None = None
    turn: int | None = None  # this run's place in its conversation, from 1
    files: list[str] = Field(default_factory=list)  # paths of the files given as context
    summarised: list[str] = Field(default_factory=list)  # what was replaced by a summary
    sources: list[Source] = Field(default_factory=list)  # passages retrieved with --kb
    citations: Citations | None = None  # the answer's [n] checked against ``sources``
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)  # --tools: in order


# --- events -------------------------------------------------------------------------------------
# The controller is a generator of these; front ends render them, the history store records them,
# and run totals are derived from them. They are plain frozen dataclasses: cheap to create for
# every streamed token.


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    task: str
    context: str | None
    models: dict[Role, str]
    mode: Mode = "answer"
    conversation_id: str | None = None
    turn: int | None = None
    files: tuple[Attachment, ...] = ()
    replaces: str | None = None  # the run of the turn this one runs again (/retry)


@dataclass(frozen=True, slots=True)
class PhaseStarted:
    role: Role
    phase: Phase
    model: str
    round: int
    attempt: int


@dataclass(frozen=True, slots=True)
class LeaseWaiting:
    """Another ai-stack process uses a model this one cannot load beside it: waiting (or, with
    ``done``, the wait is over)."""

    model: str
    holder_model: str
    holder_pid: int
    done: bool = False


@dataclass(frozen=True, slots=True)
class AwaitingModel:
    """A role call is about to ask for its model: the point where a scheduler may park the run
    and come back once the model is the one it wants resident (batch, phase-major)."""

    role: Role
    phase: Phase
    round: int
    model: str
    num_ctx: int = 0  # the context the call needs the model loaded with


@dataclass(slots=True)
class CallHandedOff:
    """A role call handed to another process to make (a cluster node, :mod:`ai_stack.cluster`):
    the scheduler that receives this parks the run, has the call made, and sets ``reply`` before
    resuming it. Only a scheduler that hands calls off ever sees one."""

    request: Any
    reply: Any = None


@dataclass(frozen=True, slots=True)
class ModelLoading:
    model: str
    estimate_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ModelLoaded:
    """``resident_bytes`` is the backend's own figure once loaded (None if it reports none)."""

    model: str
    seconds: float
    estimate_bytes: int = 0
    resident_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ModelUnloaded:
    model: str
    reason: str
    cause: UnloadCause = "policy"


@dataclass(frozen=True, slots=True)
class Token:
    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class CallRetried:
    """A model call failed transiently (busy server, cut stream) and is being made again;
    any text already streamed for it is void."""

    role: Role
    reason: str


@dataclass(frozen=True, slots=True)
class ThermalNote:
    """The thermal policy noticed something (moderate pressure, a level change during a call,
    a decode-speed drop) and carries on; or (``kind="refuse"``) refused a load under memory
    pressure, which then fails the call."""

    level: str
    reason: str
    kind: Literal["note", "refuse"] = "note"


@dataclass(frozen=True, slots=True)
class ThermalPause:
    """Work is paused to let the machine cool; sent at the start and at each countdown tick."""

    level: str
    reason: str
    waited_s: float
    max_s: float


@dataclass(frozen=True, slots=True)
class ThermalResumed:
    level: str
    reason: str
    paused_s: float


@dataclass(frozen=True, slots=True)
class Reasked:
    """A structured answer failed validation and the model is being asked again."""

    role: Role
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class PhaseFinished:
    metrics: PhaseMetrics


@dataclass(frozen=True, slots=True)
class PlanReady:
    plan: Plan
    version: int


@dataclass(frozen=True, slots=True)
class AskDecided:
    """What the task asks for, decided once (by its own words or by the Planner)."""

    ask: Ask


@dataclass(frozen=True, slots=True)
class CritiqueReady:
    critique: Critique


@dataclass(frozen=True, slots=True)
class AnswerReady:
    """A version of the Executor's answer is complete (the first, or a fix)."""

    answer: AnswerVersion


@dataclass(frozen=True, slots=True)
class EvidenceReady:
    """The checks made on a version of the answer (static, and run in the sandbox)."""

    version: int
    round: int
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class LoopStopped:
    reason: StopReason
    rounds: int
    subject: Literal["plan", "answer"] = "plan"


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know about the run that changes nothing by itself: the
    context was cut to fit, older turns were summarised, a context size was chosen."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Summarised:
    """Text that did not fit the context was replaced by a summary the Executor's model wrote:
    the earliest ``covered`` turns of a conversation (``subject`` "turns"), or a file."""

    subject: Literal["turns", "file"]
    name: str  # "turns 1-3", or the file's path
    covered: int  # turns: how many of the earliest turns the summary replaces; file: 1
    text: str
    tokens_before: int
    tokens_after: int


@dataclass(frozen=True, slots=True)
class ToolCalled:
    """The Executor called a tool (step ``step`` of the tool loop); ``arguments`` is the call's
    JSON, redacted."""

    step: int
    tool: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave back, as the model sees it: bounded and redacted. ``ok`` False: an
    error the model is shown as data (refused, failed, timed out, a repeated call)."""

    step: int
    tool: str
    text: str
    ok: bool
    truncated: bool = False
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class RunFinished:
    result: RunResult


Event = (
    RunStarted
    | AwaitingModel
    | CallHandedOff
    | PhaseStarted
    | ModelLoading
    | ModelLoaded
    | ModelUnloaded
    | Token
    | Reasked
    | CallRetried
    | ThermalNote
    | ThermalPause
    | ThermalResumed
    | PhaseFinished
    | PlanReady
    | AskDecided
    | CritiqueReady
    | AnswerReady
    | EvidenceReady
    | LoopStopped
    | Notice
    | LeaseWaiting
    | Summarised
    | ToolCalled
    | ToolResult
    | RunFinished
)

__all__ = [
    "ROLES",
    "AnswerReady",
    "AnswerVersion",
    "Ask",
    "AskDecided",
    "AskKind",
    "Attachment",
    "AwaitingModel",
    "CallHandedOff",
    "CallRetried",
    "Check",
    "Citations",
    "Contract",
    "Critique",
    "CritiqueReady",
    "Event",
    "Evidence",
    "EvidenceReady",
    "LeaseWaiting",
    "LoopStopped",
    "Mode",
    "ModelLoaded",
    "ModelLoading",
    "ModelMemory",
    "ModelUnloaded",
    "Notice",
    "Phase",
    "PhaseFinished",
    "PhaseMetrics",
    "PhaseStarted",
    "Plan",
    "PlanReady",
    "PlanStep",
    "ProbeCalls",
    "Reasked",
    "Requirement",
    "Rethink",
    "Review",
    "Role",
    "RunFinished",
    "RunMetrics",
    "RunResult",
    "RunStarted",
    "Source",
    "StopReason",
    "Summarised",
    "ThermalDecision",
    "ThermalNote",
    "ThermalPause",
    "ThermalResumed",
    "Token",
    "ToolCallRecord",
    "ToolCalled",
    "ToolResult",
    "Turn",
    "UnloadCause",
]
