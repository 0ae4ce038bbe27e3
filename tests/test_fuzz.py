"""Fuzzing the parsers that read files a user may have been sent: workflows, config files and
GGUF model headers.

The contract under test is the front ends' one: a file either loads or raises an AiStackError
(one clear message and a documented exit code), never anything else (exit 70, a traceback); and
no input, however it nests or aliases, makes the parser use unbounded memory or time. Examples
are generated from the shapes the parsers expect, mutated, and from YAML's aliasing and nesting,
where the past defects were.

Each property runs in a child process whose address space is capped (``RLIMIT_AS``): input that
made the parser allocate without bound fails there with MemoryError, quickly, instead of taking
the machine down; and the child's stderr shows any traceback.
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_stack.backends.gguf import expected_size, read_metadata
from ai_stack.config import ENV_OVERRIDES, load_settings
from ai_stack.errors import AiStackError
from ai_stack.workflow import load_workflow

MEMORY_LIMIT = 1024 * 2**20  # the child's whole address space; it needs ~100 MiB
FUZZ = settings(
    max_examples=150,
    deadline=None,  # time is bounded by the child's timeout
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
TEMPLATE_BITS = [
    "{{ outputs.a }}",
    "{{ ''.__class__.__mro__ }}",
    "{% for x in range(10**9) %}x{% endfor %}",
    "{{",
    "}}",
    "{%",
    "{# x",
    "{{ outputs['b'] }}",
    "{{ 9**9**9 }}",
    "{{ lipsum(10**6) }}",
]
texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(TEMPLATE_BITS) | st.text(max_size=8), max_size=4).map("".join),
)
FILES = ["notes.txt", "../outside.txt", "/etc/shadow", "~/.ssh/id_ed25519", ".env", "missing"]
ROLE_KEYS = ["planner", "critic", "executor", "review", "direct", "max_rounds", "backend"]


def loose(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The expected shape most of the time, anything some of the time."""
    nested = st.recursive(
        scalars, lambda inner: st.lists(inner) | st.dictionaries(texts, inner), max_leaves=8
    )
    return st.one_of(strategy, strategy, strategy, nested)


tasks = st.fixed_dictionaries(
    {"id": loose(st.sampled_from(["a", "b", "c", "a b", ""]))},
    optional={
        "task": loose(texts),
        "context": loose(texts),
        "context_files": loose(st.lists(st.sampled_from(FILES), max_size=3)),
        "depends_on": loose(st.lists(st.sampled_from(["a", "b", "c", "zz"]), max_size=3)),
        **{key: loose(scalars) for key in ROLE_KEYS},
    },
)
workflows = st.fixed_dictionaries(
    {},
    optional={
        "name": loose(texts),
        "tasks": loose(st.lists(tasks, max_size=4)),
        "defaults": loose(st.dictionaries(st.sampled_from(ROLE_KEYS), scalars, max_size=3)),
        "output_dir": loose(texts),
        "extra": scalars,
    },
)


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[str]) -> str:
    """A document with a slice cut out or a few characters spliced in."""
    text = draw(documents)
    if text and draw(st.booleans()):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 20)))
        text = text[:start] + draw(st.text(max_size=5)) + text[end:]
    return text


@st.composite
def aliased(draw: st.DrawFn) -> str:
    """Anchors that refer to the ones before them: expansions grow as fan-out ** depth."""
    depth, fan_out = draw(st.integers(1, 14)), draw(st.integers(1, 12))
    lines = ["x0: &x0 [" + ", ".join(['"lol"'] * fan_out) + "]"]
    for level in range(1, depth + 1):
        lines.append(f"x{level}: &x{level} [" + ", ".join([f"*x{level - 1}"] * fan_out) + "]")
    lines.append(f"name: bomb\ntasks: [{{id: a, task: *x{depth}}}]")
    return "\n".join(lines) + "\n"


@st.composite
def nested(draw: st.DrawFn) -> str:
    """Flow or block nesting, possibly unbalanced, up to far beyond the recursion limit."""
    depth = draw(st.integers(1, 20_000))
    kind = draw(st.sampled_from(["[", "{a: ", "- "]))
    if kind == "- ":
        return "".join("  " * level + "-\n" for level in range(min(depth, 3000)))
    closing = {"[": "]", "{a: ": "}"}[kind] * draw(st.sampled_from([depth, depth // 2]))
    return kind * depth + "1" + closing + "\n"


yaml_documents = workflows.map(lambda data: yaml.safe_dump(data, allow_unicode=True))
json_documents = workflows.map(json.dumps)
workflow_texts = st.one_of(
    mutated(yaml_documents), mutated(json_documents), aliased(), nested(), st.text(max_size=200)
)


def only_clear_errors(load: Callable[[], object]) -> None:
    """Loading succeeds or fails with an AiStackError; anything else propagates and fails."""
    try:
        load()
    except AiStackError as error:
        assert error.message.strip()
        assert error.exit_code in (1, 2)


def scratch(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))


@FUZZ
@given(text=workflow_texts, suffix=st.sampled_from([".yaml", ".json"]))
def workflow_property(text: str, suffix: str) -> None:
    folder = scratch("flow")
    (folder / "notes.txt").write_text("some notes\n")
    path = folder / f"flow{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    only_clear_errors(lambda: load_workflow(path, {}))


def toml_value() -> st.SearchStrategy[str]:
    basic = st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True).map(lambda f: repr(f).replace("inf", "inf").lower()),
        st.booleans().map(lambda b: str(b).lower()),
        st.text(max_size=20).map(lambda s: json.dumps(s, ensure_ascii=True)),
        st.sampled_from(["'ollama:mistral:7b'", "'embedded:smollm2'", "'x:'", "1979-05-27"]),
    )
    return st.recursive(
        basic,
        lambda inner: st.lists(inner, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
        max_leaves=5,
    )


SECTIONS = [
    "",
    "planner",
    "critic",
    "executor",
    "memory",
    "ollama",
    "thermal",
    "evidence",
    "files",
    "limits",
    "history",
    "nope",
    "planner.model",
]
KEYS = [
    "model",
    "max_rounds",
    "review",
    "direct",
    "backend",
    "budget_gb",
    "policy",
    "num_ctx",
    "temperature",
    "max_tokens",
    "exec",
    "timeout_s",
    "allow_paths",
    "workflow_kb",
    "depth",
    "enabled",
    "path",
    "host",
    "x y",
    '"quoted"',
]


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        section = draw(st.sampled_from(SECTIONS))
        if section and draw(st.booleans()):
            lines.append(f"[{section}]")
        lines.append(f"{draw(st.sampled_from(KEYS))} = {draw(toml_value())}")
    return draw(mutated(st.just("\n".join(lines) + "\n")))


@FUZZ
@given(
    text=config_texts() | st.text(max_size=200),
    environ=st.dictionaries(st.sampled_from(sorted(ENV_OVERRIDES)), st.text(max_size=12)),
)
def config_property(text: str, environ: dict[str, str]) -> None:
    path = scratch("config") / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    only_clear_errors(lambda: load_settings(path, environ=environ))


INTERESTING = [0, 1, 2, 3, 8, 9, 1024, 1025, 2**31, 2**32 - 1, 2**40, 2**62, 2**63 - 1, 2**64 - 1]
gguf_chunks = st.one_of(
    st.sampled_from(INTERESTING).map(lambda n: struct.pack("<Q", n)),  # lengths, counts
    st.sampled_from([0, 4, 6, 7, 8, 9, 10, 12, 13, 2**32 - 1]).map(lambda k: struct.pack("<I", k)),
    st.just(struct.pack("<Q", 3) + b"key"),
    st.just(struct.pack("<IQ", 9, 1) * 64),  # arrays in arrays
    st.binary(max_size=12),
)


@st.composite
def gguf_files(draw: st.DrawFn) -> bytes:
    """A header whose counts, lengths and types are the ones that broke readers, cut short
    some of the time."""
    version = draw(st.sampled_from([1, 2, 3, 2**32 - 1]))
    counts = struct.pack("<QQ", draw(st.sampled_from(INTERESTING)), draw(st.integers(0, 4)))
    data = b"GGUF" + struct.pack("<I", version) + counts
    data += b"".join(draw(st.lists(gguf_chunks, max_size=40)))
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


@FUZZ
@given(data=gguf_files())
def gguf_property(data: bytes) -> None:
    path = scratch("gguf") / "model.gguf"
    path.write_bytes(data)
    only_clear_errors(lambda: (read_metadata(path), expected_size(path)))


PROPERTIES = {"workflow": workflow_property, "config": config_property, "gguf": gguf_property}


def cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_the_parser_loads_or_gives_a_clear_error_within_bounded_memory(
    name: str, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_fuzz", name],
        cwd=root,
        env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        preexec_fn=cap_memory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr


if __name__ == "__main__":
    PROPERTIES[sys.argv[1]]()
