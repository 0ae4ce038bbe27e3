"""``ai-stack [run] TASK``: one task, or a REPL with --interactive."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ai_stack.access import FilePolicy
from ai_stack.cli.common import (
    EXIT_UNMET,
    RunOptions,
    configure_logging,
    error_console,
    history_warning,
    read_stdin,
    readable,
    reported_errors,
    run_options,
)
from ai_stack.cli.repl import Repl
from ai_stack.display import Display
from ai_stack.errors import FileAccessError, UsageError
from ai_stack.files import read_limited
from ai_stack.knowledge.store import IndexStore
from ai_stack.modes import MODES
from ai_stack.runtime import (
    attach,
    cite_passages,
    execute,
    find_conversation,
    find_passages,
    open_recorder,
)
from ai_stack.sandbox import SandboxReport
from ai_stack.session import Session
from ai_stack.types import Attachment


def say_how_code_runs(console: Console, session: Session) -> None:
    """Once per process: when answers are reviewed but their code cannot run here."""
    if MODES[session.settings.mode].reviews_answer:
        for note in SandboxReport.of(session.evidence().sandbox).notes:
            console.print(f"[yellow]{escape(note)}[/]", soft_wrap=False)


def piped_input(policy: FilePolicy) -> Attachment | None:
    """What is piped into stdin, as context for a task given as an argument
    (``cat error.log | ai-stack "why does this fail?"``); None when stdin is a terminal or
    nothing was piped. Only a pipe or a file is read: reading a terminal or a socket left open
    would wait forever."""
    stream = sys.stdin
    if stream is None or stream.isatty():
        return None
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (io.UnsupportedOperation, OSError, ValueError):
        mode = None  # an in-memory stream (tests, embedding): reading it cannot block
    if mode is not None and not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode)):
        return None
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        data = read_limited(buffer, policy.max_file_bytes)
    else:
        data = stream.read(policy.max_file_bytes + 1).encode("utf-8")
    if data is None or len(data) > policy.max_file_bytes:
        raise FileAccessError(
            "stdin",
            f"What was piped in is over the {policy.max_file_bytes // 1024:,} KiB limit for one "
            "file.",
            hint="Raise files.max_file_kb in the config, or pipe a smaller excerpt.",
        )
    if not data.strip():
        return None
    return Attachment(path="stdin", text=policy.admit("stdin", data))


TOOL_NAMES = re.compile(r"[\w.-]+(,[\w.-]+)*")


def tool_choice(
    value: str | None, task: tuple[str, ...]
) -> tuple[list[str] | None, tuple[str, ...]]:
    """The tools ``--tools`` asks for (None: off; []: every one) and the task. ``--tools``
    takes an optional value, so in ``ai-stack --tools "What does f return?"`` click hands it
    the task: a value that is not a list of tool names is the task's first words.

    >>> tool_choice("read_file,list_dir", ("task",))
    (['read_file', 'list_dir'], ('task',))
    >>> tool_choice("Which file defines f?", ())
    ([], ('Which file defines f?',))
    >>> tool_choice(None, ("task",))
    (None, ('task',))
    """
    if value is None:
        return None, task
    if value in ("*", "all"):
        return [], task
    if TOOL_NAMES.fullmatch(value):
        return value.split(","), task
    return [], (value, *task)


@click.command("run")
@click.argument("task", nargs=-1)
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Attach a file to the task as context (repeatable; docs/files.md says which).",
)
@click.option(
    "--kb",
    "knowledge",
    multiple=True,
    metavar="NAME",
    help="Answer from the knowledge index NAME: its best passages become numbered sources "
    "the answer cites (repeatable; docs/knowledge.md).",
)
@click.option(
    "-c", "--continue", "continue_", is_flag=True, help="Continue the most recent conversation."
)
@click.option("--conversation", metavar="ID", help="Continue the conversation with this id.")
@click.option("-i", "--interactive", is_flag=True, help="Read tasks line by line (a REPL).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output on stderr.")
@click.option("--no-history", is_flag=True, help="Do not record this run in the history.")
@click.option(
    "--strict",
    is_flag=True,
    help=f"Exit {EXIT_UNMET} when the answer given fails a check of the task's own (it is "
    "still printed; the checks it fails end stderr: 'unmet: ...').",
)
@click.option(
    "--tools",
    "tools",
    is_flag=False,
    flag_value="*",
    default=None,
    metavar="[NAME,...]",
    help="Let the Executor use tools (files, a sandboxed interpreter): all, or those named "
    "(docs/tools.md).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(1, 50),
    help="Tool calls at most before the answer (with --tools; default 6).",
)
@run_options
def run_command(
    task: tuple[str, ...],
    files: tuple[Path, ...],
    knowledge: tuple[str, ...],
    continue_: bool,
    conversation: str | None,
    interactive: bool,
    as_json: bool,
    quiet: bool,
    no_history: bool,
    strict: bool,
    tools: str | None,
    max_steps: int | None,
    options: RunOptions,
) -> None:
    """Run TASK with the team: the answer is checked, and replaced while checks fail (the
    default command).

    TASK may be several words; "-" reads it from stdin. Otherwise what is piped into stdin is
    context for TASK, like a file given with -f.
    """
    console = error_console()
    configure_logging(options.debug)
    with reported_errors(console, options.debug):
        settings = options.settings()
        if no_history:
            settings.history.enabled = False
        names, task = tool_choice(tools, task)
        if names is not None:
            settings.tools.enabled = True
            settings.tools.names = names or settings.tools.names
        if max_steps is not None:
            settings.tools.max_steps = max_steps
        text = " ".join(task).strip()
        if readable(text)[1]:  # bytes that were not UTF-8, kept as lone surrogates
            raise UsageError(
                "The task is not valid UTF-8 text.",
                hint="Check the terminal's encoding, or give the task from a UTF-8 file: "
                "ai-stack - < task.txt",
            )
        if continue_ and conversation:
            raise UsageError("Give either --continue or --conversation ID, not both.")
        policy = settings.file_policy()
        attached = attach(policy, files)  # before any model loads: a refused file stops here
        if interactive:
            if text:
                raise UsageError("Give either a task or --interactive, not both.")
        else:
            if text == "-":
                text = read_stdin(console).strip()
            elif text:
                piped = piped_input(policy)
                attached += [piped] if piped is not None else []
            if not text:
                raise UsageError(
                    "The task is empty.",
                    hint='Usage: ai-stack "TASK"  (or --interactive; see --help)',
                )
        for name in knowledge:  # an unknown or damaged index stops here, before any load
            IndexStore.open(name).close()
        passages = find_passages(knowledge, text) if text else []
        talk = find_conversation(settings, continue_, conversation)
        with Session.open(settings) as session:
            remote = session.remote_note()
            if remote:  # said even when quiet: it is where the prompts go
                console.print(f"[yellow]{escape(remote)}[/]")
            if not quiet:
                console.print(f"[dim]Backend: {escape(session.backend_note)}[/]")
                if settings.source is not None:
                    console.print(f"[dim]Config: {escape(str(settings.source))}[/]")
                say_how_code_runs(console, session)
                hint = session.demo_hint()
                if hint:
                    console.print(f"[yellow]Note: {escape(hint)}[/]", soft_wrap=False)
            pipeline = session.pipeline()
            pipeline.preflight()
            source = "interactive" if interactive else "oneshot"
            recorder = open_recorder(session, pipeline, source, history_warning(console))
            try:
                if interactive:
                    repl = Repl(
                        pipeline,
                        console,
                        as_json=as_json,
                        quiet=quiet,
                        recorder=recorder,
                        conversation=talk,
                        files=attached,
                        policy=policy,
                        knowledge=knowledge,
                    )
                    sys.exit(repl.loop())
                attached += cite_passages(pipeline, passages, text, attached)
                display = Display(console, None if as_json else sys.stdout, quiet=quiet)
                result = execute(
                    pipeline, text, display, recorder, conversation=talk, files=attached
                )
            finally:
                if recorder is not None:
                    recorder.store.close()
            if as_json:
                click.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
            if strict and result.unmet:
                sys.exit(EXIT_UNMET)
