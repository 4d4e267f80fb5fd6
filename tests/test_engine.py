"""The training engine through the public API: planted structure is recovered, training is
deterministic and resumable bit for bit, and no setting can produce NaN or infinity."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import css_rs
from css_rs import CSSModel, TrainConfig, Trainer, TrainingState, Vocabulary
from css_rs.synthetic import POLYSEMOUS, TOPICS, generate_corpus
from css_rs.training import untrained_loss

ONE_THREAD = TrainConfig(threads=1, seed=7)
# The selection rule before usage balancing (plain top-K, no score bias), at its defaults.
PLAIN_TOP_K = {"balance_gamma": 0.0, "score_bias": 0.0, "max_frequencies": 8, "learning_rate": 0.3}


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return generate_corpus(3000, seed=3)


@pytest.fixture(scope="module")
def vocab(corpus: list[str]) -> Vocabulary:
    return Vocabulary.from_texts(corpus, min_count=5)


@pytest.fixture(scope="module")
def model(corpus: list[str], vocab: Vocabulary) -> CSSModel:
    return css_rs.train(corpus, vocab, ONE_THREAD)


def same_cluster(word: str, neighbour: str) -> bool:
    topic = next(t for t, words in TOPICS.items() if word in words)
    return neighbour in TOPICS[topic] or topic in POLYSEMOUS.get(neighbour, ())


def test_clusters_are_recovered(model: CSSModel) -> None:
    words = [w for ws in TOPICS.values() for w in ws]
    good = sum(all(same_cluster(w, n) for n, _ in model.similar(w, 5)) for w in words if w in model)
    assert good / len(words) >= 0.9


def test_two_sense_words_have_two_peaks(model: CSSModel) -> None:
    for word in POLYSEMOUS:
        assert model.polysemy(word).is_polysemous, model.spectrum(word)


def test_sparsity_stays_between_two_and_k(model: CSSModel) -> None:
    assert 2.0 <= model.avg_active() <= ONE_THREAD.max_frequencies
    assert model.active_counts().max() <= ONE_THREAD.max_frequencies


def arrays(m: CSSModel) -> list[np.ndarray]:
    return list(m.slot_arrays())


def test_shrunk_windows_train_deterministically_and_differently(
    corpus: list[str], vocab: Vocabulary, model: CSSModel
) -> None:
    config = ONE_THREAD.replace(shrink_windows=True)
    shrunk = css_rs.train(corpus, vocab, config)
    again = css_rs.train(corpus, vocab, config)
    for a, b in zip(arrays(shrunk), arrays(again)):
        assert np.array_equal(a, b)
    assert not np.array_equal(arrays(model)[1], arrays(shrunk)[1])
    test_clusters_are_recovered(shrunk)


def test_one_thread_is_bit_for_bit_deterministic(
    corpus: list[str], vocab: Vocabulary, model: CSSModel
) -> None:
    again = css_rs.train(corpus, vocab, ONE_THREAD)
    for a, b in zip(arrays(model), arrays(again)):
        assert np.array_equal(a, b)
    other_seed = css_rs.train(corpus, vocab, ONE_THREAD.replace(seed=8))
    assert not np.array_equal(arrays(model)[1], arrays(other_seed)[1])


def test_scalar_kernels_train_the_same_model(model: CSSModel, tmp_path: os.PathLike[str]) -> None:
    """CSS_RS_KERNELS=scalar rules the SIMD kernels out; the model must not change a bit."""
    script = textwrap.dedent(
        """
        import sys, numpy as np, css_rs
        from css_rs._core import kernels
        from css_rs.synthetic import generate_corpus
        texts = generate_corpus(3000, seed=3)
        vocab = css_rs.Vocabulary.from_texts(texts, min_count=5)
        model = css_rs.train(texts, vocab, css_rs.TrainConfig(threads=1, seed=7))
        np.savez(sys.argv[1], *model.slot_arrays())
        print(kernels())
        """
    )
    out = f"{tmp_path}/scalar.npz"
    env = {**os.environ, "CSS_RS_KERNELS": "scalar"}
    run = subprocess.run(
        [sys.executable, "-c", script, out], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "scalar"
    with np.load(out) as scalar:
        for i, a in enumerate(arrays(model)):
            assert np.array_equal(a, scalar[f"arr_{i}"])


@pytest.mark.parametrize("shrink_windows", [False, True])
def test_resumed_run_equals_uninterrupted_run(
    corpus: list[str], vocab: Vocabulary, shrink_windows: bool
) -> None:
    ids, offsets = vocab.encode_batch(corpus)
    config = ONE_THREAD.replace(training_batch_size=50, shrink_windows=shrink_windows)
    trainer = Trainer((ids, offsets), vocab, config)
    pauses = 0
    while not trainer.done:
        trainer.step(0.0)  # one work unit, then stop as an interrupted run would
        saved = TrainingState.from_bytes(trainer.state().to_bytes())
        trainer = Trainer((ids, offsets), vocab, config, state=saved)
        pauses += 1
    assert pauses > 10
    reference = css_rs.train((ids, offsets), vocab, config)
    for a, b in zip(arrays(trainer.model()), arrays(reference)):
        assert np.array_equal(a, b)
    assert [e["loss"] for e in trainer.epoch_stats] == pytest.approx(
        [e["loss"] for e in Trainer((ids, offsets), vocab, config).run().stats["epochs"]]
    )


def test_state_from_other_settings_or_corpus_is_refused(
    corpus: list[str], vocab: Vocabulary
) -> None:
    ids, offsets = vocab.encode_batch(corpus[:200])
    state = Trainer((ids, offsets), vocab, ONE_THREAD).state()
    seed = ONE_THREAD.seed
    with pytest.raises(ValueError, match=rf"different settings \(seed: {seed} -> 99\)"):
        Trainer((ids, offsets), vocab, ONE_THREAD.replace(seed=99), state=state)
    ids2, offsets2 = vocab.encode_batch(corpus[200:400])
    with pytest.raises(ValueError, match="different corpus"):
        Trainer((ids2, offsets2), vocab, ONE_THREAD, state=state)
    with pytest.raises(ValueError, match=r"truncated|corrupt|magic"):
        Trainer((ids, offsets), vocab, ONE_THREAD, state=TrainingState(state.to_bytes()[:-5]))


def test_progress_callback_reports(corpus: list[str], vocab: Vocabulary) -> None:
    seen: list[css_rs.Progress] = []
    trainer = Trainer(corpus[:500], vocab, ONE_THREAD.replace(epochs=2))
    trainer.run(seen.append, interval=0.01)
    assert seen and seen[-1].done and seen[-1].tokens_done == seen[-1].tokens_total
    assert all(1 <= p.epoch <= 2 and p.learning_rate > 0 for p in seen)
    assert all(math.isfinite(p.loss) and p.avg_active > 0 for p in seen)
    assert [p.tokens_done for p in seen] == sorted(p.tokens_done for p in seen)
    assert [e["epoch"] for e in trainer.epoch_stats] == [1, 2]


def test_keyboard_interrupt_leaves_a_consistent_resumable_trainer(
    corpus: list[str], vocab: Vocabulary
) -> None:
    ids, offsets = vocab.encode_batch(corpus)
    config = ONE_THREAD.replace(training_batch_size=20)
    calls = 0

    def interrupt_on_third_report(_: css_rs.Progress) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt

    trainer = Trainer((ids, offsets), vocab, config)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(interrupt_on_third_report, interval=0.0)
    assert not trainer.done
    partial = trainer.model()
    assert all(np.isfinite(a).all() for a in arrays(partial)[1:])
    finished = Trainer((ids, offsets), vocab, config, state=trainer.state()).run()
    reference = css_rs.train((ids, offsets), vocab, config)
    assert np.array_equal(arrays(finished)[1], arrays(reference)[1])


def test_sigint_stops_training_promptly(tmp_path: os.PathLike[str]) -> None:
    script = textwrap.dedent(
        """
        import sys, numpy as np, css_rs
        from css_rs.synthetic import generate_corpus
        texts = generate_corpus(4000, seed=1)
        vocab = css_rs.Vocabulary.from_texts(texts)
        trainer = css_rs.Trainer(texts, vocab, css_rs.TrainConfig(threads=1, epochs=10000))
        try:
            trainer.run(lambda p: print("progress", p.tokens_done, flush=True))
        except KeyboardInterrupt:
            freq, amp, phase = trainer.model().slot_arrays()
            print("stopped", bool(np.isfinite(amp).all()), len(trainer.state()), flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("progress")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    last = out.strip().splitlines()[-1].split()
    assert last[:2] == ["stopped", "True"] and int(last[2]) > 0
    assert proc.returncode == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    learning_rate=st.floats(1e-3, 100.0),
    loss=st.sampled_from(["logistic", "hinge"]),
    normalize=st.sampled_from(["none", "l2"]),
    use_phases=st.booleans(),
    update_context=st.booleans(),
    sparsity_penalty=st.sampled_from([0.0, 0.01, 1.0]),
    seed=st.integers(0, 1000),
)
def test_no_nan_or_infinity_under_any_setting(
    learning_rate: float,
    loss: str,
    normalize: str,
    use_phases: bool,
    update_context: bool,
    sparsity_penalty: float,
    seed: int,
) -> None:
    if loss == "hinge" and normalize == "none":
        normalize = "l2"
    texts = generate_corpus(120, seed=seed)
    vocab = Vocabulary.from_texts(texts, min_count=1)
    config = TrainConfig(
        threads=1,
        epochs=2,
        seed=seed,
        learning_rate=learning_rate,
        min_lr=min(1e-4, learning_rate),
        loss=loss,
        normalize=normalize,
        use_phases=use_phases,
        update_context=update_context,
        sparsity_penalty=sparsity_penalty,
    )
    trainer = Trainer(texts, vocab, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # collapse warnings are expected here
        model = trainer.run()
    freq, amp, phase = model.slot_arrays()
    assert np.isfinite(amp).all() and np.isfinite(phase).all()
    assert all(math.isfinite(e["loss"]) for e in trainer.epoch_stats)
    if not use_phases:
        active = freq != 0xFFFF
        assert np.all(np.isclose(phase[active], 0) | np.isclose(np.abs(phase[active]), math.pi))


def test_collapse_is_reported(corpus: list[str], vocab: Vocabulary) -> None:
    with pytest.warns(RuntimeWarning, match="lost every active frequency"):
        css_rs.train(corpus[:300], vocab, ONE_THREAD.replace(sparsity_penalty=50.0, epochs=1))


def test_collapse_onto_few_frequencies_is_reported(corpus: list[str], vocab: Vocabulary) -> None:
    # Plain top-K selection over a large frequency space piles every word onto a few of them.
    trainer = Trainer(corpus, vocab, ONE_THREAD.replace(frequency_dim=400, **PLAIN_TOP_K))
    with pytest.warns(RuntimeWarning, match=r"collapsed onto few frequencies: effective number"):
        model = trainer.run()
    assert trainer.epoch_stats[-1]["effective_frequencies"] < 40
    assert trainer.epoch_stats[-1]["effective_frequencies"] == pytest.approx(
        model.usage_stats().effective
    )


def test_balanced_selection_spreads_words_over_frequencies(
    corpus: list[str], vocab: Vocabulary, model: CSSModel
) -> None:
    plain_model = css_rs.train(corpus, vocab, ONE_THREAD.replace(**PLAIN_TOP_K))
    balanced = css_rs.train(corpus, vocab, ONE_THREAD.replace(max_frequencies=8))
    plain, spread = plain_model.usage_stats(), balanced.usage_stats()
    assert spread.effective > 2 * plain.effective
    assert spread.largest_share < 0.5 < plain.largest_share
    words = [w for ws in TOPICS.values() for w in ws]
    good = sum(all(same_cluster(w, n) for n, _ in balanced.similar(w, 3)) for w in words)
    assert good / len(words) >= 0.8


def test_refinement_prunes_entries_weak_against_the_strongest(
    corpus: list[str], vocab: Vocabulary, model: CSSModel
) -> None:
    # refine_prune_ratio drops, at each refinement prune, the entries weaker than that fraction
    # of the word's strongest: words keep fewer entries, none is emptied, clusters survive.
    unpruned = css_rs.train(corpus, vocab, ONE_THREAD.replace(refine_prune_ratio=0.0))
    pruned = css_rs.train(corpus, vocab, ONE_THREAD.replace(refine_prune_ratio=0.3))
    assert pruned.avg_active() < model.avg_active() <= unpruned.avg_active()
    assert min(pruned.active_counts()) >= 1
    words = [w for ws in TOPICS.values() for w in ws]
    good = sum(all(same_cluster(w, n) for n, _ in pruned.similar(w, 3)) for w in words)
    assert good / len(words) >= 0.8


def test_negatives_are_updated_unless_their_rate_is_zero(
    corpus: list[str], vocab: Vocabulary
) -> None:
    # negative_lr_scale 0 leaves negatives to the context updates' error term: their own
    # updates are skipped (no load or store), so the epoch statistics count none.
    def negative_updates(scale: float) -> int:
        trainer = Trainer(corpus[:400], vocab, ONE_THREAD.replace(negative_lr_scale=scale))
        trainer.run()
        return sum(e["negative_updates"] for e in trainer.epoch_stats)

    assert negative_updates(0.1) > 0
    assert negative_updates(0.0) == 0


def test_corpus_arrays_are_validated(vocab: Vocabulary) -> None:
    bad_id = np.array([0, len(vocab)], dtype=np.uint32)
    trainer = Trainer((bad_id, np.array([0, 2])), vocab, ONE_THREAD)
    with pytest.raises(ValueError, match=f"token id {len(vocab)} is outside the vocabulary"):
        trainer.run()
    with pytest.raises(ValueError, match="offsets end at 1 but there are 2"):
        Trainer((np.array([0, 1], dtype=np.uint32), np.array([0, 1])), vocab, ONE_THREAD)
    with pytest.raises(ValueError, match="empty"):
        Trainer(["x"], Vocabulary.from_texts(["a"], min_count=2), ONE_THREAD)
    with pytest.raises(TypeError, match="single str"):
        Trainer("just one text", vocab, ONE_THREAD)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_frequencies": 30, "frequency_dim": 20}, "max_frequencies = 30 is invalid"),
        ({"window_size": 0}, r"window_size = 0 is invalid: must be an integer in \[1, 1000\]"),
        ({"shrink_windows": "yes"}, "shrink_windows = 'yes' is invalid: must be true or false"),
        ({"learning_rate": 0.0}, "learning_rate = 0.0 is invalid: must be a finite number > 0"),
        ({"learning_rate": float("nan")}, "learning_rate = nan is invalid"),
        ({"loss": "squared"}, "loss = 'squared' is invalid: must be one of 'logistic', 'hinge'"),
        ({"loss": "hinge"}, "hinge.*normalize = 'l2' or max_norm"),
        ({"threads": -1}, "threads = -1 is invalid"),
        ({"exploration_fraction": 1.5}, "exploration_fraction = 1.5 is invalid"),
        ({"balance_gamma": 33.0}, r"balance_gamma = 33.0 is invalid: must be a finite number >= 0"),
        ({"score_bias": -1.0}, "score_bias = -1.0 is invalid"),
        ({"refine_prune_ratio": 1.0}, r"refine_prune_ratio = 1.0 is invalid: .* <= 0.999"),
        ({"refine_prune_ratio": -0.1}, "refine_prune_ratio = -0.1 is invalid"),
    ],
)
def test_config_errors_name_field_value_and_range(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)  # type: ignore[arg-type]


def test_the_untrained_loss_is_the_chance_level() -> None:
    """What an epoch's loss is read against: (1 + negatives) ln 2 for the logistic loss without
    a score bias, more with one (a disjoint pair then scores below zero), negatives x margin
    for the hinge."""
    assert untrained_loss(TrainConfig(score_bias=0.0)) == pytest.approx(6 * math.log(2))
    assert untrained_loss(TrainConfig(score_bias=2.0, negative_count=1)) == pytest.approx(
        math.log1p(math.exp(2.0)) + math.log1p(math.exp(-2.0))
    )
    hinge = TrainConfig(loss="hinge", normalize="l2", margin=0.5, negative_count=4)
    assert untrained_loss(hinge) == pytest.approx(2.0)
