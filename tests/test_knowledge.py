"""Knowledge indexes: chunking, the SQLite/FTS5 store, incremental updates, the file-access
policy's refusals, and the `kb` commands — real SQLite, real files in tmp_path, the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client

from ai_stack.access import FilePolicy
from ai_stack.cli.serve_mcp import Service
from ai_stack.config import Settings
from ai_stack.knowledge import retrieval
from ai_stack.knowledge.chunking import chunk_text
from ai_stack.knowledge.indexer import index, resolve_roots
from ai_stack.knowledge.retrieval import retrieve
from ai_stack.knowledge.store import IndexStore
from tests.conftest import invoke
from tests.ollama_double import OllamaDouble
from tests.test_cli import assert_clean_error
from tests.test_mcp import structured, with_client

GUIDE = """# Install

Install with pip install ai-stack.

## Models

Pull a model with `ollama pull qwen2.5-coder`.
The memory manager keeps one model resident.

# Thermal

The thermal monitor pauses when the machine throttles.
"""

CODE = '''"""A module."""

import os

@decorated
def first(x):
    return x + 1


class Second:
    def method(self):
        return os.sep
'''


@pytest.fixture
def docs(isolated_home: Path) -> Path:
    """A small docs tree in the working directory (./docs)."""
    root = Path("docs")
    (root / "sub").mkdir(parents=True)
    (root / "guide.md").write_text(GUIDE)
    (root / "sub" / "code.py").write_text(CODE)
    (root / "notes.txt").write_text("First paragraph about llamas.\n\nSecond about alpacas.\n")
    return root


def kb_search(name: str, query: str) -> list[dict[str, object]]:
    code, out, err = invoke("kb", "search", name, query, "--json")
    assert code == 0, err
    rows: list[dict[str, object]] = json.loads(out)
    return rows


# -- chunking ----------------------------------------------------------------------------------


def test_markdown_is_cut_at_its_headings_with_line_ranges() -> None:
    chunks = chunk_text("guide.md", GUIDE)
    assert [(c.start, c.end) for c in chunks] == [(1, 4), (5, 9), (10, 12)]
    assert chunks[1].text.startswith("## Models") and "resident" in chunks[1].text
    assert len({c.hash for c in chunks}) == 3


def test_a_heading_inside_a_code_fence_does_not_cut_a_section() -> None:
    text = "# A\n\n```sh\n# not a heading\nls\n```\n"
    assert [(c.start, c.end) for c in chunk_text("a.md", text)] == [(1, 6)]


def test_python_is_cut_at_top_level_functions_and_classes() -> None:
    chunks = chunk_text("code.py", CODE)
    spans = [(c.start, c.end) for c in chunks]
    assert spans == [(1, 3), (5, 7), (10, 12)]  # module code; decorator + def; the class
    assert chunks[1].text.startswith("@decorated")


def test_unparsable_python_and_other_text_are_cut_at_blank_lines() -> None:
    broken = "def f(:\n    pass\n\n" + "x = 1\n" * 3
    assert chunk_text("bad.py", broken, max_chars=20)[0].start == 1
    text = "a" * 30 + "\n\n" + "b" * 30 + "\n"
    assert [(c.start, c.end) for c in chunk_text("n.txt", text, max_chars=40)] == [
        (1, 1),
        (3, 3),
    ]


def test_a_block_over_the_limit_is_cut_at_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(100))
    chunks = chunk_text("long.txt", text, max_chars=100)
    assert len(chunks) > 5 and all(len(c.text) <= 100 for c in chunks)
    assert chunks[0].start == 1 and chunks[-1].end == 100


# -- the commands ------------------------------------------------------------------------------


def test_add_search_show_list_and_rm(docs: Path, isolated_home: Path) -> None:
    code, _, err = invoke("kb", "add", "docs", "./docs", "-q")
    assert code == 0, err
    assert "3 files" in err
    assert (isolated_home / "knowledge" / "docs.db").is_file()  # beside the history

    rows = kb_search("docs", "how do I pull a model?")
    assert rows[0]["path"] == "docs/guide.md"
    assert (rows[0]["start"], rows[0]["end"]) == (5, 9)
    assert "ollama pull" in str(rows[0]["text"])

    code, out, _ = invoke("kb", "search", "docs", "alpacas")
    assert code == 0 and "[1] docs/notes.txt:1-3" in out

    code, out, _ = invoke("kb", "show", "docs", "--json")
    shown = json.loads(out)
    assert [f["path"] for f in shown["files"]] == [
        "docs/guide.md",
        "docs/notes.txt",
        "docs/sub/code.py",
    ]
    assert shown["complete"] is True

    code, out, _ = invoke("kb", "list", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "docs"
    assert json.loads(out)[0]["passages"] == 3 + 1 + 3

    code, _, err = invoke("kb", "add", "docs", "./docs")
    assert_clean_error(code, err, "already a knowledge index named 'docs'")

    code, _, _ = invoke("kb", "rm", "docs")
    assert code == 0
    assert not (isolated_home / "knowledge" / "docs.db").exists()
    code, _, err = invoke("kb", "search", "docs", "llamas")
    assert_clean_error(code, err, "No knowledge index named 'docs'")
    assert docs.joinpath("guide.md").exists()  # the files themselves stay


def test_update_reindexes_only_what_changed_and_drops_removed_files(docs: Path) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    (docs / "notes.txt").write_text("Now about vicunas only.\n")
    (docs / "sub" / "code.py").unlink()
    (docs / "new.md").write_text("# New\n\nGuanacos live here.\n")
    code, _, err = invoke("kb", "update", "docs", "-q")
    assert code == 0, err
    assert "added 1, changed 1, unchanged 1, removed 1" in err
    assert kb_search("docs", "vicunas")[0]["path"] == "docs/notes.txt"
    assert kb_search("docs", "alpacas") == []
    assert kb_search("docs", "guanacos")[0]["path"] == "docs/new.md"
    assert kb_search("docs", "Second method") == []

    os.utime(docs / "guide.md", ns=(1, 1))  # touched, not changed: read, hash equal, kept
    code, _, err = invoke("kb", "update", "docs", "-q")
    assert "added 0, changed 0, unchanged 3, removed 0" in err


def test_query_words_are_never_taken_as_fts5_syntax(docs: Path) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    assert kb_search("docs", 'pull" OR NEAR(model AND -x*')[0]["path"] == "docs/guide.md"
    code, _, err = invoke("kb", "search", "docs", "?!")
    assert_clean_error(code, err, "has no words to search for")
    assert code == 2


# -- what is refused ---------------------------------------------------------------------------


def test_a_binary_named_md_is_refused_when_named_and_skipped_in_a_directory(docs: Path) -> None:
    (docs / "picture.md").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0binary")
    code, _, err = invoke("kb", "add", "pic", "docs/picture.md")
    assert_clean_error(code, err, "docs/picture.md is a binary file")
    assert IndexStore.names() == []  # nothing left behind

    code, _, err = invoke("kb", "add", "docs", "docs", "-q")
    assert code == 0
    assert "docs/picture.md: a binary file" in err
    assert "3 files" in err


def test_secrets_and_links_leading_outside_are_skipped(docs: Path, tmp_path: Path) -> None:
    (docs / ".env").write_text("TOKEN=hunter2\n")  # hidden: not even walked
    (docs / "server.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("private notes\n")
    (docs / "linked.txt").symlink_to(outside)
    code, _, err = invoke("kb", "add", "docs", "docs", "-q")
    assert code == 0, err
    assert "docs/server.key: files named *.key hold secrets" in err
    assert "docs/linked.txt: " in err and "outside the allowed directories" in err
    assert kb_search("docs", "private notes") == []
    assert kb_search("docs", "hunter2") == []


def test_a_project_config_cannot_widen_what_may_be_indexed(docs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("private notes\n")
    (docs / "linked.txt").symlink_to(outside / "secret.txt")
    Path("ai-stack.toml").write_text(f'[files]\nallow_paths = ["{outside}"]\n')
    code, _, err = invoke("kb", "add", "docs", "docs")
    assert_clean_error(code, err, "allow_paths")
    assert IndexStore.names() == []


def test_symlink_loops_neither_hang_nor_crash(docs: Path) -> None:
    (docs / "loop-a").symlink_to("loop-b")
    (docs / "loop-b").symlink_to("loop-a")
    (docs / "sub" / "up").symlink_to("..", target_is_directory=True)
    code, _, err = invoke("kb", "add", "docs", "docs", "-q")
    assert code == 0, err
    assert "docs/loop-a: a symlink loop" in err
    assert "docs/sub/up: a link to a directory" in err
    code, _, err = invoke("kb", "add", "loop", "docs/loop-a")
    assert_clean_error(code, err, "Cannot index docs/loop-a: a symlink loop")
    assert code == 2


def test_a_missing_path_and_a_bad_name_are_refused(docs: Path) -> None:
    code, _, err = invoke("kb", "add", "docs", "nowhere")
    assert_clean_error(code, err, "Cannot index nowhere: not found")
    assert code == 2
    code, _, err = invoke("kb", "add", "../up", "docs")
    assert_clean_error(code, err, "Cannot name an index '../up'")
    assert code == 2


def test_a_directory_with_too_many_files_is_refused_before_indexing(tmp_path: Path) -> None:
    many = Path("many")
    many.mkdir()
    for i in range(60):
        (many / f"{i}.txt").write_text(f"file {i}\n")
    code, _, err = invoke("kb", "add", "many", "many", "--max-files", "50")
    assert_clean_error(code, err, "many holds more than 50 files; nothing was indexed")
    assert code == 2
    assert IndexStore.names() == []
    code, _, err = invoke("kb", "add", "many", "many", "--max-files", "60", "-q")
    assert code == 0 and "60 files" in err


# -- interruption, files that move, damage -----------------------------------------------------


def test_an_interrupted_indexing_keeps_finished_files_and_update_goes_on(docs: Path) -> None:
    store = IndexStore.create("docs", resolve_roots([docs]))
    policy = FilePolicy.create([docs])

    def interrupt(done: int, total: int, path: str) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with store, pytest.raises(KeyboardInterrupt):
        index(store, policy, progress=interrupt)
    with IndexStore.open("docs") as store:
        assert store.counts()[0] == 2  # each finished file was committed
        assert store.state("complete") == "no"
    code, out, _ = invoke("kb", "list", "--json")
    assert json.loads(out)[0]["complete"] is False

    code, _, err = invoke("kb", "update", "docs", "-q")
    assert code == 0 and "added 1, changed 0, unchanged 2" in err
    with IndexStore.open("docs") as store:
        assert store.counts()[0] == 3 and store.state("complete") == "yes"


class ChangingPolicy(FilePolicy):
    """A policy whose reads are followed by another program appending to the file."""

    def read(self, path: Path) -> str:
        text = super().read(path)
        if path.name == "notes.txt":
            with path.open("a") as handle:
                handle.write("\nA line written while indexing about guanacos.\n")
        return text


def test_a_file_that_changes_while_read_is_indexed_as_read_and_read_again(docs: Path) -> None:
    policy = ChangingPolicy(roots=(docs.resolve(),))
    with IndexStore.create("docs", resolve_roots([docs])) as store:
        report = index(store, policy)
    assert report.moving == ["docs/notes.txt"]
    assert retrieve(["docs"], "guanacos") == []  # indexed as it was read
    code, _, err = invoke("kb", "update", "docs", "-q")
    assert code == 0 and "changed 1" in err
    assert retrieve(["docs"], "guanacos")[0].path == "docs/notes.txt"


def test_a_damaged_index_says_so_and_rebuild_repairs_it(docs: Path, isolated_home: Path) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    database = isolated_home / "knowledge" / "docs.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    database.write_bytes(b"this is not a database" * 100)
    code, _, err = invoke("kb", "search", "docs", "llamas")
    assert_clean_error(code, err, "The knowledge index 'docs' is damaged")
    assert "ai-stack kb update docs --rebuild" in err
    code, _, err = invoke("kb", "update", "docs", "--rebuild", "-q")
    assert code == 0, err
    assert kb_search("docs", "llamas")[0]["path"] == "docs/notes.txt"


# -- answering from an index (--kb) -------------------------------------------------------------


def prompts_sent(double: OllamaDouble) -> list[str]:
    """The user message of each chat request the double served."""
    return [
        next(m["content"] for m in e["messages"] if m["role"] == "user")
        for e in double.events("generate")
        if e.get("messages")
    ]


def test_kb_passages_reach_the_prompt_as_numbered_sources(
    docs: Path, on_double: OllamaDouble
) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    on_double.enqueue("Run `ollama pull qwen2.5-coder` [1].", model="qwen2.5:14b")
    code, out, err = invoke("--kb", "docs", "--direct", "--json", "How do I pull a model?")
    assert code == 0, err
    prompt = prompts_sent(on_double)[-1]
    assert "Source [1], docs/guide.md:5-9:" in prompt
    assert "Pull a model with `ollama pull qwen2.5-coder`." in prompt
    assert "cite each source you use by its number, as [1]" in prompt
    assert prompt.index("Source [1]") < prompt.index("Task: How do I pull a model?")
    result = json.loads(out)
    assert result["sources"][0] == {
        "n": 1,
        "index": "docs",
        "path": "docs/guide.md",
        "start": 5,
        "end": 9,
    }
    assert result["files"] == []
    assert result["citations"] == {"cited": [1], "unknown": []}
    assert "Sources: [1] docs/guide.md:5-9" in err


def test_a_citation_of_nothing_fails_the_check(docs: Path, on_double: OllamaDouble) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    on_double.enqueue("Pull it [1]; the manual says so [9]. Code: `xs[3]`", model="qwen2.5:14b")
    code, out, err = invoke("--kb", "docs", "--direct", "--json", "How do I pull a model?")
    assert code == 0, err
    result = json.loads(out)
    assert result["citations"] == {"cited": [1, 9], "unknown": [9]}
    assert "the answer cites [9], which names none of the" in err


def test_without_kb_the_prompt_asks_for_no_citation(on_double: OllamaDouble) -> None:
    on_double.enqueue("An answer.", model="qwen2.5:14b")
    code, out, _ = invoke("--direct", "--json", "How do I pull a model?")
    assert code == 0
    assert "cite" not in prompts_sent(on_double)[-1]
    result = json.loads(out)
    assert result["sources"] == [] and result["citations"] is None


def test_an_unknown_index_stops_the_run_before_any_load(on_double: OllamaDouble) -> None:
    code, _, err = invoke("--kb", "nothing", "--direct", "a task")
    assert_clean_error(code, err, "No knowledge index named 'nothing'")
    assert not on_double.events("load") and not on_double.events("generate")


# -- the MCP server ----------------------------------------------------------------------------


def test_mcp_search_knowledge_and_run_task_with_kb(docs: Path, on_double: OllamaDouble) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    on_double.enqueue("Use `ollama pull` [1].", model="qwen2.5:14b")
    service = Service(Settings(), root=Path.cwd())

    async def body(client: Client) -> None:
        found = structured(
            await client.call_tool("search_knowledge", {"index": "docs", "query": "thermal"})
        )
        assert found["passages"][0]["path"] == "docs/guide.md"
        assert found["passages"][0]["start"] == 10
        arguments = {"task": "How do I pull a model?", "direct": True, "kb": ["docs"]}
        result = structured(await client.call_tool("run_task", arguments))
        assert result["sources"][0]["path"] == "docs/guide.md"
        assert result["citations"] == {"cited": [1], "unknown": []}
        missing = await client.call_tool("search_knowledge", {"index": "none", "query": "x"})
        assert missing.is_error and "No knowledge index named 'none'" in str(missing.content)

    with_client(service, body)
    assert "Source [1], docs/guide.md:5-9" in prompts_sent(on_double)[-1]


def test_the_repl_answers_from_the_indexes_kb_names(docs: Path, on_double: OllamaDouble) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    on_double.enqueue("Pull it [1].", "No sources here.", model="qwen2.5:14b")
    script = "/kb nothing\n/kb docs\nHow do I pull a model?\n/kb off\nWhat is thermal?\n"
    code, _, err = invoke("--interactive", "--direct", input=script)
    assert code == 0, err
    assert "No knowledge index named 'nothing'" in err
    assert "Answering from: docs" in err
    with_kb, without = prompts_sent(on_double)[-2:]
    assert "Source [1], docs/guide.md:5-9:" in with_kb
    assert "Source [" not in without and "Earlier in this conversation" in without


# -- workflows ---------------------------------------------------------------------------------


def test_a_workflow_task_answers_from_its_kb(docs: Path, on_double: OllamaDouble) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    flow = Path("flow.yaml")
    flow.write_text(
        "name: flow\ndefaults: {direct: true}\ntasks:\n"
        "  - {id: a, task: 'How do I pull a model?', kb: [docs]}\n"
        "  - {id: b, task: 'How do I pull a model?'}\n"
    )
    on_double.enqueue("Pull it [1].", "Pull it.", model="qwen2.5:14b")
    code, _, err = invoke("batch", str(flow))
    assert code == 0, err
    results = Path("flow-results")
    a = json.loads((results / "a.json").read_text())
    assert a["sources"][0]["path"] == "docs/guide.md"
    assert a["citations"] == {"cited": [1], "unknown": []}
    b = json.loads((results / "b.json").read_text())
    assert b["sources"] == [] and b["citations"] is None
    with_kb = [p for p in prompts_sent(on_double) if "Source [1]" in p]
    assert len(with_kb) == 1 and "docs/guide.md:5-9" in with_kb[0]


def test_a_workflow_may_not_read_an_index_of_files_outside_it(
    docs: Path, tmp_path: Path, on_double: OllamaDouble
) -> None:
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    inside = Path("flows")
    inside.mkdir()
    flow = inside / "flow.yaml"
    flow.write_text("name: f\ntasks:\n  - id: a\n    task: t\n    kb: [docs]\n")
    code, _, err = invoke("batch", str(flow))
    assert_clean_error(code, err, "flows/flow.yaml:5: tasks.0.kb.0: the knowledge index 'docs'")
    assert "outside the allowed directories" in err
    flow.write_text("name: f\ntasks:\n  - {id: a, task: t, kb: [nothing]}\n")
    code, _, err = invoke("batch", str(flow))
    assert_clean_error(code, err, "No knowledge index named 'nothing'")
    assert not on_double.events("load")


# -- large indexes -----------------------------------------------------------------------------


def test_a_large_index_leaves_common_words_out_of_the_query(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a large index, a word most passages hold ("the", stemmed "was" -> "wa") would make
    FTS5 score nearly every passage: it is left out while a rarer word remains."""
    folder = Path("many")
    folder.mkdir()
    sections = [f"## Part {i}\n\nThe story was long, part {i}.\n" for i in range(40)]
    sections[7] = "## Part 7\n\nThe llamas were here.\n"
    (folder / "story.md").write_text("\n".join(sections))
    assert invoke("kb", "add", "story", "many", "-q")[0] == 0
    assert len(retrieve(["story"], "the llamas was", 10)) == 10  # a small index: every word
    monkeypatch.setattr(retrieval, "LARGE", 20)
    found = retrieve(["story"], "the llamas was", 10)
    assert [p.start for p in found] == [29]  # only "llamas" was searched for
    assert len(retrieve(["story"], "the story", 10)) == 10  # none rare: the rarest is kept


def test_an_update_whose_directory_is_gone_changes_nothing(docs: Path, tmp_path: Path) -> None:
    """An unmounted disk or a moved directory is not "every file was deleted"."""
    assert invoke("kb", "add", "docs", "docs", "-q")[0] == 0
    docs.rename(tmp_path / "moved")
    code, _, err = invoke("kb", "update", "docs", "-q")
    assert_clean_error(code, err, "docs (")
    assert "no longer exists; the index is unchanged" in err and "kb rm docs" in err
    assert kb_search("docs", "llamas")[0]["path"] == "docs/notes.txt"


def test_only_the_passages_that_fit_the_context_are_given(
    isolated_home: Path, on_double: OllamaDouble
) -> None:
    """Passages are fitted by the context sizing: the best first, as many as fit what the
    roles' contexts leave; none fitting is one clear error before any model loads."""
    folder = Path("big")
    folder.mkdir()
    body = " ".join(["llama"] + ["wool"] * 250)
    (folder / "a.md").write_text("\n".join(f"# Part {i}\n\n{body} {i}\n" for i in range(5)))
    assert invoke("kb", "add", "big", "big", "-q")[0] == 0
    assert len(kb_search("big", "llama")) == 5
    sizes = {}
    for num_ctx in (8192, 1536, 768):
        Path("ai-stack.toml").write_text(
            f"direct = true\n[executor]\nnum_ctx = {num_ctx}\nmax_tokens = 64\n"
        )
        on_double.enqueue("Wool [1].", model="qwen2.5:14b")
        code, out, err = invoke("--kb", "big", "--json", "Tell me about the llama")
        if num_ctx == 768:
            assert_clean_error(code, err, "No passage of big fits beside the task")
        else:
            assert code == 0, err
            sizes[num_ctx] = [s["start"] for s in json.loads(out)["sources"]]
    assert len(sizes[8192]) == 5
    assert 1 <= len(sizes[1536]) < 5 and sizes[1536] == sizes[8192][: len(sizes[1536])]


# -- PDF ---------------------------------------------------------------------------------------


def make_pdf(*pages: str) -> bytes:
    """A minimal PDF (one Helvetica text line per page), written out object by object."""
    count = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>",
    ]
    font = 3 + 2 * count
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out


def test_a_pdf_is_indexed_by_page_and_a_broken_one_is_skipped(docs: Path) -> None:
    (docs / "manual.pdf").write_bytes(
        make_pdf("Install the llama farm first.", "Shear the alpacas in spring.")
    )
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    code, _, err = invoke("kb", "add", "docs", "docs", "-q")
    assert code == 0, err
    assert "docs/broken.pdf: not a PDF pypdf can read" in err
    found = kb_search("docs", "shear alpacas")
    assert (found[0]["path"], found[0]["start"], found[0]["end"]) == ("docs/manual.pdf", 2, 2)
    assert "Shear the alpacas in spring." in str(found[0]["text"])
    code, _, err = invoke("kb", "add", "broken", "docs/broken.pdf")
    assert_clean_error(code, err, "docs/broken.pdf is not a PDF pypdf can read")


def test_a_secret_is_indexed_only_when_named_with_allow_sensitive(docs: Path) -> None:
    (docs / "deploy.key").write_text("the llama deploy key\n")
    code, _, err = invoke("kb", "add", "docs", "docs", "-q")
    assert "docs/deploy.key: files named *.key hold secrets" in err
    assert kb_search("docs", "deploy") == []
    code, _, err = invoke("kb", "update", "docs", "-q", "--allow-sensitive", "docs/deploy.key")
    assert code == 0 and "added 1" in err
    assert kb_search("docs", "deploy")[0]["path"] == "docs/deploy.key"
