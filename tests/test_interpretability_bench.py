"""benches/interpretability.py: the reference embedding, DistRatio, sparsity figures and sense
discovery, on planted data and the synthetic corpus (no shared data needed, except for the
check of senses.tsv against gcide's vocabulary)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

import css_rs
from css_rs import CSSModel
from css_rs.synthetic import TOPICS, generate_corpus

BENCHES = Path(__file__).resolve().parents[1] / "benches"


def _load_bench() -> ModuleType:
    """benches/ is no package: load the script by path, as a module."""
    spec = importlib.util.spec_from_file_location(
        "interpretability", BENCHES / "interpretability.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


ib = _load_bench()


def planted_reference(
    clusters: int = 4, size: int = 20, dims: int = 16, seed: int = 0, background: int = 0
) -> Any:
    """Words ``c{i}_{j}``: cluster i's words are noisy copies of one direction, so words of one
    cluster are close (cosine ~0.9) and words of different clusters are not (~0); then
    ``background`` words ``b_{j}`` in random directions."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((dims, dims)))[0][:clusters]
    words, rows = [], []
    for i in range(clusters):
        for j in range(size):
            words.append(f"c{i}_{j}")
            rows.append(centres[i] + 0.15 * rng.standard_normal(dims))
    words += [f"b_{j}" for j in range(background)]
    rows += list(rng.standard_normal((background, dims)))
    x = np.array(rows)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    counts = np.full(len(words), 100, dtype=np.int64)
    return ib.Reference(words, counts, x.astype(np.float32))


def test_cooccurrence_counts_pairs_within_the_window_and_never_across_documents() -> None:
    ids = np.array([0, 1, 2, 3, 0, 1], dtype=np.uint32)
    offsets = np.array([0, 4, 6])  # documents [0 1 2 3] and [0 1]
    counts = ib.cooccurrence(ids, offsets, 4, window=2).toarray()
    assert (counts == counts.T).all()
    assert counts[0, 1] == 2  # once in each document
    assert counts[0, 2] == 1 and counts[1, 3] == 1  # distance 2
    assert counts[0, 3] == 0  # distance 3: outside the window (and 3 -> 0 crosses documents)


def test_ppmi_keeps_positive_associations_only() -> None:
    ids = np.array([0, 1, 0, 1, 2, 3, 2, 3], dtype=np.uint32)
    offsets = np.array([0, 4, 8])
    matrix = ib.ppmi(ib.cooccurrence(ids, offsets, 4, window=1))
    assert matrix.nnz > 0 and (matrix.data > 0).all()
    dense = matrix.toarray()
    assert dense[0, 1] > 0 and dense[0, 2] == 0  # 0 and 2 never meet


def test_reference_from_a_corpus_file_is_cached(tmp_path: Path) -> None:
    corpus = tmp_path / "synthetic.txt.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(generate_corpus(400, seed=3)))
    ref = ib.build_reference(corpus, dims=8, cache_dir=tmp_path / "cache")
    assert np.allclose(np.linalg.norm(ref.vectors, axis=1), 1.0, atol=1e-5)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = ib.build_reference(corpus, dims=8, cache_dir=tmp_path / "cache")
    assert again.words == ref.words and np.array_equal(again.vectors, ref.vectors)
    # Words of one planted topic are closer to each other than to another topic's.
    fruit, music = TOPICS["fruits"][:5], TOPICS["music"][:5]
    assert ref.mean_cosine(fruit, fruit) > ref.mean_cosine(fruit, music) + 0.2


def test_dist_ratio_is_high_for_dimensions_that_are_clusters_and_near_one_for_noise() -> None:
    ref = planted_reference()
    v = len(ref.words)
    cluster = np.repeat(np.arange(4), 20)
    aligned = np.zeros((v, 4))
    aligned[np.arange(v), cluster] = np.random.default_rng(1).uniform(0.5, 1.0, v)
    good = ib.dist_ratio(aligned, ref.words, ref)
    assert good.scored == 4 and good.in_use == 4
    assert good.mean > 3.0
    assert all(len({w.split("_")[0] for w in top}) == 1 for top in good.top.values())
    noise = ib.dist_ratio(np.random.default_rng(2).uniform(size=(v, 4)), ref.words, ref)
    assert 0.7 < noise.mean < 1.3


def test_dist_ratio_leaves_out_rare_words_and_thin_dimensions() -> None:
    ref = planted_reference()
    counts = ref.counts.copy()
    counts[:10] = 3  # rare: never a top word nor an intruder
    ref = ib.Reference(ref.words, counts, ref.vectors)
    loadings = np.zeros((len(ref.words), 3))
    loadings[:20, 0] = 1.0  # half of its words are rare
    loadings[20:40, 1] = 1.0
    loadings[40:43, 2] = 1.0  # only 3 words: no top 5, in use but not scored
    result = ib.dist_ratio(loadings, ref.words, ref)
    assert result.in_use == 3 and result.scored == 2
    assert all(int(w.split("_")[1]) >= 10 for w in result.top[0])


def test_loadings_css_shares_and_gensim_positive_parts(model: CSSModel) -> None:
    shares = ib.css_loadings(model)
    assert shares.shape == (len(model), model.frequency_dim)
    assert np.allclose(shares.sum(axis=1)[model.active_counts() > 0], 1.0)
    assert ((shares > 0).sum(axis=0) <= model.frequency_usage()).all()
    g = ib.gensim_loadings(np.array([[3.0, -4.0], [0.0, 0.0]]))
    assert np.allclose(g, [[0.6, 0.0], [0.0, 0.0]])


def test_senses_file_has_enough_words_with_two_cue_sets() -> None:
    entries = ib.read_senses()
    ambiguous = [e for e in entries if not e.is_control]
    controls = [e for e in entries if e.is_control]
    assert len(ambiguous) >= 24 and len(controls) >= 12
    assert len({e.word for e in entries}) == len(entries)
    for e in ambiguous:
        a, b = e.cues
        assert len(a) == len(b) == 5 and not set(a) & set(b) and e.word not in a + b


@pytest.mark.skipif(not ib.CORPUS.is_file(), reason="gcide.txt.gz (../shared/data) is absent")
def test_senses_file_words_are_in_gcide() -> None:
    texts = ib.load_texts()
    counts = css_rs.Vocabulary.from_texts(texts, min_count=5).counts
    for e in ib.read_senses():
        assert counts.get(e.word, 0) >= ib.SCORED_MIN_COUNT, e.word
        for cue in e.cues[0] + e.cues[1]:
            assert counts.get(cue, 0) >= 20, (e.word, cue)


def test_words_of_accepts_every_shape_of_sense_or_peak() -> None:
    assert ib._words_of(SimpleNamespace(members=[("a", 0.9), ("b", 0.8)])) == ["a", "b"]
    assert ib._words_of(SimpleNamespace(neighbours=[("c", 1.0)])) == ["c"]
    assert ib._words_of(SimpleNamespace(neighbours=lambda: ["d", "e"])) == ["d", "e"]
    assert ib._words_of(SimpleNamespace(neighbours=None)) == []
    peak = SimpleNamespace(neighbours=[("f", 1.0), ("g", 0.5)])
    assert ib._words_of(SimpleNamespace(members=[], peaks=[peak])) == ["f", "g"]


def test_cue_judge_assigns_clear_senses_only() -> None:
    # Mostly unrelated words, as a real vocabulary: random sets rarely fall in one cluster.
    ref = planted_reference(background=1000)
    judge = ib.CueJudge(ref)
    cues = (["c0_0", "c0_1", "c0_2"], ["c1_0", "c1_1", "c1_2"])
    assert judge.assign(["c0_5", "c0_6", "c0_7"], cues) == 0
    assert judge.assign(["c1_5", "c1_9"], cues) == 1
    assert judge.assign(["c2_5", "c3_6", "c2_7"], cues) is None  # close to neither
    assert judge.assign(["c0_5", "c1_5"], cues) is None  # as close to both
    assert judge.assign(["unknown"], cues) is None


def test_sense_discovery_on_the_synthetic_model(model: CSSModel, tmp_path: Path) -> None:
    corpus = tmp_path / "synthetic.txt.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(generate_corpus(3000, seed=5)))
    ref = ib.build_reference(corpus, dims=16, cache_dir=tmp_path)
    entries = [
        ib.SenseEntry(
            "bank", ("finance", "river"), (tuple(TOPICS["finance"][:5]), tuple(TOPICS["river"][:5]))
        ),
        ib.SenseEntry(
            "bat",
            ("animals", "sports"),
            (tuple(TOPICS["animals"][:5]), tuple(TOPICS["sports"][:5])),
        ),
        ib.SenseEntry("guitar"),
        ib.SenseEntry("apple"),
        ib.SenseEntry("nonexistentword"),
    ]
    result = ib.sense_discovery(model, ref, entries=entries)
    assert result.ambiguous == 2 and result.controls == 2
    assert result.dropped == ["nonexistentword"]
    assert 0 <= result.found <= 2 and 0 <= result.split <= 2
    assert not math.isnan(result.chance_found_by_peaks)
    for d in result.details:
        assert len(d.assigned) == len(d.senses)


def test_css_report_is_json_ready(model: CSSModel, tmp_path: Path) -> None:
    corpus = tmp_path / "synthetic.txt.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(generate_corpus(400, seed=3)))
    ref = ib.build_reference(corpus, dims=8, cache_dir=tmp_path)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("cat\tdog\t8\napple\tpear\t7\ncat\tcredit\t1\nsong\tmud\t0.5\n")
    report = ib.css_report(model, ref, pairs=pairs)
    json.dumps(report)
    assert report["ambiguous"] + report["controls"] + len(report["dropped"]) == len(
        ib.read_senses()
    )
    assert "| synthetic |" in ib.table([("synthetic", report)])


def test_script_skips_without_the_shared_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ib, "CORPUS", tmp_path / "absent.txt.gz")
    assert ib.main([]) == 0
    assert capsys.readouterr().out.startswith("skipped:")
