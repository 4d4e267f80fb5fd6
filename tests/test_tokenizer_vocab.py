"""The Rust tokenizer and vocabulary through the public Python API."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import css_rs
from css_rs import Tokenizer, Vocabulary


def original_rule(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", text.lower())


def test_readme_example() -> None:
    assert Tokenizer().tokenize("Hello, Café-World_2!") == ["hello", "café", "world_2"]


def test_version_matches_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "css_rs", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().startswith(f"css-rs {css_rs.__version__} (training kernels: ")


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=300))
def test_ascii_equals_original_tool(text: str) -> None:
    assert Tokenizer().tokenize(text) == original_rule(text)


@given(st.text(max_size=200))
def test_arbitrary_unicode_never_panics(text: str) -> None:
    tokens = Tokenizer().tokenize(text)
    assert all(tokens)
    assert all(t == t.lower() or not t.isascii() for t in tokens)


def test_lone_surrogates_do_not_crash() -> None:
    broken = b"abc \xff\xfe def".decode("utf-8", errors="surrogateescape")
    assert Tokenizer().tokenize(broken)[0] == "abc"
    assert Tokenizer().tokenize_batch([broken, "x"])[1] == ["x"]


def test_big_document() -> None:
    doc = "word " * 2_000_000  # 10 MB
    assert len(Tokenizer().tokenize(doc)) == 2_000_000
    vocab = Vocabulary.from_texts([doc], min_count=1)
    assert vocab.counts == {"word": 2_000_000}


def test_tokenize_batch_matches_single() -> None:
    texts = ["A b c", "", "ünïcödé wörds", "x_y 12"]
    tok = Tokenizer()
    assert tok.tokenize_batch(texts) == [tok.tokenize(t) for t in texts]


def test_non_str_items_raise_type_error_naming_index() -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        Tokenizer().tokenize_batch(["ok", 3])
    with pytest.raises(TypeError, match=r"texts\[2\] is NoneType"):
        Vocabulary.from_texts(["a", "b", None])
    with pytest.raises(TypeError, match="not a single str"):
        Vocabulary.from_texts("a string is not a list of texts")


@pytest.mark.parametrize(
    ("field", "kwargs"), [("min_count", {"min_count": 0}), ("max_size", {"max_size": 0})]
)
def test_build_arguments_validated(field: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=field):
        Vocabulary.from_texts(["a b"], **kwargs)


def test_ids_by_descending_count_ties_by_word() -> None:
    vocab = Vocabulary.from_texts(["b a c a b a d", "c"], min_count=2)
    assert vocab.words == ["a", "b", "c"]
    assert [vocab.word_to_id(w) for w in "abcd"] == [0, 1, 2, None]
    assert vocab.id_to_word(2) == "c"
    assert len(vocab) == 3 and "a" in vocab and "d" not in vocab
    with pytest.raises(IndexError, match="out of range"):
        vocab.id_to_word(3)


def test_update_merge_build() -> None:
    a = Vocabulary()
    a.update(["the cat sat"])
    b = Vocabulary()
    b.update(["on the mat"])
    a.merge(b)
    assert not a.is_built
    with pytest.raises(RuntimeError, match="not built"):
        a.encode("the")
    a.build(min_count=1, max_size=10)
    assert a.words[0] == "the" and a.total_tokens == 6


def test_from_counts_and_validation() -> None:
    v = Vocabulary.from_counts({"x": 3, "y": 9, "z": 1}, min_count=2)
    assert v.words == ["y", "x"]
    with pytest.raises(ValueError, match=r'counts\["x"\] = -1'):
        Vocabulary.from_counts({"x": -1})
    with pytest.raises(TypeError):
        Vocabulary.from_counts({"x": "many"})


def test_encode_drops_oov_and_batch_offsets() -> None:
    v = Vocabulary.from_texts(["a b c a b a"], min_count=2)
    ids = v.encode("a zz b")
    assert ids.dtype == np.uint32 and ids.tolist() == [0, 1]
    ids, offsets = v.encode_batch(["a", "zz", "b a"])
    assert ids.dtype == np.uint32 and offsets.dtype == np.int64
    assert offsets.tolist() == [0, 1, 1, 3]
    assert ids.tolist() == [0, 1, 0]


word = st.text(alphabet="abcdefg", min_size=1, max_size=4)


@settings(max_examples=50)
@given(st.lists(st.lists(word, max_size=12).map(" ".join), max_size=20))
def test_encode_decode_round_trip_and_deterministic_ids(texts: list[str]) -> None:
    v1 = Vocabulary.from_texts(texts, min_count=1)
    v2 = Vocabulary.from_texts(list(reversed(texts)), min_count=1)
    assert v1.words == v2.words  # ids do not depend on input order or hashing
    for t in texts:
        assert [v1.id_to_word(i) for i in v1.encode(t)] == t.split()


def test_json_round_trip_keeps_raw_counts() -> None:
    v = Vocabulary()
    v.update(["a a b c c c"])
    v.build(min_count=2)
    back = Vocabulary.from_json(v.to_json())
    assert back.words == ["c", "a"] and back.counts == {"c": 3, "a": 2}
    back.build(min_count=1)  # the raw counts survived, so "b" comes back
    assert back.words == ["c", "a", "b"]
    with pytest.raises(ValueError, match="invalid vocabulary JSON"):
        Vocabulary.from_json(json.dumps({"words": 1}))
