"""The Rust↔Python boundary: the engine's errors arrive as css-rs's own exception classes, and
what the trainer reports (``Progress``, ``TrainingState``) are the engine's frozen objects."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import css_rs
from css_rs import InputError, TrainConfig, Trainer, TrainingState, Vocabulary, _core, errors
from css_rs.synthetic import generate_corpus

ONE_THREAD = TrainConfig(threads=1, seed=7, epochs=1)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return generate_corpus(200, seed=5)


@pytest.fixture(scope="module")
def vocab(corpus: list[str]) -> Vocabulary:
    return Vocabulary.from_texts(corpus, min_count=2)


def test_the_exception_classes_are_made_once_by_the_engine() -> None:
    assert errors.CssRsError is _core.CssRsError is css_rs.CssRsError
    assert errors.InputError is _core.InputError is css_rs.InputError
    assert errors.NotReadyError is _core.NotReadyError
    assert issubclass(errors.InputError, errors.CssRsError)
    assert issubclass(errors.InputError, ValueError)
    assert issubclass(errors.NotReadyError, errors.CssRsError)
    assert issubclass(errors.NotReadyError, RuntimeError)
    for cls in (errors.CssRsError, errors.InputError, errors.NotReadyError):
        assert cls.__module__ == "css_rs.errors"
        copy = pickle.loads(pickle.dumps(cls("one line")))
        assert type(copy) is cls and str(copy) == "one line"


def test_a_bad_value_reaches_python_as_input_error() -> None:
    with pytest.raises(InputError, match=r"min_count = 0 is invalid: must be >= 1"):
        Vocabulary.from_texts(["a b"], min_count=0)
    with pytest.raises(InputError, match=r'counts\["a"\] = -1 is invalid: must be >= 0'):
        Vocabulary.from_counts({"a": -1}, min_count=1)


def test_an_unbuilt_vocabulary_raises_not_ready_error() -> None:
    with pytest.raises(errors.NotReadyError, match="not built"):
        Vocabulary().encode("x")


def test_a_damaged_state_is_refused_with_input_error(corpus: list[str], vocab: Vocabulary) -> None:
    state = Trainer(corpus, vocab, ONE_THREAD).state()
    with pytest.raises(InputError, match="truncated"):
        Trainer(corpus, vocab, ONE_THREAD, state=TrainingState(state.to_bytes()[:-5]))


def test_progress_is_a_frozen_engine_object(corpus: list[str], vocab: Vocabulary) -> None:
    trainer = Trainer(corpus, vocab, ONE_THREAD)
    first = trainer.step(0.0)
    assert isinstance(first, css_rs.Progress)
    assert 0 < first.tokens_done < first.tokens_total
    assert first.fraction == first.tokens_done / first.tokens_total
    assert (first.epoch, first.epochs, first.done) == (1, 1, False)
    with pytest.raises(AttributeError):
        first.epoch = 2  # type: ignore[misc]
    last = trainer.step(1e9)
    assert last.done and last.fraction == 1.0
    assert last != first
    assert repr(last).startswith(f"Progress(tokens_done={last.tokens_done}, ")


def test_training_state_keeps_its_bytes(corpus: list[str], vocab: Vocabulary) -> None:
    state = Trainer(corpus, vocab, ONE_THREAD).state()
    data = state.to_bytes()
    assert isinstance(data, bytes) and len(state) == len(data) > 0
    assert repr(state) == f"TrainingState({len(data)} bytes)"
    for same in (TrainingState(data), TrainingState.from_bytes(bytearray(data))):
        assert same.to_bytes() == data
    ids, offsets = vocab.encode_batch(corpus)
    resumed = Trainer((ids, offsets), vocab, ONE_THREAD, state=TrainingState(memoryview(data)))
    assert resumed.progress.tokens_done == 0
    fresh = Trainer(corpus, vocab, ONE_THREAD).model()
    assert np.array_equal(resumed.model().to_dense(), fresh.to_dense())
