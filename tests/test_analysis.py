"""css_rs.analysis through the Python API: senses of the planted two-sense words, rankings that
match the engine, per-frequency summaries, model information, export writers and plots."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import css_rs
from css_rs import CSSModel, InputError, TrainConfig, UnknownWordError, Vocabulary, analysis
from css_rs.cli.info import model_info
from css_rs.files import metadata_path
from css_rs.synthetic import POLYSEMOUS, TOPICS, cluster_of, generate_corpus


def mostly(words: list[str], topic: str) -> bool:
    """More than half of ``words`` belong to ``topic``."""
    return sum(cluster_of(w) == topic for w in words) > len(words) / 2


def peak_topics(report: css_rs.Polysemy, topics: tuple[str, str]) -> dict[str, list[int]]:
    """For each topic, the peaks (frequencies) whose sense neighbours are mostly that topic's."""
    return {
        t: [p.frequency for p in report.peaks if mostly([w for w, _ in p.neighbours], t)]
        for t in topics
    }


# --- sense neighbours ----------------------------------------------------------------------
@pytest.mark.parametrize("word", sorted(POLYSEMOUS))
def test_phase_ranking_finds_one_peak_per_planted_sense(model: CSSModel, word: str) -> None:
    topics = POLYSEMOUS[word]
    report = model.polysemy(word)
    assert report.is_polysemous
    found = peak_topics(report, topics)
    assert all(found[t] for t in topics), (found, report)
    assert not set(found[topics[0]]) & set(found[topics[1]])


def test_amplitude_ranking_mixes_the_senses_of_shared_frequencies() -> None:
    """Why the phase matters: under plain top-K selection (no usage balancing) clusters share
    frequencies at different phases, and the amplitude-product ranking (ALGORITHM.md's)
    ignores that, so a planted sense that the phase ranking finds does not show."""
    texts = generate_corpus(3000, seed=5)
    plain = TrainConfig(threads=1, balance_gamma=0.0, score_bias=0.0, max_frequencies=8)
    model = css_rs.train(texts, Vocabulary.from_texts(texts), plain.replace(learning_rate=0.3))
    missed = [
        (word, topic)
        for word, topics in POLYSEMOUS.items()
        for topic, peaks in peak_topics(model.polysemy(word, rank="amplitude"), topics).items()
        if not peaks
    ]
    assert missed


def test_phase_neighbours_are_aligned_and_ranked(model: CSSModel) -> None:
    dense = model.to_dense().astype(np.complex128)
    wid = model.word_id("bank")
    for peak in model.polysemy("bank", k=8).peaks:
        scores = [s for _, s in peak.neighbours]
        assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
        for word, score in peak.neighbours:
            expected = (
                dense[wid, peak.frequency] * np.conj(dense[model.word_id(word), peak.frequency])
            ).real
            assert score == pytest.approx(expected, rel=1e-5)
            assert model.similarity("bank", word) > 0  # related to the word as a whole


def test_polysemy_rejects_bad_arguments(model: CSSModel) -> None:
    with pytest.raises(UnknownWordError) as err:
        model.polysemy("bnak")
    assert "bank" in err.value.suggestions
    with pytest.raises(ValueError, match="rank must be one of"):
        model.polysemy("bank", rank="loudest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="peak_ratio"):
        model.polysemy("bank", peak_ratio=1.5)


# --- senses --------------------------------------------------------------------------------
@pytest.mark.parametrize("word", sorted(POLYSEMOUS))
def test_planted_words_have_two_senses_carried_by_their_peaks(model: CSSModel, word: str) -> None:
    report = model.polysemy(word)
    assert report.is_polysemous and len(report.senses) == 2
    topics = {t for s in report.senses for t in POLYSEMOUS[word] if mostly(s.neighbours(10), t)}
    assert topics == set(POLYSEMOUS[word])
    assert all(s.peaks for s in report.senses)
    assert 0.3 < report.balance <= 1.0
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert {p["sense"] for p in as_dict["peaks"]} >= {0, 1}


@pytest.mark.parametrize("word", ["cat", "guitar", "money", "rain"])
def test_ordinary_words_have_one_sense(model: CSSModel, word: str) -> None:
    report = model.polysemy(word)
    assert len(report.senses) == 1 and report.balance == 0.0 and report.score == 0.0
    assert mostly(report.senses[0].neighbours(10), cluster_of(word) or "")


def test_most_polysemous_ranks_the_planted_words_first(model: CSSModel) -> None:
    ranked = analysis.most_polysemous(model, top=5)
    assert len(ranked) == 5
    assert {r.word for r in ranked[:2]} == set(POLYSEMOUS)
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    # No content word other than the planted ones is polysemous.
    content = {w for words in TOPICS.values() for w in words}
    everyone = analysis.most_polysemous(model, top=len(model), among=len(model))
    assert {r.word for r in everyone} & content == set()


def test_most_polysemous_only_considers_the_most_frequent_words(model: CSSModel) -> None:
    among = 10
    ranked = analysis.most_polysemous(model, top=50, among=among)
    assert all(model.word_id(r.word) < among for r in ranked)
    assert analysis.most_polysemous(model, top=0) == []
    with pytest.raises(ValueError):
        analysis.most_polysemous(model, top=-1)


def test_most_polysemous_skips_words_seen_fewer_than_min_count_times() -> None:
    """A word seen 10 times, below the default floor of 12, is polysemous by its own report
    (its spectrum is noise that lands near both topics of the word it stands in for) but is
    not ranked, while the frequent planted words are; a floor of 10 ranks it."""
    texts = generate_corpus(3000, seed=5)
    rare, renamed = "banque", 0
    for i, doc in enumerate(texts):
        if renamed < 10 and re.search(r"\bbank\b", doc):
            texts[i] = re.sub(r"\bbank\b", rare, doc, count=1)
            renamed += 1
    model = css_rs.train(texts, Vocabulary.from_texts(texts), TrainConfig(threads=1, epochs=5))
    assert model.vocab.counts[rare] == 10 < analysis.DEFAULT_SENSE_MIN_COUNT
    assert model.polysemy(rare).is_polysemous
    everyone = len(model)
    assert analysis.polysemy_candidates(model, everyone) == everyone - 1
    ranked = {r.word for r in analysis.most_polysemous(model, top=everyone, among=everyone)}
    assert rare not in ranked and set(POLYSEMOUS) <= ranked
    low = analysis.most_polysemous(model, top=everyone, among=everyone, min_count=10)
    assert rare in {r.word for r in low}


def test_most_polysemous_reports_its_progress(model: CSSModel) -> None:
    calls: list[tuple[int, int]] = []
    ranked = analysis.most_polysemous(
        model, top=3, among=len(model), progress=lambda done, total: calls.append((done, total))
    )
    assert calls[0] == (0, len(model)) and calls[-1] == (len(model), len(model))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert [r.word for r in ranked] == [r.word for r in analysis.most_polysemous(model, top=3)]


def test_sense_weights_are_the_reports_weights(model: CSSModel) -> None:
    analyzer = analysis.SenseAnalyzer(model)
    ids = [model.word_id(w) for w in ("bank", "bat", "cat", "the")]
    weights = analyzer.sense_weights(ids)
    assert weights == [[s.weight for s in r.senses] for r in analyzer.senses(ids)]
    assert len(weights[0]) == 2 and weights[0] == sorted(weights[0], reverse=True)


def test_senses_without_the_modes_draw_from_the_nearest_words_only(model: CSSModel) -> None:
    report = analysis.SenseAnalyzer(model, modes=False).senses([model.word_id("bank")])[0]
    near = {w for w, _ in model.similar("bank", analysis.DEFAULT_NEIGHBOURHOOD)}
    assert report.senses and {w for s in report.senses for w, _ in s.members} <= near


def test_rare_words_are_neither_neighbours_nor_sense_members(model: CSSModel) -> None:
    counts = model.vocab.counts
    floor = sorted(counts[w] for w in model.words)[len(model) // 2]  # half the words fall short
    report = model.polysemy("bank", min_count=floor)
    words = [w for s in report.senses for w, _ in s.members]
    words += [w for p in report.peaks for w, _ in p.neighbours]
    assert words and all(counts[w] >= floor for w in words)
    everyone = model.polysemy("bank", min_count=0)
    assert any(counts[w] < floor for p in everyone.peaks for w, _ in p.neighbours)
    with pytest.raises(ValueError, match="min_count"):
        model.polysemy("bank", min_count=-1)


def test_sense_settings_are_checked_by_the_engine() -> None:
    with pytest.raises(ValueError, match="rank"):
        css_rs._core.SenseSettings(rank="loudest")
    with pytest.raises(ValueError, match="neighbourhood"):
        css_rs._core.SenseSettings(neighbourhood=1)


# --- frequencies and model information -----------------------------------------------------
def test_frequency_summaries_agree_with_modes_and_usage(model: CSSModel) -> None:
    summaries = analysis.frequency_summaries(model, k=5)
    usage = model.frequency_usage()
    assert [s.frequency for s in summaries] == list(range(model.frequency_dim))
    assert [s.words for s in summaries] == usage.tolist()
    for s in summaries:
        engine = model.modes(s.frequency, 5)
        assert [w for w, _ in s.top] == [w for w, _ in engine]
        assert [a for _, a in s.top] == pytest.approx([a for _, a in engine])


def test_active_histogram(model: CSSModel) -> None:
    hist = analysis.active_histogram(model)
    assert len(hist) == model.max_frequencies + 1 and hist.sum() == len(model)
    assert (
        hist.tolist()
        == np.bincount(model.active_counts(), minlength=model.max_frequencies + 1).tolist()
    )


def test_model_info_reads_the_metadata_file(model: CSSModel, tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    model.save(path)
    bare = model_info(model, path)
    assert bare.training is None and bare.metadata_path is None
    assert (bare.vocab_size, bare.frequency_dim, bare.max_frequencies) == (len(model), 200, 16)
    assert bare.frequencies_used == model.usage_stats().in_use
    assert bare.effective_frequencies == pytest.approx(model.usage_stats().effective)
    assert bare.crowded_frequencies == model.usage_stats().crowded
    assert bare.file_size == path.stat().st_size
    assert sum(bare.active_histogram) == len(model)
    meta = {
        "timestamp": "2025-01-01T00:00:00Z",
        "css_rs_version": css_rs.__version__,
        "stats": {"documents": 1500, "tokens": 74878, "elapsed": 0.5, "epochs": [{"loss": 3.9}]},
        "dataset_progress": {"description": "synthetic corpus (1,500 documents, seed 5)"},
    }
    metadata_path(path).write_text(json.dumps(meta))
    info = model_info(model, path)
    assert info.training is not None
    assert info.training["documents"] == 1500 and info.training["final_loss"] == 3.9
    assert info.training["source"] == "synthetic corpus (1,500 documents, seed 5)"
    metadata_path(path).write_text("{broken")
    damaged = model_info(model, path)
    assert damaged.training is None and "unreadable" in (damaged.metadata_error or "")


# --- export --------------------------------------------------------------------------------
def test_word2vec_text_export_has_the_same_neighbours_in_gensim(
    model: CSSModel, tmp_path: Path
) -> None:
    from gensim.models import KeyedVectors

    out = analysis.write_word2vec(model, tmp_path / "vectors.txt")
    kv = KeyedVectors.load_word2vec_format(str(out), binary=False)
    assert kv.index_to_key == model.words and kv.vector_size == 2 * model.frequency_dim
    assert np.array_equal(kv.vectors, model.to_dense(complex=False))
    for word in ("cat", "bank", "money", "guitar"):
        assert [w for w, _ in kv.most_similar(word, topn=5)] == [
            w for w, _ in model.similar(word, 5)
        ]


def test_word2vec_binary_and_real_exports(model: CSSModel, tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    out = analysis.write_word2vec(model, tmp_path / "vectors.bin", binary=True)
    kv = KeyedVectors.load_word2vec_format(str(out), binary=True)
    assert np.array_equal(kv.vectors, model.to_dense(complex=False))
    real = analysis.write_word2vec(model, tmp_path / "amps.bin", binary=True, real=True)
    kv = KeyedVectors.load_word2vec_format(str(real), binary=True)
    assert kv.vector_size == model.frequency_dim
    assert np.allclose(kv.vectors, np.abs(model.to_dense()))


def test_npy_export_writes_the_matrix_and_its_vocabulary(model: CSSModel, tmp_path: Path) -> None:
    files = analysis.export(model, tmp_path / "emb.npy", "npy")
    assert files == [tmp_path / "emb.npy", tmp_path / "emb.vocab.txt"]
    matrix = np.load(files[0])
    assert matrix.dtype == np.complex64 and np.array_equal(matrix, model.to_dense())
    assert files[1].read_text(encoding="utf-8").splitlines() == model.words
    real = np.load(analysis.export(model, tmp_path / "amps.npy", "npy", real=True)[0])
    assert real.dtype == np.float32 and real.shape == (len(model), model.frequency_dim)


def test_npz_export_holds_the_sparse_spectra(model: CSSModel, tmp_path: Path) -> None:
    (path,) = analysis.export(model, tmp_path / "spectra.npz", "npz")
    with np.load(path, allow_pickle=False) as z:
        assert z["words"].tolist() == model.words
        assert z["counts"].tolist() == [model.vocab.counts[w] for w in model.words]
        assert int(z["frequency_dim"]) == model.frequency_dim
        dense = np.zeros((len(model), model.frequency_dim), dtype=np.complex64)
        indptr = z["indptr"]
        for row in range(len(model)):
            sl = slice(indptr[row], indptr[row + 1])
            dense[row, z["frequencies"][sl]] = z["amplitudes"][sl] * np.exp(1j * z["phases"][sl])
    assert np.allclose(dense, model.to_dense(), atol=1e-6)
    bank = model.word_id("bank")
    assert indptr[bank + 1] - indptr[bank] == len(model.spectrum("bank"))


def tiny_model(words: list[str]) -> CSSModel:
    n = len(words)
    freq = np.tile(np.array([0, 1], dtype=np.uint16), n)
    spectra = css_rs._core.Spectra.from_slots(
        2, 4, freq, np.ones(2 * n, np.float32), np.zeros(2 * n, np.float32)
    )
    return CSSModel(spectra, Vocabulary.from_words(words, list(range(n, 0, -1))))


@pytest.mark.parametrize("fmt", ["word2vec", "word2vec-binary"])
def test_words_with_whitespace_cannot_go_into_word2vec(tmp_path: Path, fmt: str) -> None:
    model = tiny_model(["new york", "paris"])
    with pytest.raises(InputError, match=r"'new york'.*whitespace.*npz"):
        analysis.export(model, tmp_path / "v.txt", fmt)
    assert not list(tmp_path.iterdir())  # checked before anything is written
    analysis.export(model, tmp_path / "v.npz", "npz")  # npz stores any word
    with pytest.raises(InputError, match="line break"):
        analysis.export(tiny_model(["a\nb", "c"]), tmp_path / "v.npy", "npy")


def test_export_refuses_unwritable_paths_and_leaves_no_temp_files(
    model: CSSModel, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write there"):
        analysis.export(model, blocker / "out.txt", "word2vec")
    with pytest.raises(InputError, match="is a directory"):
        analysis.export(model, tmp_path, "npz")
    with pytest.raises(InputError, match="unknown export format"):
        analysis.export(model, tmp_path / "x", "csv")
    with pytest.raises(InputError, match="--real does not apply"):
        analysis.export(model, tmp_path / "x.npz", "npz", real=True)
    analysis.export(model, tmp_path / "sub" / "v.txt", "word2vec")  # creates the folder
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a-file", "sub", "v.txt"]


def test_a_failed_export_keeps_the_previous_file(
    model: CSSModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "v.txt"
    out.write_text("previous\n")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        analysis.export(model, out, "word2vec")
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["v.txt"]


# --- plots ---------------------------------------------------------------------------------
def read_png(path: Path) -> np.ndarray:
    from matplotlib import image

    return np.asarray(image.imread(str(path)))


def assert_drawn(path: Path, min_height: int) -> None:
    pixels = read_png(path)
    assert pixels.shape[0] >= min_height and pixels.shape[1] >= 600
    rgb = pixels[..., :3]
    assert (rgb < 0.9).mean() > 0.01  # not a blank canvas
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # colours: the phase colormap


@pytest.mark.slow
def test_plot_spectra_draws_one_panel_per_word(model: CSSModel, tmp_path: Path) -> None:
    one = analysis.plot_spectra(model, ["bank"], tmp_path / "one.png")
    three = analysis.plot_spectra(model, ["bank", "bat", "cat"], tmp_path / "three.png")
    assert_drawn(one, 250)
    assert_drawn(three, 500)
    assert read_png(three).shape[0] > read_png(one).shape[0]


@pytest.mark.slow
def test_plot_overview(model: CSSModel, tmp_path: Path) -> None:
    assert_drawn(analysis.plot_overview(model, tmp_path / "overview.png"), 500)


def test_plot_errors(model: CSSModel, tmp_path: Path) -> None:
    with pytest.raises(UnknownWordError):
        analysis.plot_spectra(model, ["bank", "bnak"], tmp_path / "x.png")
    with pytest.raises(InputError, match="at least one word"):
        analysis.plot_spectra(model, [], tmp_path / "x.png")
    with pytest.raises(InputError, match="image format"):
        analysis.plot_spectra(model, ["bank"], tmp_path / "x.docx")
    assert not list(tmp_path.iterdir())


def test_plot_without_matplotlib_names_the_extra(
    model: CSSModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(analysis.MissingDependencyError, match=r"pip install 'css-rs\[plot\]'"):
        analysis.plot_overview(model, tmp_path / "x.png")
