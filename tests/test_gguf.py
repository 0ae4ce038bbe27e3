"""The GGUF header reader, on synthetic files covering each value type and on the real model."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ai_stack.backends.gguf import GGUFError, expected_size, read_metadata


def gguf_bytes(pairs: list[tuple[str, int, bytes]], version: int = 3) -> bytes:
    out = b"GGUF" + struct.pack("<IQQ", version, 0, len(pairs))
    for key, kind, payload in pairs:
        encoded = key.encode()
        out += struct.pack("<Q", len(encoded)) + encoded + struct.pack("<I", kind) + payload
    return out


def string(text: str) -> bytes:
    return struct.pack("<Q", len(text.encode())) + text.encode()


def test_reads_scalars_strings_and_short_arrays_and_skips_long_ones(tmp_path: Path) -> None:
    vocabulary = struct.pack("<IQ", 8, 2000) + b"".join(string(f"tok{i}") for i in range(2000))
    scores = struct.pack("<IQ", 6, 5000) + struct.pack("<5000f", *([0.5] * 5000))
    kv_heads = struct.pack("<IQ", 5, 3) + struct.pack("<3i", 2, 4, 8)
    path = tmp_path / "m.gguf"
    path.write_bytes(
        gguf_bytes(
            [
                ("general.architecture", 8, string("llama")),
                ("llama.block_count", 4, struct.pack("<I", 30)),
                ("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
                ("tokenizer.ggml.tokens", 9, vocabulary),
                ("tokenizer.ggml.scores", 9, scores),
                ("llama.attention.head_count_kv", 9, kv_heads),
                ("general.file_type", 4, struct.pack("<I", 3)),
                ("general.flag", 7, struct.pack("<?", True)),
                ("general.big", 10, struct.pack("<Q", 2**40)),
            ]
        )
    )
    meta = read_metadata(path)
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == 30
    assert meta["llama.rope.freq_base"] == pytest.approx(10000.0)
    assert meta["tokenizer.ggml.tokens"] is None and meta["tokenizer.ggml.scores"] is None
    assert meta["llama.attention.head_count_kv"] == [2, 4, 8]
    assert meta["general.file_type"] == 3  # read correctly *after* the skipped arrays
    assert meta["general.flag"] is True and meta["general.big"] == 2**40


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 a zip file", "not a GGUF file"),
        (gguf_bytes([], version=1), "version 1"),
        (gguf_bytes([("general.name", 8, string("truncated"))])[:-4], "damaged"),
        (gguf_bytes([("general.name", 99, b"")]), "damaged"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError, match=message):
        read_metadata(path)


def nested_arrays(depth: int) -> bytes:
    """An array of arrays of ... of one integer."""
    return struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQ", 4, 1) + struct.pack("<I", 7)


# Headers crafted to make a reader recurse, allocate or loop without bound (each was exit 70:
# RecursionError, MemoryError, OverflowError, or "unexpected end of file" from the version).
CRAFTED = {
    "magic only": b"GGUF",
    "no tensor count": b"GGUF" + struct.pack("<I", 3),
    "nested arrays": gguf_bytes([("deep", 9, nested_arrays(100_000))]),
    "a huge key": b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**63 - 1) + b"key",
    "a key longer than an index": b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**64 - 1),
    "a huge string": gguf_bytes([("general.name", 8, struct.pack("<Q", 2**40) + b"x")]),
    "a huge array": gguf_bytes([("tokens", 9, struct.pack("<IQ", 8, 2**62))]),
    "a huge skipped string": gguf_bytes(
        [("tokens", 9, struct.pack("<IQ", 8, 2000) + struct.pack("<Q", 2**62))]
    ),
    "more keys than bytes": b"GGUF" + struct.pack("<IQQ", 3, 0, 2**64 - 1) + b"\0" * 64,
    "more tensors than bytes": b"GGUF" + struct.pack("<IQQ", 3, 2**63, 0),
    "a tensor of 2**32-1 dimensions": b"GGUF"
    + struct.pack("<IQQ", 3, 1, 0)
    + string("t")
    + struct.pack("<I", 2**32 - 1)
    + b"\0" * 64,
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_header_is_one_clear_error_at_once(tmp_path: Path, name: str) -> None:
    path = tmp_path / "crafted.gguf"
    path.write_bytes(CRAFTED[name])
    with pytest.raises(GGUFError, match="damaged GGUF header"):  # as `models add` reads
        read_metadata(path)
        expected_size(path)


def test_every_bound_holds_far_above_what_a_model_file_has(tmp_path: Path) -> None:
    """Vocabularies are skipped, short arrays and a long chat template kept, and the tensor
    infos after them read."""
    template = "{% for m in messages %}{{ m.content }}{% endfor %}" * 2000  # ~100 KB
    vocabulary = struct.pack("<IQ", 8, 300_000) + string("tok") * 300_000
    header = gguf_bytes(
        [
            ("tokenizer.chat_template", 8, string(template)),
            ("tokenizer.ggml.tokens", 9, vocabulary),
            ("pairs", 9, struct.pack("<IQ", 9, 2) + struct.pack("<IQ2I", 4, 2, 1, 1) * 2),
        ]
    )
    path = tmp_path / "m.gguf"
    path.write_bytes(header)
    meta = read_metadata(path)
    assert meta["tokenizer.chat_template"] == template and meta["tokenizer.ggml.tokens"] is None
    assert meta["pairs"] == [[1, 1], [1, 1]]
    assert expected_size(path) == -(-len(header) // 32) * 32


def test_the_packaged_smollm2_header(smollm2: Path) -> None:
    meta = read_metadata(smollm2)
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == 30
    assert meta["llama.attention.head_count_kv"] == 3
    assert meta["llama.context_length"] == 8192
