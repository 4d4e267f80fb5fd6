"""No Rust panic reaches Python (issue 13, severe 4): ``pyo3_runtime.PanicException`` derives
from ``BaseException``, so an ``except Exception`` does not catch it. Every input to the public
API gets a ``ValueError`` (or works); these tests feed the inputs that used to panic, and
hypothesis feeds damaged ``TrainingState`` bytes.
"""

from __future__ import annotations

import contextlib
import struct
import threading

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import css_rs
from css_rs import TrainConfig, Trainer, TrainingState, Vocabulary
from css_rs.synthetic import generate_corpus

CONFIG = TrainConfig(threads=1, epochs=2, frequency_dim=32, max_frequencies=4)
MAGIC = b"CSSSTAT1"


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.from_texts(generate_corpus(60, seed=3), min_count=2)


def corpus_arrays(vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    ids, offsets = vocab.encode_batch(generate_corpus(60, seed=3))
    return np.array(ids, dtype=np.uint32), np.array(offsets, dtype=np.int64)


@pytest.fixture(scope="module")
def state_bytes(vocab: Vocabulary) -> bytes:
    trainer = Trainer(corpus_arrays(vocab), vocab, CONFIG)
    trainer.step(0.0)  # a state part-way through the first epoch
    return trainer.state().to_bytes()


def split_state(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[8:16])
    return orjson.loads(data[16 : 16 + length]), data[16 + length :]


def join_state(header: dict, rest: bytes) -> bytes:
    head = orjson.dumps(header)
    return MAGIC + struct.pack("<Q", len(head)) + head + rest


def is_panic(error: BaseException) -> bool:
    return type(error).__name__ == "PanicException"


@pytest.mark.parametrize("seconds", [1e19, 1e20, 1e300, 1.8e19, 2.0**64])
def test_huge_step_trains_to_the_end(vocab: Vocabulary, seconds: float) -> None:
    trainer = Trainer(corpus_arrays(vocab), vocab, CONFIG)
    progress = trainer.step(seconds)  # "that long" is "until done" on so small a corpus
    assert progress.done and trainer.done


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf"), -1e300])
def test_bad_step_is_a_value_error(vocab: Vocabulary, seconds: float) -> None:
    trainer = Trainer(corpus_arrays(vocab), vocab, CONFIG)
    with pytest.raises(ValueError, match="seconds"):
        trainer.step(seconds)


def test_offsets_changed_after_the_trainer_was_made(vocab: Vocabulary) -> None:
    ids, offsets = corpus_arrays(vocab)
    reference = Trainer((ids.copy(), offsets.copy()), vocab, CONFIG).run()
    trainer = Trainer((ids, offsets), vocab, CONFIG)
    offsets[1:] = 10**12  # the trainer made its own validated copy
    model = trainer.run()
    assert np.array_equal(model.slot_arrays()[0], reference.slot_arrays()[0])


def test_ids_changed_after_the_trainer_was_made(vocab: Vocabulary) -> None:
    ids, offsets = corpus_arrays(vocab)
    trainer = Trainer((ids, offsets), vocab, CONFIG)
    ids[:] = 2**32 - 1  # no such word
    with pytest.raises(ValueError, match="4294967295"):
        trainer.step(10.0)


def test_corpus_changed_from_another_thread_during_step(vocab: Vocabulary) -> None:
    ids, offsets = corpus_arrays(vocab)
    trainer = Trainer((ids, offsets), vocab, TrainConfig(threads=1, epochs=200, max_frequencies=4))
    stop = threading.Event()
    rng = np.random.default_rng(0)

    def vandal() -> None:
        while not stop.is_set():
            offsets[rng.integers(0, len(offsets))] = int(rng.integers(-(2**62), 2**62))
            ids[rng.integers(0, len(ids))] = int(rng.integers(0, 2**32 - 1))

    thread = threading.Thread(target=vandal)
    thread.start()
    try:
        for _ in range(20):
            # An out-of-vocabulary id written by the vandal is reported, not a panic.
            with contextlib.suppress(ValueError):
                trainer.step(0.01)
    except BaseException as e:
        assert not is_panic(e), e
        raise
    finally:
        stop.set()
        thread.join()


def test_worker_beyond_the_corpus_is_refused(vocab: Vocabulary, state_bytes: bytes) -> None:
    header, rest = split_state(state_bytes)
    header["workers"][0]["end_doc"] = 10**6
    forged = TrainingState.from_bytes(join_state(header, rest))
    with pytest.raises(ValueError, match="outside the corpus"):
        Trainer(corpus_arrays(vocab), vocab, CONFIG, state=forged)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epoch", 7, "epoch 7 of 2"),
        ("tokens_done", 2**63, "tokens done"),
        ("epoch_tokens_start", 2**40, "tokens done"),
        ("elapsed", -1.0, "duration"),
    ],
)
def test_forged_counters_are_refused(
    vocab: Vocabulary, state_bytes: bytes, field: str, value: object, message: str
) -> None:
    header, rest = split_state(state_bytes)
    header[field] = value
    forged = TrainingState.from_bytes(join_state(header, rest))
    with pytest.raises(ValueError, match=message):
        Trainer(corpus_arrays(vocab), vocab, CONFIG, state=forged)


def test_frequency_outside_d_is_refused(vocab: Vocabulary, state_bytes: bytes) -> None:
    header, rest = split_state(state_bytes)
    body = bytearray(rest)
    body[16:18] = struct.pack("<H", 500)  # the first slot of word 0: D is 32
    forged = TrainingState.from_bytes(join_state(header, bytes(body)))
    with pytest.raises(ValueError, match="frequency 500"):
        Trainer(corpus_arrays(vocab), vocab, CONFIG, state=forged)


def resume_and_step(vocab: Vocabulary, data: bytes) -> None:
    """Either a ValueError or a trainer that steps; anything else fails the test."""
    try:
        trainer = Trainer(corpus_arrays(vocab), vocab, CONFIG, state=TrainingState(data))
        trainer.step(0.0)
        trainer.model()
    except ValueError:
        pass


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_state_bytes_never_panic(
    vocab: Vocabulary, state_bytes: bytes, data: st.DataObject
) -> None:
    blob = bytearray(state_bytes)
    how = data.draw(st.sampled_from(["flip", "truncate", "header"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    else:
        header, rest = split_state(state_bytes)
        key = data.draw(st.sampled_from(sorted(header)))
        header[key] = data.draw(
            st.one_of(
                st.integers(-(2**63), 2**64 - 1),
                st.floats(allow_nan=True),
                st.booleans(),
                st.none(),
                st.lists(st.integers(0, 10**6), max_size=3),
            )
        )
        if data.draw(st.booleans()) and isinstance(header.get("workers"), list):
            # (The drawn key may have replaced the workers with a list of numbers.)
            for w in (w for w in header["workers"] if isinstance(w, dict)):
                w["next_doc"] = data.draw(st.integers(0, 2**64 - 1))
                w["end_doc"] = data.draw(st.integers(0, 2**64 - 1))
        blob = bytearray(join_state(header, rest))
    try:
        resume_and_step(vocab, bytes(blob))
    except BaseException as e:
        assert not is_panic(e), f"panic: {e}"
        raise


def test_public_trainer_runs_after_all(vocab: Vocabulary) -> None:
    model = css_rs.train(corpus_arrays(vocab), vocab, CONFIG)
    assert len(model) == len(vocab)
