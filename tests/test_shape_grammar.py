"""Every shape the team can ask for is a grammar llama.cpp can parse.

A shape's JSON schema becomes a GBNF grammar on the embedded backend (llama-cpp-python's
schema-to-grammar converter); a grammar llama.cpp cannot parse gave a NULL sampler and a
segmentation fault mid-run (an opening "P.S." written as the regex ``P\\.S\\.``). Each task of
the shipped prose suites and of the everyday corpus is read, shaped, converted and parsed by
llama.cpp's own parser — the one the embedded backend runs — on SmolLM2's vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ai_stack.evidence.requirements import stated
from ai_stack.shape import shape_for

ROOT = Path(__file__).resolve().parents[1]


def tasks() -> list[str]:
    found = []
    for suite in ("prose.yaml", "instructions.yaml"):
        data = yaml.safe_load((ROOT / "examples" / "eval" / suite).read_text())
        found += [task["task"] for task in data["tasks"]]
    corpus = yaml.safe_load(
        (ROOT / "tests" / "fixtures" / "requirements" / "everyday.yaml").read_text()
    )
    found += [item["task"] for item in corpus]
    found.append('In two sentences, starting with "P.S. (see) a+b? $5 {x}|y [z]^w" and ending '
                 'with "Love, A.B."')
    return found


@pytest.mark.model
def test_every_shape_is_a_grammar_llama_cpp_parses(smollm2: Path) -> None:
    import llama_cpp
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    model = llama_cpp.Llama(str(smollm2), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(model.model)
    shaped = 0
    for task in tasks():
        shape = shape_for(stated(task))
        if shape is None:
            continue
        shaped += 1
        grammar = json_schema_to_gbnf(json.dumps(shape.model.model_json_schema()))
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        assert sampler, f"llama.cpp cannot parse the grammar of the shape for: {task}"
        llama_cpp.llama_sampler_free(sampler)
    assert shaped >= 20
