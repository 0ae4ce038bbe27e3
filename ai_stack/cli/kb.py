"""``ai-stack kb ...``: build, inspect, search and remove knowledge indexes (docs/knowledge.md)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ai_stack.access import FilePolicy
from ai_stack.cli.common import EXIT_INTERRUPTED, F, command, config_options, counted_progress
from ai_stack.config import Settings
from ai_stack.errors import AiStackError
from ai_stack.knowledge.indexer import MAX_FILES, Report, index, resolve_roots
from ai_stack.knowledge.retrieval import retrieve
from ai_stack.knowledge.store import IndexStore, check_name

SHOWN_SKIPS = 10  # skipped files listed by name; the rest counted


@click.group()
def kb() -> None:
    """Local knowledge: index documents and code, search them, answer from them (--kb)."""


def _policy(settings: Settings, store: IndexStore, sensitive: tuple[Path, ...]) -> FilePolicy:
    """The file-access policy for an index: its own paths and the user's allowed directories;
    secret locations only those named with --allow-sensitive (or files.allow_sensitive)."""
    roots = [Path(root.real) for root in store.info.roots]
    policy = settings.file_policy(*roots)
    named = FilePolicy.create(allowed_sensitive=sensitive).allowed_sensitive
    return dataclasses.replace(policy, allowed_sensitive=policy.allowed_sensitive | named)


def _run_index(
    console: Console, store: IndexStore, policy: FilePolicy, limit: int, quiet: bool
) -> Report:
    """Index with a progress bar on stderr; Ctrl-C keeps what was indexed and says how to go on."""
    progress = counted_progress(console, quiet=quiet)
    bar = progress.add_task("indexing", total=None)

    def step(done: int, total: int, path: str) -> None:
        progress.update(bar, completed=done, total=total, description=escape(path[-40:]))

    try:
        with progress:
            return index(store, policy, limit=limit, progress=step)
    except KeyboardInterrupt:
        files, chunks = store.counts()
        console.print(
            f"\n[yellow]Interrupted.[/] The index {escape(store.name)!r} keeps the {files:,} "
            f"files ({chunks:,} passages) indexed so far; continue with: "
            f"ai-stack kb update {escape(store.name)}"
        )
        sys.exit(EXIT_INTERRUPTED)


def _say(console: Console, name: str, report: Report, store: IndexStore) -> None:
    files, chunks = store.counts()
    console.print(
        f"{escape(name)}: {files:,} files, {chunks:,} passages "
        f"[dim](added {report.added}, changed {report.changed}, unchanged {report.unchanged}, "
        f"removed {report.removed})[/]"
    )
    for path in report.moving:
        console.print(
            f"[yellow]{escape(path)} changed while it was read:[/] indexed as read; "
            f"`ai-stack kb update {escape(name)}` reads it again."
        )
    if report.skipped:
        count = len(report.skipped)
        console.print(f"[yellow]Skipped {count:,} file{'' if count == 1 else 's'}:[/]")
        for path, why in report.skipped[:SHOWN_SKIPS]:
            console.print(f"  {escape(path)}: [dim]{escape(why)}[/]")
        if len(report.skipped) > SHOWN_SKIPS:
            console.print(f"  [dim]... and {len(report.skipped) - SHOWN_SKIPS:,} more[/]")


def _index_options(command_: F) -> F:
    command_ = click.option(
        "--allow-sensitive",
        "sensitive",
        multiple=True,
        type=click.Path(path_type=Path),
        metavar="PATH",
        help="Let this one secret location (a key, .env, ...) be indexed.",
    )(command_)
    command_ = click.option(
        "--max-files",
        type=click.IntRange(min=1),
        default=MAX_FILES,
        show_default=True,
        help="Refuse a walk that finds more files than this.",
    )(command_)
    return click.option("-q", "--quiet", is_flag=True, help="No progress output.")(command_)


@kb.command("add")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@_index_options
@config_options
def add(
    name: str,
    paths: tuple[Path, ...],
    sensitive: tuple[Path, ...],
    max_files: int,
    quiet: bool,
    config_file: Path | None,
    debug: bool,
) -> None:
    """Index the files and directories PATHS as NAME (through the file-access policy)."""
    with command(config_file, debug) as (console, settings):
        check_name(name)
        roots = resolve_roots(list(paths))
        store = IndexStore.create(name, roots)
        with store:
            try:
                report = _run_index(
                    console, store, _policy(settings, store, sensitive), max_files, quiet
                )
            except AiStackError:
                store.close()
                IndexStore.remove(name)  # nothing indexed: leave no empty index behind
                raise
            _say(console, name, report, store)


@kb.command("update")
@click.argument("name")
@click.option("--rebuild", is_flag=True, help="Start the index afresh (a damaged database).")
@_index_options
@config_options
def update(
    name: str,
    rebuild: bool,
    sensitive: tuple[Path, ...],
    max_files: int,
    quiet: bool,
    config_file: Path | None,
    debug: bool,
) -> None:
    """Bring NAME up to date: changed files re-indexed (by content hash), removed ones dropped."""
    with command(config_file, debug) as (console, settings):
        if rebuild:
            IndexStore.drop_database(name)  # derived data: NAME.json says what to index again
        with IndexStore.open(name) as store:
            report = _run_index(
                console, store, _policy(settings, store, sensitive), max_files, quiet
            )
            _say(console, name, report, store)


@kb.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON list on stdout.")
@config_options
def list_indexes(as_json: bool, config_file: Path | None, debug: bool) -> None:
    """The knowledge indexes, with their files and passages."""
    with command(config_file, debug) as (console, _):
        rows = []
        for name in IndexStore.names():
            with IndexStore.open(name) as store:
                files, chunks = store.counts()
                rows.append(
                    {
                        "name": name,
                        "paths": [root.shown for root in store.info.roots],
                        "files": files,
                        "passages": chunks,
                        "complete": store.state("complete") == "yes",
                        "bytes": store.size_on_disk(),
                    }
                )
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False))
            return
        if not rows:
            console.print("No knowledge indexes yet: ai-stack kb add NAME PATH...")
            return
        table = Table("name", "paths", "files", "passages", "size", "state")
        for row in rows:
            table.add_row(
                escape(str(row["name"])),
                escape(", ".join(row["paths"])),  # type: ignore[arg-type]
                f"{row['files']:,}",
                f"{row['passages']:,}",
                f"{int(row['bytes']) / 1024:,.0f} KiB",  # type: ignore[call-overload]
                "ok" if row["complete"] else "[yellow]incomplete: kb update[/]",
            )
        Console().print(table)


@kb.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The index as JSON on stdout.")
@config_options
def show(name: str, as_json: bool, config_file: Path | None, debug: bool) -> None:
    """What NAME indexes: its paths and each file with its passages."""
    with command(config_file, debug) as _, IndexStore.open(name) as store:
        files = store.file_rows()
        data = {
            "name": name,
            "created": store.info.created,
            "paths": [{"path": r.shown, "real": r.real} for r in store.info.roots],
            "complete": store.state("complete") == "yes",
            "files": [{"path": p, "bytes": b, "passages": n} for p, b, n in files],
        }
        if as_json:
            click.echo(json.dumps(data, ensure_ascii=False))
            return
        out = Console()
        out.print(f"[bold]{escape(name)}[/] [dim]created {escape(store.info.created)}[/]")
        for root in store.info.roots:
            out.print(f"  {escape(root.shown)} [dim]({escape(root.real)})[/]")
        if not data["complete"]:
            out.print(f"[yellow]Incomplete: run ai-stack kb update {escape(name)}[/]")
        table = Table("file", "bytes", "passages")
        for path, size, count in files:
            table.add_row(escape(path), f"{size:,}", f"{count:,}")
        out.print(table)


@kb.command("search")
@click.argument("name")
@click.argument("query")
@click.option("-n", "--limit", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The passages as JSON on stdout.")
@config_options
def search(
    name: str, query: str, limit: int, as_json: bool, config_file: Path | None, debug: bool
) -> None:
    """The passages of NAME that match QUERY best (BM25), numbered as --kb cites them."""
    with command(config_file, debug):
        passages = retrieve([name], query, limit)
        if as_json:
            rows = [
                {
                    "n": n,
                    "path": p.path,
                    "start": p.start,
                    "end": p.end,
                    "score": p.score,
                    "text": p.text,
                }
                for n, p in enumerate(passages, start=1)
            ]
            click.echo(json.dumps(rows, ensure_ascii=False))
            return
        out = Console()
        if not passages:
            out.print("No passage matches.")
        for n, passage in enumerate(passages, start=1):
            out.print(f"[bold][{n}] {escape(passage.source)}[/]")
            out.print(escape(passage.text), highlight=False)
            out.print()


@kb.command("rm")
@click.argument("name")
@config_options
def remove(name: str, config_file: Path | None, debug: bool) -> None:
    """Remove the index NAME (the files it indexed are not touched)."""
    with command(config_file, debug) as (console, _):
        IndexStore.remove(name)
        console.print(f"Removed the knowledge index {escape(name)!r}.")
