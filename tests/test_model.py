"""CSSModel queries, files and evaluation through the public API."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

import css_rs
from css_rs import CSSModel, InputError, TrainConfig, UnknownWordError, Vocabulary
from css_rs.model import rank_average, read_word_pairs, spearman
from css_rs.synthetic import cluster_of, generate_corpus

WORDSIM = Path(__file__).resolve().parents[2] / "shared" / "data" / "wordsim353.tsv"


@pytest.fixture(scope="module")
def model() -> CSSModel:
    texts = generate_corpus(1500, seed=5)
    vocab = Vocabulary.from_texts(texts, min_count=5)
    return css_rs.train(texts, vocab, TrainConfig(threads=1, epochs=3))


def test_save_load_round_trip_is_exact(model: CSSModel, tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    model.save(path)
    back = css_rs.load(path)
    assert back.words == model.words
    assert back.vocab.counts == model.vocab.counts
    for a, b in zip(model.slot_arrays(), back.slot_arrays()):
        assert np.array_equal(a, b)
    assert back.config == model.config
    assert back.similar("cat", 5) == model.similar("cat", 5)
    doc = json.loads(path.read_text())
    assert doc["format"] == "css-rs-model" and doc["css_rs_version"] == css_rs.__version__
    assert {"version", "timestamp", "config", "vocabSize", "vocab", "wordFreq", "spectra"} <= set(
        doc
    )
    assert doc["stats"]["totalWords"] == len(model)
    assert doc["stats"]["totalFrequencies"] == 200
    assert doc["stats"]["avgSparsity"] == pytest.approx(model.avg_active())


def test_counts_follow_the_ids_and_survive_a_round_trip(model: CSSModel, tmp_path: Path) -> None:
    counts = model.counts
    assert [int(c) for c in counts] == [model.vocab.counts[w] for w in model.words]
    assert all(counts[:-1] >= counts[1:])  # ids run by descending count
    with pytest.raises(ValueError):
        counts[0] = 0  # read-only: the model hands out its own array
    model.save(tmp_path / "m.json")
    assert np.array_equal(css_rs.load(tmp_path / "m.json").counts, counts)


def test_large_model_saves_and_loads_fast(tmp_path: Path) -> None:
    """A 50,000-word model: the figure is printed, not asserted (machines are shared)."""
    v, k = 50_000, 8
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(v)]
    freq = np.sort(rng.choice(200, size=(v, k)), axis=1).astype(np.uint16)
    dup = np.zeros_like(freq, dtype=bool)
    dup[:, 1:] = freq[:, 1:] == freq[:, :-1]
    freq[dup] = 0xFFFF
    amp = rng.random((v, k), dtype=np.float32)
    phase = (rng.random((v, k), dtype=np.float32) - 0.5).astype(np.float32)
    spectra = css_rs._core.Spectra.from_slots(k, 200, freq.ravel(), amp.ravel(), phase.ravel())
    m = CSSModel(spectra, Vocabulary.from_words(words, list(range(v, 0, -1))))
    start = time.perf_counter()
    m.save(tmp_path / "big.json")
    saved = time.perf_counter()
    back = css_rs.load(tmp_path / "big.json")
    print(f"50k words: save {saved - start:.2f}s, load {time.perf_counter() - saved:.2f}s")
    assert np.array_equal(back.slot_arrays()[1], m.slot_arrays()[1])


def test_loads_models_of_the_original_tool(tmp_path: Path) -> None:
    original = {
        "version": "1.0",
        "timestamp": "2025-01-23T01:15:30.000Z",
        "config": {"frequencyDim": 16, "maxFrequencies": 3, "windowSize": 3, "minWordFreq": 2},
        "vocabSize": 3,
        "vocab": {"cat": 0, "dog": 1, "car": 2},
        "wordFreq": {"cat": 9, "dog": 7, "car": 5},
        "spectra": {
            "0": {"frequencies": [4, 1], "amplitudes": [0.5, 0.25]},
            "1": {"frequencies": [4], "amplitudes": [-0.5]},
            "2": {"frequencies": [], "amplitudes": []},
        },
        "stats": {"totalWords": 3, "avgSparsity": 1.0, "totalFrequencies": 16},
    }
    path = tmp_path / "css_model.json"
    path.write_text(json.dumps(original))
    m = css_rs.load(path)
    assert (len(m), m.frequency_dim, m.max_frequencies) == (3, 16, 3)
    assert m.config.window_size == 3 and m.config.min_word_freq == 2
    assert m.spectrum("cat") == [(4, 0.5, 0.0), (1, 0.25, 0.0)]
    (f, a, p) = m.spectrum("dog")[0]
    assert (f, a) == (4, 0.5) and p == pytest.approx(math.pi)
    assert m.similarity("cat", "dog") == pytest.approx(-0.5 * 0.5 / (0.5 * math.hypot(0.5, 0.25)))
    assert m.similarity("cat", "car") == 0.0
    assert m.vocab.counts == {"cat": 9, "dog": 7, "car": 5}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "top level is not an object"),
        (b'{"vocab": {"a": 0}}', "missing or invalid 'spectra'"),
        (b'{"vocab": {"a": 5}, "spectra": {}}', "vocab id 5"),
        (
            b'{"vocab": {"a": 0}, "spectra": {"0": {"frequencies": [1], "amplitudes": []}}}',
            "1 frequencies, 0 amplitudes",
        ),
        (
            b'{"vocab": {"a": 0}, "spectra": {"3": {"frequencies": [], "amplitudes": []}}}',
            "word id 3 but the vocabulary has 1",
        ),
        (
            b'{"vocab": {"a": 0}, "spectra": {"0": {"frequencies": [1], "amplitudes": [NaN]}}}',
            "invalid JSON|not a finite",
        ),
    ],
)
def test_broken_model_files_get_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        css_rs.load(path)
    assert str(path) in str(err.value)
    assert path.read_bytes() == content  # left in place, untouched


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such model file"):
        css_rs.load(tmp_path / "nope.json")


def test_spectrum_similar_and_similarity(model: CSSModel) -> None:
    spec = model.spectrum("cat")
    amps = [a for _, a, _ in spec]
    assert amps == sorted(amps, reverse=True) and len(spec) <= model.max_frequencies
    assert model.spectrum("cat", top=2) == spec[:2]
    top = model.similar("cat", k=4)
    assert len(top) == 4 and "cat" not in [w for w, _ in top]
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert model.similarity("cat", top[0][0]) == pytest.approx(top[0][1])
    assert model.similarity("cat", "cat") == pytest.approx(1.0)
    assert -1.0 <= model.similarity("cat", "car") <= 1.0


def test_unknown_words_suggest_close_spellings(model: CSSModel) -> None:
    with pytest.raises(UnknownWordError, match="close spellings: cat") as err:
        model.similar("caat")
    assert isinstance(err.value, KeyError) and "cat" in err.value.suggestions
    assert "caat" not in model and "cat" in model


def test_dense_export_matches_the_spectra(model: CSSModel) -> None:
    dense = model.to_dense()
    assert dense.shape == (len(model), 200) and dense.dtype == np.complex64
    wid = model.word_id("apple")
    for f, a, p in model.spectrum("apple"):
        assert dense[wid, f] == pytest.approx(a * np.exp(1j * p), abs=1e-6)
    assert np.count_nonzero(dense[wid]) == len(model.spectrum("apple"))
    real = model.to_dense(complex=False)
    assert real.shape == (len(model), 400) and real.dtype == np.float32
    assert np.allclose(real[:, :200], dense.real) and np.allclose(real[:, 200:], dense.imag)
    # The dense cosine is the model's similarity.
    a, b = dense[model.word_id("cat")], dense[model.word_id("dog")]
    cos = np.real(np.vdot(b, a)) / (np.linalg.norm(a) * np.linalg.norm(b))
    assert cos == pytest.approx(model.similarity("cat", "dog"), abs=1e-5)


def test_modes_and_polysemy(model: CSSModel) -> None:
    f = model.spectrum("cat")[0][0]
    mode = model.modes(f, k=5)
    assert mode and [a for _, a in mode] == sorted((a for _, a in mode), reverse=True)
    assert "cat" in [w for w, _ in model.modes(f, k=len(model))]
    report = model.polysemy("bank")
    assert report.peaks[0].amplitude == model.spectrum("bank")[0][1]
    assert all(p.amplitude >= 0.25 * report.peaks[0].amplitude for p in report.peaks)
    assert 0.0 < report.balance <= 1.0
    with pytest.raises(ValueError, match="frequency = 999 is invalid"):
        model.modes(999)


def test_rank_average_and_spearman_with_ties() -> None:
    assert rank_average([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Hand-computed: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4] -> rho = 0.9486832980505138
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)


def test_word_pair_files(tmp_path: Path, model: CSSModel) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "# a comment\nWord 1\tWord 2\tHuman (mean)\ncat\tdog\t9\nCat\tcar\t1\n\n"
        "apple\tpear\t8\nzebra\tcat\t5\napple\tcar\t0.5\n"
    )
    assert read_word_pairs(pairs)[1] == ("cat", "car", 1.0)
    result = model.evaluate_pairs(pairs)
    assert (result.pairs_used, result.oov_pairs) == (4, 1)
    assert result.oov_ratio == pytest.approx(0.2)
    assert -1.0 <= result.spearman <= 1.0
    bad = tmp_path / "bad.tsv"
    bad.write_text("cat\tdog\t9\ncat dog\n")
    with pytest.raises(InputError, match=r"bad.tsv:2: expected"):
        model.evaluate_pairs(bad)
    with pytest.raises(InputError, match="no such pairs file"):
        model.evaluate_pairs(tmp_path / "missing.tsv")


@pytest.mark.skipif(not WORDSIM.exists(), reason="shared/data/wordsim353.tsv is absent")
def test_reads_wordsim353() -> None:
    assert len(read_word_pairs(WORDSIM)) == 353


def test_model_json_is_orjson_numbers(model: CSSModel, tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    model.save(path)
    doc = orjson.loads(path.read_bytes())
    entry = doc["spectra"]["0"]
    assert len(entry["frequencies"]) == len(entry["amplitudes"]) == len(entry["phases"])
    assert all(isinstance(f, int) for f in entry["frequencies"])


def test_most_similar_with_positive_and_negative_words(model: CSSModel) -> None:
    """gensim's signature: one word is `similar`; several words are combined."""
    assert model.most_similar("cat", topn=4) == model.similar("cat", 4)
    assert model.most_similar(positive=["cat"], topn=4) == model.similar("cat", 4)
    both = model.most_similar(positive=["cat", "apple"], topn=10)
    assert not {"cat", "apple"} & {w for w, _ in both}
    topics = {cluster_of(w) for w, _ in both}
    assert {"animals", "fruits"} <= topics
    scores = [s for _, s in both]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    # Subtracting fruits from a fruit-and-animal query leaves the animals on top.
    animals = model.most_similar(positive=["cat", "apple"], negative=["banana"], topn=5)
    assert all(cluster_of(w) == "animals" for w, _ in animals), animals
    # The combined cosine equals the dense computation.
    dense = model.to_dense().astype(np.complex128)
    unit = dense / np.linalg.norm(dense, axis=1, keepdims=True)
    q = unit[model.word_id("cat")] + unit[model.word_id("apple")]
    word, score = both[0]
    expected = np.real(np.vdot(q, unit[model.word_id(word)])) / np.linalg.norm(q)
    assert score == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        model.most_similar()
    with pytest.raises(UnknownWordError):
        model.most_similar(positive=["cat", "zzzz"])


def test_usage_stats_match_the_frequency_usage(model: CSSModel) -> None:
    """The engine's spread figures, recomputed from the words per frequency with numpy."""
    usage = model.frequency_usage().astype(np.float64)
    shares = usage[usage > 0] / usage.sum()
    stats = model.usage_stats()
    assert stats.in_use == np.count_nonzero(usage)
    assert stats.effective == pytest.approx(np.exp(-(shares * np.log(shares)).sum()))
    assert stats.largest_share == pytest.approx(usage.max() / len(model))
    assert stats.crowded == np.count_nonzero(usage > 0.15 * len(model))
