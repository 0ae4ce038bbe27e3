"""Rich rendering of pipeline events. The console is injected; nothing here decides anything.

Progress goes to one console (stderr in the CLI), the answer to another stream (stdout), so
``ai-stack "task" > answer.md`` keeps only the answer. It streams as it is written, except when
the answer is reviewed: then a fix may replace it, and only the final answer is written, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath
from typing import Literal, TextIO

from rich.console import Console
from rich.status import Status

from ai_stack.modes import MODES
from ai_stack.terminal import ControlFilter, escape
from ai_stack.types import (
    AnswerReady,
    AskDecided,
    CallRetried,
    CritiqueReady,
    Event,
    Evidence,
    EvidenceReady,
    LeaseWaiting,
    LoopStopped,
    ModelLoaded,
    ModelLoading,
    ModelUnloaded,
    Notice,
    PhaseFinished,
    PhaseStarted,
    Plan,
    PlanReady,
    Reasked,
    RunFinished,
    RunStarted,
    StopReason,
    Summarised,
    ThermalNote,
    ThermalPause,
    ThermalResumed,
    Token,
    ToolCalled,
    ToolResult,
)
from ai_stack.units import gib

_PHASE_LABELS = {
    "plan": "Planner drafting the plan",
    "contract": "Planner saying what the task asks for",
    "rethink": "Planner rethinking the approach",
    "attempt": "Executor answering afresh",
    "critique": "Critic reviewing",
    "revise": "Planner revising",
    "execute": "Executor writing the answer",
    "probe": "Critic choosing edge cases to run",
    "compute": "Executor computing the result with a program",
    "review": "Critic reviewing the answer",
    "fix": "Executor fixing the answer",
    "shape": "Executor writing the answer in the shape the task asks for",
    "summarise": "Summarising what does not fit the context",
    "act": "Executor using tools",
}
_STOP_LABELS = {
    "approved": "the critic approved",
    "score": "the score reached the threshold",
    "unchanged": "the revised plan did not change",
    "no_progress": "the revision was no better",
    "max_rounds": "the round limit was reached",
    "budget": "its budget (evidence.budget) was spent",
}
_ANSWER_STOP_LABELS = {
    **_STOP_LABELS,
    "approved": "nothing left failing or to judge",
    "unchanged": "the fix did not change the answer",
    "no_progress": "a fix failed as many checks as the answer it fixed",
}


def review_ending(
    subject: Literal["plan", "answer"], reason: StopReason, rounds: int, *, repairs: bool
) -> str:
    """How a review ended, in words: the plan's or the answer's rounds, or — where the mode
    replaces a failing answer — the versions it made (a repair has no rounds; the first
    answer's version is 1).

    >>> review_ending("answer", "approved", 0, repairs=True)
    'Answer review ended with 1 version(s): nothing left failing or to judge'
    >>> review_ending("plan", "max_rounds", 2, repairs=False)
    'Review ended after 2 round(s): the round limit was reached'
    """
    plan = subject == "plan"
    what, labels = ("Review", _STOP_LABELS) if plan else ("Answer review", _ANSWER_STOP_LABELS)
    after = f"with {rounds + 1} version(s)" if repairs else f"after {rounds} round(s)"
    return f"{what} ended {after}: {labels[reason]}"


def format_plan(plan: Plan) -> str:
    lines = [f"[bold]Goal:[/] {escape(plan.goal)}"]
    lines += [
        f"  {i}. [bold]{escape(step.title)}[/] — {escape(step.detail)}"
        for i, step in enumerate(plan.steps, 1)
    ]
    return "\n".join(lines)


def shorten(text: str, width: int = 200) -> str:
    """One line of at most ``width`` characters for progress output; a huge task is not
    echoed whole.

    >>> shorten("a\\nb"), shorten("x" * 300)[-18:]
    ('a b', '… (300 characters)')
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= width else f"{flat[:width]}… ({len(text):,} characters)"


def format_evidence(evidence: Evidence, version: int) -> str:
    """The checks on an answer version: a summary line, then each failure (and each output the
    Critic is to judge)."""
    colour = "red" if evidence.failures else "green" if evidence.decided else "dim"
    lines = [f"[{colour}]Checks on answer v{version}: {escape(evidence.summary())}[/]"]
    for check in evidence.checks:
        if check.passed is not True:
            mark = "[red]✗[/]" if check.passed is False else "[dim]→[/]"
            detail = f": {escape(check.detail)}" if check.detail else ""
            lines.append(f"  {mark} {escape(check.name)}{detail}")
    return "\n".join(lines)


def short_model(name: str) -> str:
    """How progress names a model: a server's model whose id is a file path (llama-cpp-python's
    server, an embedded GGUF) by its file name; every other id as it is.

    >>> short_model("openai:/home/me/models/qwen2.5-coder-1.5b-q4_k_m.gguf")
    'openai:qwen2.5-coder-1.5b-q4_k_m.gguf'
    >>> short_model("ollama:hf.co/bartowski/Qwen2.5-7B-GGUF:Q4_K_M"), short_model("qwen2.5:7b")
    ('ollama:hf.co/bartowski/Qwen2.5-7B-GGUF:Q4_K_M', 'qwen2.5:7b')
    """
    backend, colon, model = name.partition(":")
    if not colon:
        backend, model = "", name
    path = model.startswith(("/", "~", "./", "../")) or model.lower().endswith(".gguf")
    return f"{backend}{colon}{PurePath(model).name}" if "/" in model and path else name


def named(model: str) -> str:
    """A model's name as progress shows it: short, and with no markup or control sequences."""
    return escape(short_model(model))


def unmet_line(unmet: list[str]) -> str:
    """The line that ends a run whose answer fails checks of the task's own.

    >>> unmet_line(["two sentences (3 found)", "running the code (NameError)"])
    'unmet: two sentences (3 found); running the code (NameError)'
    """
    return "unmet: " + "; ".join(unmet)


def format_ask(event: AskDecided) -> str:
    """What the task asks for, who decided, and the requirements its words state."""
    ask = event.ask
    kind = {"code": "code", "result": "a result", "prose": "prose", "unknown": "?"}[ask.kind]
    if ask.kind == "code" and ask.language:
        kind += f" ({ask.language})"
    by = "its words say" if ask.by == "task" else "the Planner says"
    if ask.kind == "unknown":
        lines = ["[yellow]What the task asks for is not known: no form is checked[/]"]
    else:
        lines = [f"[bold green]The task asks for {kind}[/] [dim]({by})[/]"]
    lines += [f"  - {escape(requirement.describe())}" for requirement in ask.requirements]
    return "\n".join(lines)


class Display:
    """Turns events into terminal output.

    ``answer`` receives the executor's streamed text; ``None`` means don't stream it (``--json``).
    At a terminal the answer is shown without its control sequences; to a file or a pipe it is
    written verbatim.
    """

    def __init__(self, console: Console, answer: TextIO | None = None, *, quiet: bool = False):
        self.console = console
        self.answer = answer
        self.quiet = quiet
        self._status: Status | None = None
        self._phase: PhaseStarted | None = None
        self._tokens = 0
        self._answer_open = False
        self._streaming = True  # False while answers are reviewed: the final one is written once
        self._repairs = False  # the mode replaces failing answers: versions, not rounds
        shown = answer is not None and answer.isatty()
        self._filter = ControlFilter() if shown else None
        self._streamed = False  # this run's answer was streamed as it came

    def handle(self, event: Event) -> None:
        if isinstance(event, Token):
            self._on_token(event)
            return
        if isinstance(event, RunStarted):
            self._streaming = MODES[event.mode].streams
            self._streamed = False
            self._repairs = MODES[event.mode].repairs
        if isinstance(event, RunFinished):
            self._end_answer()
            self._stop_status()
            # a tool loop's answer is a step's JSON: never streamed, written here
            if not (self._streaming and self._streamed) and self.answer is not None:
                self._write_answer(event.result.output.rstrip() + "\n")
                self._end_answer()
        with self._wrapped():
            if not self.quiet:
                self._render(event)
            if isinstance(event, RunFinished) and event.result.unmet:
                # the last line, also with --quiet: the answer given does not do what was asked
                self.console.print(f"[bold yellow]{escape(unmet_line(event.result.unmet))}[/]")

    @contextmanager
    def _wrapped(self) -> Iterator[None]:
        """Progress wrapped at words to the console's width (the CLI's console soft-wraps,
        which leaves a terminal to cut long lines mid-word and a log file with long lines)."""
        soft_wrap, self.console.soft_wrap = self.console.soft_wrap, False
        try:
            yield
        finally:
            self.console.soft_wrap = soft_wrap

    def _render(self, event: Event) -> None:
        """What one event shows on the console (progress; the answer is written by handle)."""
        match event:
            case RunStarted():
                roles = " · ".join(
                    f"{role} [cyan]{named(model)}[/]"
                    for role, model in event.models.items()
                    if role in MODES[event.mode].roles
                )
                self.console.print(
                    f"[bold]Task:[/] {escape(shorten(event.task))}\n[dim]Models:[/] {roles} "
                    f"[dim]· run {event.run_id}[/]"
                )
                if event.turn is not None and event.turn > 1:
                    self.console.print(
                        f"[dim]Conversation {event.conversation_id}, turn {event.turn}[/]"
                    )
                names = ", ".join(f.path for f in event.files if f.source is None)
                if names:
                    self.console.print(f"[dim]Files: {escape(names)}[/]")
                sources = ", ".join(str(f.source) for f in event.files if f.source is not None)
                if sources:
                    self.console.print(f"[dim]Sources: {escape(sources)}[/]")
            case Notice():
                self.console.print(f"[yellow]Note: {escape(event.message)}.[/]")
            case LeaseWaiting():
                if event.done:
                    self._stop_status()
                    self.console.print(
                        "[dim]The other ai-stack process is done with "
                        f"{escape(event.holder_model)}; going on.[/]"
                    )
                else:
                    self.console.print(
                        f"[yellow]Waiting for another ai-stack process using "
                        f"{escape(event.holder_model)} (pid {event.holder_pid}) before using "
                        f"{named(event.model)}.[/]"
                    )
                    self._set_status(f"Waiting for pid {event.holder_pid}…")
            case Summarised():
                what, verb = (
                    (f"the conversation's {event.name}", "were")
                    if event.subject == "turns"
                    else (f"the file {event.name}", "was")
                )
                self.console.print(
                    f"[yellow]Note: {escape(what)} did not fit the context and {verb} replaced "
                    f"by a summary ({event.tokens_before:,} → {event.tokens_after:,} tokens).[/]"
                )
            case PhaseStarted():
                self._phase, self._tokens = event, 0
                if self._streams(event):
                    self._stop_status()
                    return
                self._set_status(self._status_text())
            case ModelLoading():
                self._set_status(f"Loading [cyan]{named(event.model)}[/]…")
            case ModelLoaded():
                memory = f"estimated {gib(event.estimate_bytes)}"
                if event.resident_bytes is not None:
                    memory += f", measured {gib(event.resident_bytes)}"
                self.console.print(
                    f"[dim]Loaded {named(event.model)} in {event.seconds:.2f} s ({memory})[/]"
                )
                if self._phase is not None and not self._streams(self._phase):
                    self._set_status(self._status_text())
            case ModelUnloaded():
                reason = escape(event.reason)
                self.console.print(f"[dim]Unloaded {named(event.model)} ({reason})[/]")
            case CallRetried():
                self._end_answer()
                self.console.print(
                    f"[yellow]The {event.role}'s answer was interrupted ({escape(event.reason)}); "
                    "asking again. Any text shown for it above is void.[/]"
                )
            case ThermalNote():
                self.console.print(f"[yellow]Thermal: {escape(event.reason)}[/]")
            case ThermalPause():
                left = max(event.max_s - event.waited_s, 0)
                if event.waited_s == 0:
                    self._end_answer()
                    self.console.print(f"[yellow]Thermal: {escape(event.reason)}[/]")
                self._set_status(
                    f"[yellow]Paused, thermal level {event.level}[/] · resuming in {left:.0f} s "
                    "or as soon as it eases"
                )
            case ThermalResumed():
                self._stop_status()
                self.console.print(
                    f"[dim]Resumed after {event.paused_s:.0f} s: {escape(event.reason)}[/]"
                )
            case Reasked():
                self.console.print(
                    f"[yellow]The {event.role}'s reply was invalid ({escape(event.error)}); "
                    f"asking again (attempt {event.attempt}).[/]"
                )
            case PhaseFinished():
                self._end_answer()
                self._stop_status()
                m = event.metrics
                self.console.print(
                    f"[dim]{m.role} · {m.phase} · {named(m.model)} · {m.output_tokens} tokens · "
                    f"{m.tokens_per_s:.1f} tok/s · {m.wall_s:.2f} s[/]"
                )
            case ToolCalled():
                self._stop_status()
                self.console.print(
                    f"[cyan]Tool {event.step}:[/] {escape(shorten(event.arguments, 160))}"
                )
            case ToolResult():
                style = "dim" if event.ok else "yellow"  # an error's text says so itself
                cut = " (cut)" if event.truncated else ""
                first = event.text.strip().splitlines()[0] if event.text.strip() else "(empty)"
                self.console.print(
                    f"[{style}]  → {escape(shorten(first, 140))}{cut} · {event.seconds:.2f} s[/]"
                )
            case PlanReady():
                title = "Plan" if event.version == 1 else f"Plan, version {event.version}"
                self.console.print(f"[bold green]{title}[/]\n{format_plan(event.plan)}")
            case AskDecided():
                self.console.print(format_ask(event))
            case CritiqueReady():
                c = event.critique
                colour = "green" if c.verdict == "approve" else "yellow"
                what = "Critique" if c.subject == "plan" else "Answer review"
                by = " (by the checks)" if c.source == "evidence" else ""
                self.console.print(
                    f"[bold {colour}]{what}, round {c.round}: {c.verdict} ({c.score}/10){by}[/]"
                )
                if c.source == "critic":
                    for issue in c.issues:
                        self.console.print(f"  - {escape(issue)}")
            case AnswerReady() if not self._streaming:
                tokens = self._tokens
                version = event.answer.version
                what = {
                    "execute": "Answer",
                    "fix": f"Fixed answer (v{version})",
                    "attempt": f"Fresh answer (v{version})",
                    "shape": f"Answer in the task's shape (v{version})",
                    "mended": f"Answer with the case or quotes the task asks for (v{version})",
                    "computed": f"The result the program printed (v{version})",
                }[event.answer.phase]
                made = event.answer.phase in ("mended", "computed")  # by code, not a model
                self.console.print(
                    f"[dim]{what}{'.' if made else f' written ({tokens} tokens).'}[/]"
                )
            case EvidenceReady():
                self.console.print(format_evidence(event.evidence, event.version))
            case LoopStopped():
                repairs = self._repairs and event.subject == "answer"
                ending = review_ending(event.subject, event.reason, event.rounds, repairs=repairs)
                self.console.print(f"[dim]{ending}.[/]")
            case RunFinished():
                totals = event.result.metrics
                self.console.print(
                    f"[dim]Done in {totals.wall_s:.1f} s · {len(totals.phases)} model calls · "
                    f"{totals.loads} load(s), {totals.unloads} unload(s), "
                    f"{totals.load_s:.2f} s loading[/]"
                )

    def close(self) -> None:
        self._end_answer()
        self._stop_status()

    def _on_token(self, event: Token) -> None:
        self._tokens += 1
        answering = self._phase is None or self._phase.phase not in ("summarise", "act")
        if event.role == "executor" and answering and self.answer is not None and self._streaming:
            if not self._answer_open:
                self._answer_open = True
                self._stop_status()  # a spinner redrawn on the answer's line would erase it
                if not self.quiet:
                    self.console.print("[bold]Answer[/]")
            self._write_answer(event.text)
            self._streamed = True
        elif self._status is not None and self._tokens % 8 == 0:
            self._status.update(self._status_text())

    def _streams(self, phase: PhaseStarted) -> bool:
        """Whether this call's reply is the answer, shown as it is written (so no spinner)."""
        return phase.phase == "execute" and self.answer is not None and self._streaming

    def _write_answer(self, text: str) -> None:
        assert self.answer is not None
        self.answer.write(self._filter.feed(text) if self._filter is not None else text)
        self.answer.flush()

    def _status_text(self) -> str:
        phase = self._phase
        if phase is None:
            return "Working…"
        label = _PHASE_LABELS[phase.phase]
        if phase.round:
            label += f" (round {phase.round})"
        if phase.attempt > 1:
            label += f", attempt {phase.attempt}"
        return f"{label} · [cyan]{named(phase.model)}[/] · {self._tokens} tokens"

    def _set_status(self, text: str) -> None:
        if self.quiet:
            return
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _end_answer(self) -> None:
        if self.answer is not None and (self._answer_open or self._filter is not None):
            rest = self._filter.flush() if self._filter is not None else ""  # held: cut off
            self.answer.write(rest + ("\n" if self._answer_open else ""))
            self.answer.flush()
        self._answer_open = False
