"""The team at work on one task, as a generator of typed events: the calls each mode makes
(:mod:`ai_stack.modes`) — the Planner's reading of the task or its plan, the Critic's reviews, the
Executor's answer, its checks and fixes, the repair when fixes stall.

The controller knows roles, prompts and the review loop; it reaches models only through
:class:`~ai_stack.roles.RoleRunner` (and so through the memory manager). It never prints, never
touches HTTP, llama.cpp or the database: front ends render its events, the history store records
them, and :class:`Tally` derives a run's totals from them.
"""

from __future__ import annotations

import functools
import operator
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, TypeVar

from ai_stack.backends import ModelSpec
from ai_stack.backends.base import ChatOptions, LoadOptions, Message
from ai_stack.config import Settings
from ai_stack.context import (
    MIN_CONTEXT,
    PROMPT_OVERHEAD,
    ContextChoice,
    choose_contexts,
    fit_for,
    role_needs,
)
from ai_stack.conversation import (
    SUMMARY_TOKENS,
    Conversation,
    ConversationView,
    pack,
    summary_needed,
    turn_text,
)
from ai_stack.errors import InputLimitError, InvalidOutputError, UsageError
from ai_stack.evidence import (
    EvidenceCollector,
    dropped_code,
    planned,
    printed_by,
    program_blocks,
    result_agrees,
)
from ai_stack.evidence import read as read_ask
from ai_stack.knowledge.citations import check_citations
from ai_stack.memory import MemoryManager, load_options_for
from ai_stack.modes import MODES, ROLES_CALLED
from ai_stack.prompts import PromptLibrary
from ai_stack.roles import RoleCall, RoleRunner
from ai_stack.sandbox import Sandbox
from ai_stack.shape import mend, shape_for
from ai_stack.thermal.policy import ThermalGuard
from ai_stack.tools.base import Toolbox
from ai_stack.tools.loop import tool_loop
from ai_stack.types import (
    AnswerReady,
    AnswerVersion,
    Ask,
    AskDecided,
    Attachment,
    Contract,
    Critique,
    CritiqueReady,
    Event,
    Evidence,
    EvidenceReady,
    LoopStopped,
    ModelLoaded,
    ModelUnloaded,
    Notice,
    Phase,
    PhaseFinished,
    PhaseMetrics,
    Plan,
    PlanReady,
    ProbeCalls,
    Rethink,
    Role,
    RunFinished,
    RunMetrics,
    RunResult,
    RunStarted,
    StopReason,
    Summarised,
    ThermalDecision,
    ThermalNote,
    ThermalPause,
    ThermalResumed,
    ToolCalled,
    ToolCallRecord,
    ToolResult,
    Verdict,
)

S = TypeVar("S")
T = TypeVar("T")


def stop_reason_for(
    critique: Critique, *, round_: int, max_rounds: int, approve_score: int
) -> StopReason | None:
    """Why the review loop ends after this critique, or ``None`` to revise and review again.

    >>> c = Critique(round=1, issues=[], score=9, verdict="revise")
    >>> stop_reason_for(c, round_=1, max_rounds=3, approve_score=8)
    'score'
    >>> stop_reason_for(c, round_=1, max_rounds=3, approve_score=10) is None
    True
    >>> stop_reason_for(c, round_=3, max_rounds=3, approve_score=10)
    'max_rounds'
    """
    if critique.verdict == "approve":
        return "approved"
    if critique.score >= approve_score:
        return "score"
    if round_ >= max_rounds:
        return "max_rounds"
    return None


@dataclass
class ReviewOutcome(Generic[S]):
    """What a review loop produced: the final subject, every version of it, every critique."""

    subject: S
    versions: list[S]
    critiques: list[Critique] = field(default_factory=list)
    stop_reason: StopReason = "max_rounds"

    @property
    def rounds(self) -> int:
        return len(self.critiques)


def review_loop(
    first: S,
    *,
    review: Callable[[S, int], Generator[Event, None, Critique]],
    revise: Callable[[S, Critique, int], Generator[Event, None, S]],
    max_rounds: int,
    approve_score: int,
    same: Callable[[S, S], bool] = operator.eq,
    stalled: Callable[[list[S]], bool] = lambda versions: False,
    subject: Literal["plan", "answer"] = "plan",
    spent: Callable[[], bool] = lambda: False,
) -> Generator[Event, None, ReviewOutcome[S]]:
    """Review → revise until approved, good enough, unchanged, out of rounds, or ``spent``
    (the run's budget for the review).

    Generic over what is reviewed: the plan, or the Executor's answer. The last critique is
    never followed by a revision that nobody would review.
    """
    outcome = ReviewOutcome(subject=first, versions=[first])
    for round_ in range(1, max_rounds + 1):
        critique = yield from review(outcome.subject, round_)
        outcome.critiques.append(critique)
        yield CritiqueReady(critique)
        reason = stop_reason_for(
            critique, round_=round_, max_rounds=max_rounds, approve_score=approve_score
        )
        if reason is None and stalled(outcome.versions):
            reason = "no_progress"
        if reason is None and spent():
            reason = "budget"
        if reason is not None:
            outcome.stop_reason = reason
            break
        revised = yield from revise(outcome.subject, critique, round_)
        if same(revised, outcome.subject):
            outcome.stop_reason = "unchanged"
            break
        outcome.subject = revised
        outcome.versions.append(revised)
    yield LoopStopped(outcome.stop_reason, outcome.rounds, subject)
    return outcome


def smallest_loads(
    settings: Settings, specs: dict[Role, ModelSpec], caps: dict[ModelSpec, LoadOptions]
) -> dict[ModelSpec, LoadOptions]:
    """The least each model the mode calls is loaded with (its pinned context, or the smallest
    a run would choose): what must fit for any run to start."""
    smallest: dict[ModelSpec, LoadOptions] = {}
    for role in ROLES_CALLED[settings.mode]:
        spec = specs[role]
        cap = caps[spec]
        context = cap.num_ctx if settings.role(role).fixed_ctx else min(cap.num_ctx, MIN_CONTEXT)
        if spec not in smallest or context > smallest[spec].num_ctx:
            smallest[spec] = replace(cap, num_ctx=context)
    return smallest


class Pipeline:
    """Runs tasks through the three roles. One instance serves many tasks, one at a time (the
    REPL), so models stay resident between tasks where the policy allows.

    ``load_options`` holds, per model, the options it is loaded with and the largest context any
    of its roles allows; each run loads it with the context that run needs (see
    ``context.choose_contexts``)."""

    def __init__(
        self,
        settings: Settings,
        manager: MemoryManager,
        prompts: PromptLibrary,
        specs: dict[Role, ModelSpec],
        load_options: dict[ModelSpec, LoadOptions] | None = None,
        guard: ThermalGuard | None = None,
        evidence: EvidenceCollector | None = None,
        runner_type: type[RoleRunner] = RoleRunner,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.prompts = prompts
        self.specs = specs
        self.load_options = load_options or load_options_for(
            (spec, settings.role(role).num_ctx)
            for role, spec in specs.items()
            if role in ROLES_CALLED[settings.mode]
        )
        self.guard = guard
        self.evidence = evidence or EvidenceCollector(Sandbox(allow_unisolated=False))
        # where the calls are made: here, or (a cluster's runner) handed off to a node
        self.runner = runner_type(manager, max_reasks=settings.max_reasks, guard=guard)
        self.contexts: dict[ModelSpec, ContextChoice] = {}  # the current run's
        self.seed = run_seed(settings.seed)  # the current run's
        self._fresh = False  # the next run samples afresh (reseed)
        # the Executor's tools and the loop's bounds (--tools), or none: one call answers
        self.tools = (toolbox, settings.tools) if toolbox is not None else None

    def reseed(self) -> None:
        """Have the next run draw a fresh seed (``/retry``: another sample of the same turn)."""
        self._fresh = True

    def preflight(self) -> None:
        """Fail before any task if a configured model is missing, or one the mode calls cannot
        fit even with the smallest context a run would load it with."""
        for spec in dict.fromkeys(self.specs.values()):
            self.manager.describe(spec)
        self.manager.check_all(smallest_loads(self.settings, self.specs, self.load_options))

    def choose_contexts(
        self, task: str, context: str | None, extra: str = "", room: int = 0
    ) -> dict[ModelSpec, ContextChoice]:
        """The context each model is loaded with for this task (its longest call, counted with
        the model's tokenizer where available); ``extra``: the files and earlier turns;
        ``room``: tokens more, for turns to come."""
        counted = {spec: n + room for spec, n in self._counted(task, context, extra).items()}
        most = self.evidence.most_checks(task, self.settings.evidence.probes)
        return choose_contexts(self.settings, self.specs, self.load_options, counted, most)

    def _counted(self, task: str, context: str | None, extra: str = "") -> dict[ModelSpec, int]:
        text = "\n\n".join(part for part in (extra, task, context) if part)
        return {spec: self.manager.count_tokens(spec, text) for spec in set(self.specs.values())}

    def spare_tokens(self, task: str, context: str | None) -> int:
        """Tokens every role's context has left, at its largest (``num_ctx``), after the
        longest call the task makes: the room for files and earlier turns."""
        counted = self._counted(task, context)
        most = self.evidence.most_checks(task, self.settings.evidence.probes)
        spare = []
        for spec in set(self.specs.values()):
            needs = role_needs(self.settings, counted[spec], most)
            spare += [
                self.load_options[spec].num_ctx - need.total
                for role, need in needs.items()
                if self.specs[role] == spec
            ]
        return min(spare)

    def run(
        self,
        task: str,
        context: str | None = None,
        *,
        conversation: Conversation | None = None,
        files: Sequence[Attachment] = (),
        resume: Resume | None = None,
    ) -> Iterator[Event]:
        """Events of one task, ending with :class:`RunFinished` carrying the result.

        The mode decides the calls: ``direct`` is one Executor call; otherwise the Planner
        drafts a plan (reviewed with ``plan``/``both``) unless the review is ``answer``, the
        Executor answers, and with ``answer``/``both`` the Critic reviews the answer with the
        evidence and the Executor fixes it. With ``resume``, the phases it holds are not run
        again: its plans, answers and critiques are taken as the models' and its metrics head
        the new run's.

        With a ``conversation``, the task is its next turn: each role sees the earlier turns (as
        many as its ``turns`` setting allows), and ``files`` are attached to the task. What does
        not fit the contexts is summarised first (:meth:`_fit_extras`).
        """
        task = task.strip()
        if not task:
            raise UsageError("The task is empty.", hint='Give the task as text: ai-stack "..."')
        fitted = fit_for(self.settings, task, context)
        context = fitted.context
        self.contexts = self.choose_contexts(task, context)
        self.manager.check_all(
            {spec: self._load(spec) for spec in self.contexts}  # before anything loads
        )
        started = time.perf_counter()
        self.seed = run_seed("random" if self._fresh else self.settings.seed)
        self._fresh = False
        done = resume or Resume(run_id=uuid.uuid4().hex[:12])
        tally = Tally(phases=list(done.phases))
        mode = self.settings.mode
        models = {role: str(spec) for role, spec in self.specs.items()}
        turn = conversation.next_turn if conversation else None
        yield RunStarted(
            run_id=done.run_id,
            task=task,
            context=context,
            models=models,
            mode=mode,
            conversation_id=conversation.id if conversation else None,
            turn=turn,
            files=tuple(files),
            replaces=conversation.replacing if conversation else None,
        )
        if fitted.note:
            yield Notice("context", fitted.note)
        if self.settings.evidence.attempts is not None:
            yield Notice(
                "config",
                "evidence.attempts is deprecated and will be removed: max_rounds bounds the "
                f"team's new versions too (now {self.settings.repair_attempts} of each kind)",
            )
        fitted_files, view, summarised, budget = yield from tally.relay(
            self._fit_extras(task, context, list(files), conversation)
        )
        room = 0
        if fitted_files or view or budget:
            extra = self.prompts.render(
                "executor",
                task="",
                context=None,
                plan=None,
                files=fitted_files,
                conversation=view or None,
            )
            shared = extra[-1]["content"]
            turns = self.manager.count_tokens(self.specs["executor"], shared) if view else 0
            room = max(budget - turns, 0)
            self.contexts = self.choose_contexts(task, context, shared, room)
            self.manager.check_all({spec: self._load(spec) for spec in self.contexts})
        for choice in self.contexts.values():
            yield Notice("context", choice.describe())
        if room:
            yield Notice(
                "context",
                f"these contexts keep room for {room:,} more tokens of conversation "
                "(conversation.max_tokens), so the next turns need no reload",
            )

        def base(role: Role) -> dict[str, Any]:
            """What a role's prompt is rendered with: the task, its files, the turns it sees."""
            seen = view.limited(self.settings.role(role).turns)
            return {
                "task": task,
                "context": context,
                "files": fitted_files,
                "conversation": seen or None,
            }

        calls = MODES[mode]
        plans: ReviewOutcome[Plan] | None = None
        if calls.makes("plan"):
            plans = yield from tally.relay(self._plan(base, done, review=calls.makes("critique")))
        plan = plans.subject if plans else None
        if calls.raw:
            executor: list[Message] = [
                {"role": "user", "content": f"{task}\n\n{context}" if context else task}
            ]
        else:
            executor = self.prompts.render("executor", **base("executor"), plan=plan)
        if done.answers:
            first = done.answers[0]
        else:
            execute = self._call("executor", "execute")
            text = yield from tally.relay(
                tool_loop(self.runner, execute, executor, *self.tools, self.prompts)
                if self.tools
                else self.runner.text(execute, executor)
            )
            first = AnswerVersion(version=1, text=text)
        yield AnswerReady(first)
        allowance = Budget(self.settings.evidence.budget, tally.phases)
        allowance.open()
        contract: Contract | None = None
        ask = Ask()
        if calls.makes("contract"):
            contract, ask = yield from tally.relay(self._decide(base, task, first))
        answers = ReviewOutcome(subject=first, versions=[first], stop_reason="approved")
        if calls.repairs:
            answers = yield from tally.relay(
                self._team_review(base, executor, first, done, ask, allowance)
            )
        elif calls.reviews_answer:
            answers = yield from tally.relay(
                self._review_answer(base("executor"), executor, first, done, allowance)
            )
        chosen = answers.subject if calls.repairs else best_answer(answers.versions)
        sources = [attachment.source for attachment in files if attachment.source is not None]
        citations = check_citations(chosen.text, [s.n for s in sources]) if sources else None
        if citations is not None and not citations.passed:
            unknown = ", ".join(f"[{n}]" for n in citations.unknown)
            yield Notice(
                "citations",
                f"the answer cites {unknown}, which names none of the {len(sources)} sources "
                "it was given",
            )
        result = RunResult(
            id=done.run_id,
            task=task,
            context=context,
            mode=mode,
            models=models,
            plan=plan,
            plans=plans.versions if plans else [],
            critiques=plans.critiques if plans else [],
            rounds=plans.rounds if plans else 0,
            contract=contract,
            ask=ask if calls.makes("contract") else None,
            stop_reason=plans.stop_reason if calls.makes("critique") and plans else None,
            answers=answers.versions,
            answer_critiques=answers.critiques,
            answer_rounds=answers.rounds,
            answer_stop_reason=answers.stop_reason if calls.reviews_answer else None,
            chosen_answer=chosen.version,
            output=chosen.text,
            unmet=unmet(chosen),
            seed=self.seed,
            metrics=RunMetrics(
                phases=tally.phases,
                loads=tally.loads,
                unloads=tally.unloads,
                load_s=round(tally.load_s, 4),
                wall_s=round(time.perf_counter() - started, 4),
                policy=self.manager.policy,
                budget_bytes=self.manager.budget,
                gpu_limit_bytes=self.manager.gpu_limit_bytes,
                memory=[
                    record
                    for spec, record in self.manager.records.items()
                    if spec in self.specs.values()
                ],
                thermal=tally.thermal,
            ),
            conversation_id=conversation.id if conversation else None,
            turn=turn,
            files=[attachment.path for attachment in files if attachment.source is None],
            summarised=summarised,
            sources=sources,
            citations=citations,
            tool_calls=tally.tool_calls,
        )
        yield RunFinished(result)

    def plan_only(
        self, task: str, context: str | None = None
    ) -> Generator[Event, None, ReviewOutcome[Plan]]:
        """The Planner's plan, reviewed by the Critic and revised (as the settings' rounds
        allow), with no answer: for a caller that wants the plan itself (the MCP ``plan``
        tool)."""
        task = task.strip()
        if not task:
            raise UsageError("The task is empty.")
        fitted = fit_for(self.settings, task, context)
        self.contexts = self.choose_contexts(task, fitted.context)
        self.manager.check_all({spec: self._load(spec) for spec in self.contexts})

        def base(role: Role) -> dict[str, Any]:
            return {"task": task, "context": fitted.context}

        done = Resume(run_id=uuid.uuid4().hex[:12])
        models = {role: str(spec) for role, spec in self.specs.items()}
        yield RunStarted(done.run_id, task, fitted.context, models, "plan")
        return (yield from self._plan(base, done, review=True))

    def _fit_extras(
        self,
        task: str,
        context: str | None,
        files: list[Attachment],
        conversation: Conversation | None,
    ) -> Generator[Event, None, tuple[list[Attachment], ConversationView, list[str], int]]:
        """The files and earlier turns, fitted into what the roles' contexts leave after the
        task: first a file too large for the room is replaced by a summary, then the earliest
        turns are, beyond what fits (and ``conversation.max_tokens``). The Executor's model
        writes the summaries; the task itself is never cut. Returns the files, the view of the
        conversation, the names of what was summarised, and the tokens a growing conversation
        may take (0 for a single task)."""
        view, summarised = ConversationView(), list[str]()
        turns = conversation.turns if conversation else []
        growing = conversation is not None and conversation.growing
        if not files and not growing:
            return files, view, summarised, 0
        count = functools.partial(self.manager.count_tokens, self.specs["executor"])
        room = self.spare_tokens(task, context)
        sizes = [count(attachment.text) for attachment in files]
        while files and sum(sizes) > room:
            i = max(range(len(files)), key=sizes.__getitem__)
            if files[i].summarised:
                raise InputLimitError(
                    f"The files take about {sum(sizes):,} tokens even summarised, but the "
                    f"task leaves {max(room, 0):,} in the roles' contexts.",
                    hint="Attach fewer files, or raise num_ctx for the roles "
                    "(e.g. [executor] num_ctx = 16384).",
                )
            text = yield from self._summarise("file", files[i].path, [(files[i].text, sizes[i])])
            files[i] = files[i].model_copy(update={"text": text, "summarised": True})
            tokens = count(text)
            yield Summarised("file", files[i].path, 1, text, sizes[i], tokens)
            sizes[i] = tokens
            summarised.append(files[i].path)
        budget = max(min(room - sum(sizes), self.settings.conversation.max_tokens), 0)
        if not turns:
            return files, view, summarised, budget if growing else 0
        assert conversation is not None
        counts = [count(turn_text(turn)) for turn in turns]
        before = conversation.summary
        done = min(before.covered, len(turns)) if before else 0
        covered = summary_needed(counts, budget, done)
        if covered > len(turns):
            raise InputLimitError(
                f"The task leaves about {max(budget, 0):,} tokens of context for the "
                f"conversation so far, too few even for a summary of it ({SUMMARY_TOKENS}).",
                hint="Start a new conversation (/new in the REPL; without -c), or raise "
                "num_ctx for the roles (e.g. [executor] num_ctx = 16384).",
            )
        summary = before.text if before and done else None
        if covered > done:
            name = f"turn {covered}" if covered == 1 else f"turns 1-{covered}"
            pieces = list(
                zip(map(turn_text, turns[done:covered]), counts[done:covered], strict=True)
            )
            summary = yield from self._summarise("turns", name, pieces, summary)
            yield Summarised("turns", name, covered, summary, sum(counts[:covered]), count(summary))
            summarised.append(name)
        return files, ConversationView(summary, tuple(turns[covered:])), summarised, budget

    def _summarise(
        self,
        subject: Literal["turns", "file"],
        name: str,
        pieces: list[tuple[str, int]],
        summary: str | None = None,
    ) -> Generator[Event, None, str]:
        """A summary of ``pieces`` (text, tokens) by the Executor's model, folding in as many
        pieces per call as its context holds beside the summary so far."""
        call = self._call("executor", "summarise")
        call = replace(call, chat=replace(call.chat, max_tokens=SUMMARY_TOKENS, temperature=0.1))
        room = (call.max_ctx or call.load.num_ctx) - PROMPT_OVERHEAD - 2 * SUMMARY_TOKENS
        for group in pack(pieces, room):
            messages = self.prompts.render(
                "summarise", subject=subject, title=name, summary=summary, pieces=group
            )
            text = yield from self.runner.text(call, messages)
            summary = text.strip() or summary
        return summary or "(no summary could be made)"

    def _plan(
        self, base: Callable[[Role], dict[str, Any]], done: Resume, *, review: bool
    ) -> Generator[Event, None, ReviewOutcome[Plan]]:
        """The Planner's plan, reviewed by the Critic and revised when ``review``."""
        if done.plans:
            plan = done.plans[0]
        else:
            plan = yield from self.runner.structured(
                self._call("planner", "plan"),
                self.prompts.render("planner", **base("planner")),
                Plan,
            )
        yield PlanReady(plan, 1)

        def critique(plan: Plan, round_: int) -> Generator[Event, None, Critique]:
            if round_ <= len(done.critiques):
                return done.critiques[round_ - 1]
            messages = self.prompts.render(
                "critic",
                **base("critic"),
                plan=plan,
                round=round_,
                approve_score=self.settings.approve_score,
            )
            verdict = yield from self.runner.structured(
                self._call("critic", "critique", round_), messages, Verdict
            )
            return Critique(round=round_, **verdict.model_dump())

        def revise(plan: Plan, critique: Critique, round_: int) -> Generator[Event, None, Plan]:
            if round_ < len(done.plans):
                revised = done.plans[round_]
            else:
                messages = self.prompts.render(
                    "revise", **base("planner"), plan=plan, critique=critique
                )
                revised = yield from self.runner.structured(
                    self._call("planner", "revise", round_), messages, Plan
                )
            yield PlanReady(revised, round_ + 1)
            return revised

        if not review:
            return ReviewOutcome(subject=plan, versions=[plan])
        return (
            yield from review_loop(
                plan,
                review=critique,
                revise=revise,
                max_rounds=self.settings.max_rounds,
                approve_score=self.settings.approve_score,
            )
        )

    def _decide(
        self, base: Callable[[Role], dict[str, Any]], task: str, first: AnswerVersion
    ) -> Generator[Event, None, tuple[Contract | None, Ask]]:
        """What the task asks for, decided once: from the task's own words where they say it
        (a function's signature or calls with results: code; stated requirements answered in
        prose: prose), else by the Planner's one short question. Without a valid decision the
        kind is unknown, and no answer is failed for its form."""
        ask = read_ask(task, first.text)
        contract: Contract | None = None
        if ask is None:
            contract = yield from self._soft(
                self.runner.structured(
                    self._call("planner", "contract"),
                    self.prompts.render("contract", **base("planner")),
                    Contract,
                )
            )
            if contract is None:
                yield Notice(
                    "contract",
                    "the Planner gave no valid answer on what the task asks for: the answer's "
                    "form is not checked",
                )
            ask = planned(contract, task, first.text)
        yield AskDecided(ask)
        return contract, ask

    def _review_answer(
        self,
        base: dict[str, Any],
        executor: list[Message],
        first: AnswerVersion,
        done: Resume,
        budget: Budget,
    ) -> Generator[Event, None, ReviewOutcome[AnswerVersion]]:
        """The answer review (``--review answer``, ``both``): check the answer, let the Critic
        judge it with the evidence, and have the Executor fix it, within the same bounded loop
        as the plan review.

        Every follow-up continues the Executor's conversation (its prompt, then its answer), so a
        backend that caches prompt prefixes reuses it. The Critic works on facts: it proposes
        edge-case calls, and judges the answer only when some results are left for judgement
        (what a call returned, with no expected value to compare). Failed checks decide a round
        on their own (the Executor fixes the answer from them), as do passing checks with
        nothing left to judge; the last round only re-checks, since no fix would follow it.
        Once the run's ``budget`` is spent, the checks still run but no model is called: the
        loop stops (``budget``) with the best version so far.
        """
        max_rounds = self.settings.max_rounds + 1  # up to max_rounds fixes, then a re-check
        probes = self.settings.evidence.probes
        ask = Ask()  # nothing decided: no answer is failed for its form

        def critique(answer: AnswerVersion, round_: int) -> Generator[Event, None, Critique]:
            if round_ <= len(done.answer_critiques):
                return done.answer_critiques[round_ - 1]
            conversation = [*executor, {"role": "assistant", "content": answer.text}]
            evidence = self.evidence.collect(base["task"], answer.text, ask=ask)
            evidence.checks += dropped_code(ask, first.text, answer.text)
            final = round_ >= max_rounds or budget.spent()
            asked: list[Message] = []
            function = self.evidence.function_of(base["task"], answer.text)
            if probes and not final and not evidence.failures and function:
                asked = [
                    *conversation,
                    *self.prompts.render("probe", **base, probes=probes, function=function),
                ]
                calls = yield from self._soft(
                    self.runner.structured(self._call("critic", "probe", round_), asked, ProbeCalls)
                )
                if calls is not None and calls.calls:
                    evidence = self.evidence.collect(base["task"], answer.text, calls.calls, ask)
                    asked.append({"role": "assistant", "content": calls.model_dump_json()})
                else:
                    asked = []
            answer.evidence = evidence
            yield EvidenceReady(answer.version, round_, evidence)
            undecided = [c for c in evidence.checks if c.passed is None]
            if evidence.failures or final or not undecided:
                return evidence_critique(evidence, round_)
            messages = [
                *(asked or conversation),
                *self.prompts.render(
                    "review",
                    **base,
                    evidence=evidence,
                    round=round_,
                    approve_score=self.settings.approve_score,
                ),
            ]
            verdict = yield from self._soft(
                self.runner.structured(self._call("critic", "review", round_), messages, Verdict)
            )
            if verdict is None:  # no valid review: the evidence alone decides
                return evidence_critique(evidence, round_)
            return Critique(round=round_, subject="answer", **verdict.model_dump())

        def revise(
            answer: AnswerVersion, critique: Critique, round_: int
        ) -> Generator[Event, None, AnswerVersion]:
            if round_ < len(done.answers):
                revised = done.answers[round_]
            else:
                messages = [
                    *executor,
                    {"role": "assistant", "content": answer.text},
                    *self.prompts.render(
                        "fix", **base, evidence=answer.evidence, critique=critique, ask=ask.kind
                    ),
                ]
                call = self._call("executor", "fix", round_)
                text = yield from self.runner.text(call, messages)
                if _same_text(text, answer.text) and answer.evidence and answer.evidence.failures:
                    # The same failing answer again: ask once more, and sample more freely.
                    again = [
                        *messages,
                        {"role": "assistant", "content": text},
                        *self.prompts.render("repeat", **base),
                    ]
                    seed = None if call.chat.seed is None else call.chat.seed + 1
                    warmer = replace(
                        call.chat, temperature=min(call.chat.temperature + 0.5, 1.0), seed=seed
                    )
                    text = yield from self.runner.text(replace(call, chat=warmer), again)
                revised = AnswerVersion(version=answer.version + 1, text=text, phase="fix")
            yield AnswerReady(revised)
            return revised

        return (
            yield from review_loop(
                first,
                review=critique,
                revise=revise,
                max_rounds=max_rounds,
                approve_score=self.settings.approve_score,
                same=lambda a, b: _same_text(a.text, b.text),
                stalled=_no_better,
                subject="answer",
                spent=budget.spent,
            )
        )

    def _team_review(
        self,
        base: Callable[[Role], dict[str, Any]],
        executor: list[Message],
        first: AnswerVersion,
        done: Resume,
        ask: Ask,
        budget: Budget,
    ) -> Generator[Event, None, ReviewOutcome[AnswerVersion]]:
        """The team's review: the answer checked against what the task asks for (its code run
        on the task's examples in the sandbox, its stated requirements, a result against a
        program computing it) and, while a check fails and the run's
        ``budget`` allows, new versions that do not anchor on the failed one
        (:meth:`_next_version`): a fix conditioned on a wrong answer tends to repeat it
        (measured: docs/eval.md). The answer given is the best version (:func:`best_answer`)."""
        task = base("executor")["task"]
        evidence, computed = yield from self._examine(base, executor, first, ask, budget)
        first.evidence = evidence
        yield EvidenceReady(first.version, 1, evidence)
        versions = [first]
        tries: Counter[str] = Counter(v.phase for v in done.answers[1:])
        stop: StopReason = "approved"
        while True:
            best = team_best(versions, task, ask)
            if not (best.evidence and best.evidence.failures):
                stop = "approved"
                break
            if budget.spent():
                stop = "budget"
                break
            if not self.settings.repair_attempts:
                stop = "max_rounds"  # --max-rounds 0: the answer is checked, never replaced
                break
            if len(versions) < len(done.answers):
                made: AnswerVersion | None = done.answers[len(versions)]
            else:
                made = yield from self._next_version(
                    base, executor, versions, ask, budget, tries, computed
                )
            if made is None:
                stop = "max_rounds"  # every move the failures allow was made
                break
            yield AnswerReady(made)
            made.evidence = self.evidence.collect(task, made.text, ask=ask)
            made.evidence.checks += dropped_code(ask, first.text, made.text)
            yield EvidenceReady(made.version, 0, made.evidence)
            versions.append(made)
        yield LoopStopped(stop, len(versions) - 1, "answer")
        return ReviewOutcome(team_best(versions, task, ask), versions, stop_reason=stop)

    def _examine(
        self,
        base: Callable[[Role], dict[str, Any]],
        executor: list[Message],
        answer: AnswerVersion,
        ask: Ask,
        budget: Budget,
    ) -> Generator[Event, None, tuple[Evidence, str | None]]:
        """The first answer's evidence, with what a program computing a result the answer gave
        without one adds: its printed value is returned, and the answer compared with it. (The
        Critic's edge cases are not asked for: measured on 48 code tasks, they changed no
        outcome and cost a tenth to a third of the time; docs/eval.md.)"""
        task = base("executor")["task"]
        conversation = [*executor, {"role": "assistant", "content": answer.text}]
        evidence = self.evidence.collect(task, answer.text, ask=ask)
        computed: str | None = None
        if self.evidence.computable(ask, answer.text) and not budget.spent():
            program = yield from self._soft(
                self.runner.text(
                    self._call("executor", "compute", 1),
                    [*conversation, *self.prompts.render("compute", **base("executor"))],
                )
            )
            printed = self.evidence.computed_result(program or "")
            if printed:
                computed = printed[0]
                evidence.checks.append(result_agrees(computed, answer.text))
        return evidence, computed

    def _next_version(
        self,
        base: Callable[[Role], dict[str, Any]],
        executor: list[Message],
        versions: list[AnswerVersion],
        ask: Ask,
        budget: Budget,
        tries: Counter[str],
        computed: str | None,
    ) -> Generator[Event, None, AnswerVersion | None]:
        """The next version to try, by what the best one fails; None when no move is left.

        - A result the answer got wrong, or gave as a program: the value its program printed
          (program-aided, PAL), with no call.
        - A stated requirement of the text: first what code does exactly (the case, quotes:
          :func:`~ai_stack.shape.mend`), then the answer written afresh in the shape the
          requirements give (:mod:`ai_stack.shape`; constrained, a count of sentences cannot
          be missed), up to ``max_rounds`` times.
        - Anything else — code failing its examples or crashing, a form the task does not ask
          for: fresh answers that never see the failed one, sampled more freely
          (``max_rounds`` of them); code is asked for without explanation (a third of the
          tokens); with ``evidence.rethink`` the first follows the Planner's new approach
          (planning after trial), where half a first answer's cost is left in the budget: the
          rethink and the code alone after it cost about one first answer.
        """
        best = team_best(versions, base("executor")["task"], ask)
        failed = best.evidence.failures if best.evidence else []
        kinds = {check.kind for check in failed}
        number = versions[-1].version + 1
        attempts = self.settings.repair_attempts
        if ask.kind == "result" and "result" in kinds and not tries["computed"]:
            tries["computed"] += 1
            value = computed or next(
                iter(printed_by(best.evidence.checks if best.evidence else [])), None
            )
            if value and value.strip() and "\n" not in value.strip():
                # in the form the task asks for: "yes or no" gets yes, not the printed True
                text = mend(value.strip(), ask.checked) or value.strip()
                return AnswerVersion(version=number, text=text, phase="computed")
        text_only = kinds <= {"requirement", "form", "result"} and ask.kind in ("prose", "result")
        if text_only and "requirement" in kinds:
            if not tries["mended"]:
                tries["mended"] += 1
                mended = mend(best.text, ask.checked)
                if mended is not None:
                    return AnswerVersion(version=number, text=mended, phase="mended")
            shape = shape_for(ask.checked)
            if shape is not None and tries["shape"] < attempts:
                tries["shape"] += 1
                call = self._warmer(self._call("executor", "shape", tries["shape"]), tries["shape"])
                messages = self.prompts.render(
                    "shape",
                    **base("executor"),
                    shape=shape.describe(),
                    requirements=[r.quote for r in ask.requirements],
                )
                reply = yield from self._soft(self.runner.structured(call, messages, shape.model))
                if reply is not None:
                    return AnswerVersion(version=number, text=shape.compose(reply), phase="shape")
        if tries["attempt"] >= attempts:
            return None
        tries["attempt"] += 1
        code = ask.kind == "code" or (ask.kind == "unknown" and bool(program_blocks(best.text)))
        approach: list[str] | None = None
        if (
            code
            and self.settings.evidence.rethink
            and tries["attempt"] == 1
            and budget.room_for(0.5)
        ):
            rethink = yield from self._soft(
                self.runner.structured(
                    self._call("planner", "rethink"),
                    self.prompts.render(
                        "rethink",
                        **base("planner"),
                        answer=best.text,
                        evidence=best.evidence,
                        ask=ask.kind,
                    ),
                    Rethink,
                )
            )
            approach = rethink.approach if rethink else None
        blocks = program_blocks(best.text) or program_blocks(versions[0].text)
        language = ask.language or (blocks[0].language if blocks else "")
        messages = self.prompts.render(
            "executor",
            **base("executor"),
            plan=None,
            approach=approach,
            requirements=[] if code else [r.quote for r in ask.requirements],
            notes=[f"{c.name}: {c.detail}" for c in failed if c.kind == "form"],
            brief=_block(language) if code else "",
        )
        call = self._call("executor", "attempt", tries["attempt"])
        if approach is None:
            call = self._warmer(call, tries["attempt"] + 1)
        text = yield from self.runner.text(call, messages)
        return AnswerVersion(version=number, text=text, phase="attempt")

    def _warmer(self, call: RoleCall, attempt: int) -> RoleCall:
        """A call sampled more freely, with a seed of its own, from the second try on: the
        same prompt then gives another answer."""
        if attempt < 2:
            return call
        chat = call.chat
        seed = None if chat.seed is None else chat.seed + 7919 * attempt
        warmer = max(chat.temperature, self.settings.evidence.attempt_temperature)
        return replace(call, chat=replace(chat, temperature=warmer, seed=seed))

    @staticmethod
    def _soft(call: Generator[Event, None, T]) -> Generator[Event, None, T | None]:
        """A Critic call in the answer review whose failure to give valid output costs only its
        own contribution (the answer is there; the evidence still decides)."""
        try:
            return (yield from call)
        except InvalidOutputError:
            return None

    def _load(self, spec: ModelSpec) -> LoadOptions:
        """The options ``spec`` is loaded with in the current run: the context chosen for it."""
        options = self.load_options[spec]
        choice = self.contexts.get(spec)
        return options if choice is None else replace(options, num_ctx=choice.num_ctx)

    def _call(self, role: Role, phase: Phase, round_: int = 0) -> RoleCall:
        spec = self.specs[role]
        settings = self.settings.role(role)
        return RoleCall(
            role=role,
            phase=phase,
            spec=spec,
            load=self._load(spec),
            max_ctx=self.load_options[spec].num_ctx,
            chat=ChatOptions(
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
                repeat_penalty=self.settings.repeat_penalty,
                seed=self.seed,
            ),
            round=round_,
        )


def run_seed(seed: int | Literal["random"]) -> int:
    """The seed a run samples with: the configured one, or a fresh one for ``random``.

    >>> run_seed(42)
    42
    >>> run_seed("random") != run_seed("random")
    True
    """
    return seed if isinstance(seed, int) else secrets.randbelow(2**31 - 1) + 1


@dataclass
class Resume:
    """What a run had finished before it stopped: enough to resume it without redoing phases."""

    run_id: str
    plans: list[Plan] = field(default_factory=list)
    critiques: list[Critique] = field(default_factory=list)
    answers: list[AnswerVersion] = field(default_factory=list)
    answer_critiques: list[Critique] = field(default_factory=list)
    phases: list[PhaseMetrics] = field(default_factory=list)


def _block(language: str) -> str:
    """How a prompt names the block code is to come in: ```python, or a fenced block."""
    return f"```{language}" if language in ("python", "shell") else "fenced"


def _same_text(a: str, b: str) -> bool:
    return a.strip() == b.strip()


EDGE_CASES = ("probe", "script")  # checks the run chose, not the task's own


def _failures(version: AnswerVersion) -> tuple[int, int]:
    """How badly a version fails: the task's own checks first, then edge cases."""
    failed = version.evidence.failures if version.evidence else []
    edge = sum(1 for check in failed if check.kind in EDGE_CASES)
    return len(failed) - edge, edge


def unmet(version: AnswerVersion) -> list[str]:
    """The task's own checks ``version`` fails, each as ``name (detail)``: what the run must
    say it did not meet.

    >>> from ai_stack.types import Check
    >>> failed = Check(kind="requirement", name="two sentences", passed=False, detail="3 found")
    >>> unmet(AnswerVersion(version=1, text="x", evidence=Evidence(checks=[failed])))
    ['two sentences (3 found)']
    """
    failed = version.evidence.failures if version.evidence else []
    return [
        f"{check.name} ({check.detail})" if check.detail else check.name
        for check in failed
        if check.kind not in EDGE_CASES
    ]


def _words(text: str) -> set[str]:
    return {word.lower() for word in re.findall(r"[^\W\d]\w{3,}", text)}


def no_worse(first: AnswerVersion, version: AnswerVersion, task: str, ask: Ask) -> bool:
    """Whether ``version`` may replace the first answer: it fails no check of the task's own
    that the first passed and, for an answer in prose, it is not far shorter (under a third of
    its words) and keeps at least half of the task's words the first used. A version that only
    meets a count (``is_even 1.`` for two sentences) has lost what the answer was for.

    >>> first = AnswerVersion(version=1, text="An even number divides by two. Zero is even.")
    >>> task = "Explain what an even number is in two sentences."
    >>> no_worse(first, AnswerVersion(version=2, text="is_even 1."), task, Ask(kind="prose"))
    False
    >>> again = AnswerVersion(version=2, text="An even number has no remainder by two. Four is.")
    >>> no_worse(first, again, task, Ask(kind="prose"))
    True
    """
    passed = {
        (c.kind, c.name)
        for c in (first.evidence.checks if first.evidence else [])
        if c.passed is True and c.kind not in EDGE_CASES
    }
    failed = {(c.kind, c.name) for c in (version.evidence.failures if version.evidence else [])}
    if passed & failed:
        return False
    if ask.kind != "prose":
        return True  # code alone or a computed value: shorter is what was asked for
    if 3 * len(version.text.split()) < len(first.text.split()):
        return False
    used = _words(task) & _words(first.text)
    return 2 * len(used & _words(version.text)) >= len(used)


def team_best(versions: list[AnswerVersion], task: str, ask: Ask) -> AnswerVersion:
    """The team's answer: the best of the first and the versions :func:`no_worse` than it."""
    first = versions[0]
    return best_answer([first, *(v for v in versions[1:] if no_worse(first, v, task, ask))])


def best_answer(versions: list[AnswerVersion]) -> AnswerVersion:
    """The version that fails the fewest of the task's own checks (its examples, the user's
    checks; syntax, names, form), then the fewest edge cases. Among equals that pass, the
    latest (a revision the Critic asked for); among equals that fail, the earliest: a fix that
    fails as much as what it fixed is no better, and the first answer is the model's own."""
    fewest = min(_failures(version) for version in versions)
    equals = [version for version in versions if _failures(version) == fewest]
    return equals[-1] if fewest == (0, 0) else equals[0]


def _no_better(versions: list[AnswerVersion]) -> bool:
    """A fix that fails as much as the answer it fixed: another one is unlikely to do better
    (measured: a 1.5B model's second and third fixes of such an answer repeated its errors)."""
    return len(versions) > 1 and _failures(versions[-1]) >= _failures(versions[-2])


def evidence_critique(evidence: Evidence, round_: int) -> Critique:
    """A round the checks decide without a Critic call: revise (score 0) while any fails, else
    approve (score 10)."""
    score = 0 if evidence.failures else 10
    issues = [f"{check.name} failed: {check.detail}"[:160] for check in evidence.failures[:5]]
    verdict: Literal["approve", "revise"] = "revise" if evidence.failures else "approve"
    return Critique(
        round=round_,
        subject="answer",
        source="evidence",
        issues=issues,
        score=score,
        verdict=verdict,
    )


PROMPT_SPEEDUP = 8  # a prompt token costs about an eighth of a generated one (llama.cpp, CPU)
LEAST_BUDGET = 128.0  # a one-line first answer still leaves room for a fix


def cost(phases: Sequence[PhaseMetrics]) -> float:
    """What calls cost, in generated-token equivalents: a proxy for their time that does not
    depend on how busy the machine is.

    >>> cost([PhaseMetrics(role="executor", phase="execute", model="m", prompt_tokens=800,
    ...                    output_tokens=50)])
    150.0
    """
    return sum(p.output_tokens + p.prompt_tokens / PROMPT_SPEEDUP for p in phases)


@dataclass
class Budget:
    """How much the answer review and repair may cost after the first answer: ``factor``
    times the first answer's own call (``evidence.budget``; 0: no bound). Measured in tokens
    from the run's own phases, so a run's work is proportionate to its task, and a task the
    model keeps failing costs a bounded multiple of one call."""

    factor: float
    phases: list[PhaseMetrics]
    start: int = 0  # phases from here on count against the budget
    allowed: float = 0.0
    unit: float = 0.0  # what the first answer's call cost: about what a fresh answer costs

    def open(self) -> None:
        """The first answer was just given: the budget is a multiple of its call."""
        first = [p for p in self.phases if p.phase in ("execute", "act")][-1:]
        self.unit = max(cost(first), LEAST_BUDGET) if first else 0.0
        self.start, self.allowed = len(self.phases), self.factor * self.unit

    @property
    def bounded(self) -> bool:
        return self.factor > 0 and self.allowed > 0

    def spent(self) -> bool:
        return self.bounded and cost(self.phases[self.start :]) >= self.allowed

    def room_for(self, calls: float) -> bool:
        """Whether about ``calls`` more calls the size of the first answer's fit."""
        left = self.allowed - cost(self.phases[self.start :])
        return not self.bounded or left >= calls * self.unit


@dataclass
class Tally:
    """Totals derived from events — the only accounting there is. A run's pipeline tallies its
    own events (so runs interleaved by the batch scheduler stay apart); a batch tallies all."""

    phases: list[PhaseMetrics] = field(default_factory=list)
    loads: int = 0
    unloads: int = 0
    load_s: float = 0.0
    thermal: list[ThermalDecision] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    _called: ToolCalled | None = None

    def observe(self, event: Event) -> None:
        if isinstance(event, ToolCalled):
            self._called = event
        elif isinstance(event, ToolResult):
            arguments = self._called.arguments if self._called else ""
            self.tool_calls.append(
                ToolCallRecord(
                    step=event.step,
                    tool=event.tool,
                    arguments=arguments,
                    result=event.text,
                    ok=event.ok,
                    truncated=event.truncated,
                    seconds=event.seconds,
                )
            )
        elif isinstance(event, PhaseFinished):
            self.phases.append(event.metrics)
        elif isinstance(event, ModelLoaded):
            self.loads += 1
            self.load_s += event.seconds
        elif isinstance(event, ModelUnloaded):
            self.unloads += 1
            if event.cause == "thermal":
                self.thermal.append(
                    ThermalDecision(kind="unload", level="critical", reason=event.model)
                )
        elif isinstance(event, ThermalNote):
            self.thermal.append(
                ThermalDecision(kind=event.kind, level=event.level, reason=event.reason)
            )
        elif isinstance(event, ThermalPause) and event.waited_s == 0:
            self.thermal.append(
                ThermalDecision(kind="pause", level=event.level, reason=event.reason)
            )
        elif isinstance(event, ThermalResumed) and self.thermal:
            self.thermal[-1] = self.thermal[-1].model_copy(
                update={"seconds": round(event.paused_s, 3)}
            )

    def relay(self, events: Generator[Event, None, S]) -> Generator[Event, None, S]:
        """Pass ``events`` on, observing each; returns what the generator returned."""
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                return stop.value
            self.observe(event)
            yield event
