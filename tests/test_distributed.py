"""Distributed training on LocalEngine (no Ray): shard assignment, the exact vocabulary, the
merge's properties, retried rounds and resumed runs (issue 16)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from css_rs import _core
from css_rs._core import Vocabulary
from css_rs.config import DISTRIBUTED_SETTINGS, TrainConfig, config_differences
from css_rs.distributed import (
    DistributedTrainer,
    LocalEngine,
    ShardSpec,
    assign_shards,
    build_vocabulary,
    list_shards,
)
from css_rs.errors import InputError
from css_rs.sources import make_source
from css_rs.synthetic import generate_corpus

EMPTY = 0xFFFF


def write_shards(folder: Path, shards: int = 5, docs: int = 400) -> Path:
    """Text shards of unequal sizes (one document per line)."""
    corpus = generate_corpus(docs, seed=4)
    folder.mkdir(parents=True, exist_ok=True)
    bounds = sorted({0, docs, *[(i * i * docs) // (shards * shards) for i in range(1, shards)]})
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        (folder / f"part-{i}.txt").write_text("\n".join(corpus[lo:hi]) + "\n")
    return folder


def config_for(folder: Path, **changes: object) -> TrainConfig:
    settings: dict[str, object] = {
        "source": "text",
        "path": str(folder),
        "min_word_freq": 2,
        "frequency_dim": 32,
        "max_frequencies": 4,
        "epochs": 2,
        "workers": 2,
        "threads_per_worker": 1,
        "round_tokens": 1500,
        "seed": 3,
    }
    settings.update(changes)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(tmp_path_factory.mktemp("shards"))


def trained(config: TrainConfig, checkpoint: Path | None = None) -> DistributedTrainer:
    trainer = DistributedTrainer(
        LocalEngine(), config, list_shards(config), checkpoint_path=checkpoint
    )
    trainer.prepare()
    for _ in trainer.rounds():
        pass
    trainer.engine.close()
    return trainer


def spectra_equal(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return all(np.array_equal(x.view(np.uint8), y.view(np.uint8)) for x, y in zip(a, b))


# --- shards -------------------------------------------------------------------------------------


def test_shards_go_largest_first_to_the_least_loaded_worker() -> None:
    sizes = [50, 10, 40, 30, 20, 5]
    shards = [ShardSpec(i, "text", f"f{i}", f"f{i}", s) for i, s in enumerate(sizes)]
    out = assign_shards(shards, 2)
    assert [[s.size for s in own] for own in out] == [[50, 10, 20], [40, 30, 5]]
    assert sorted(s.index for own in out for s in own) == list(range(6))
    assert assign_shards(list(reversed(shards)), 2) == out
    assert [len(own) for own in assign_shards(shards[:1], 3)] == [1, 0, 0]


def test_local_shards_are_the_source_files(shard_folder: Path) -> None:
    shards = list_shards(config_for(shard_folder))
    assert [Path(s.location).name for s in shards] == [f"part-{i}.txt" for i in range(5)]
    assert [s.size for s in shards] == [
        (shard_folder / f"part-{i}.txt").stat().st_size for i in range(5)
    ]


# --- vocabulary ---------------------------------------------------------------------------------


def single_process_vocabulary(config: TrainConfig) -> Vocabulary:
    vocab = Vocabulary()
    with make_source(config) as source:
        for batch in source.batches():
            vocab.update(batch)
    vocab.build(config.min_word_freq, config.max_vocab_size)
    return vocab


@pytest.mark.parametrize("workers", [1, 3])
def test_vocabulary_equals_the_single_process_one(shard_folder: Path, workers: int) -> None:
    # A size limit that cuts a group of words with the same count: ties go by the word.
    every = list(single_process_vocabulary(config_for(shard_folder)).counts.values())
    cut = next(i for i in range(len(every) // 2, len(every)) if every[i] == every[i - 1])
    config = config_for(shard_folder, max_vocab_size=cut, workers=workers)
    single = single_process_vocabulary(config)
    distributed, counted = build_vocabulary(LocalEngine(), list_shards(config), config)
    assert len(single) == cut
    assert distributed.words == single.words
    assert distributed.counts == single.counts
    assert counted == {"tokens": single.total_tokens, "distinct_words": single.distinct_words}


def test_vocabulary_pickles_with_its_raw_counts() -> None:
    vocab = Vocabulary.from_texts(["b a a c c c d"], min_count=2)
    back = pickle.loads(pickle.dumps(vocab))
    assert back.words == ["c", "a"]
    assert back.raw_counts() == {"a": 2, "b": 1, "c": 3, "d": 1}
    assert back.raw_counts() == vocab.raw_counts()


# --- merge --------------------------------------------------------------------------------------


def random_spectra(v: int, k: int, seed: int) -> tuple[np.ndarray, ...]:
    settings = json.dumps({"frequency_dim": 16, "max_frequencies": k, "seed": seed})
    return _core.initial_spectra(v, settings)


def rows_of(spectra: tuple[np.ndarray, ...], words: list[int]) -> tuple[np.ndarray, ...]:
    freq, re, im, counters = spectra
    k = freq.shape[0] // counters.shape[0]
    slots = np.concatenate([np.arange(w * k, (w + 1) * k) for w in words])
    return (np.array(words, dtype=np.uint32), freq[slots], re[slots], im[slots], counters[words])


def test_merge_is_order_independent_and_k_sparse() -> None:
    k = 4
    base = random_spectra(30, k, 1)
    updates = [
        rows_of(random_spectra(30, k, s), ws)
        for s, ws in [(2, [1, 2, 3]), (3, [2, 3]), (4, [3, 9])]
    ]
    forward = _core.merge_spectra(base, updates, 16)
    backward = _core.merge_spectra(base, updates[::-1], 16)
    assert spectra_equal(forward, backward)
    freq = forward[0].reshape(30, k)
    assert ((freq != EMPTY).sum(axis=1) <= k).all()
    # Word 3 had up to 3k distinct frequencies among its versions: cut back to K.
    assert (freq[3] != EMPTY).sum() == k
    # Untouched words keep their slots bit for bit.
    untouched = [w for w in range(30) if w not in (1, 2, 3, 9)]
    assert np.array_equal(freq[untouched], base[0].reshape(30, k)[untouched])


def test_merge_takes_the_mean_not_the_sum() -> None:
    base = random_spectra(2, 2, 1)
    one = (
        np.array([0], dtype=np.uint32),
        np.array([7, EMPTY], dtype=np.uint16),
        np.array([1.0, 0.0], dtype=np.float32),
        np.array([-2.0, 0.0], dtype=np.float32),
        np.array([0], dtype=np.uint32),
    )
    two = (one[0], one[1], one[2] * 3, one[3] * 3, one[4])
    freq, re, im, _ = _core.merge_spectra(base, [one, two], 16)
    assert (freq[0], re[0], im[0]) == (7, 2.0, -4.0)
    assert freq[1] == EMPTY


def test_merge_refuses_a_word_outside_the_vocabulary() -> None:
    base = random_spectra(2, 2, 1)
    bad = (np.array([5], dtype=np.uint32), *rows_of(base, [0])[1:])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        _core.merge_spectra(base, [bad], 16)


# --- rounds -------------------------------------------------------------------------------------


def test_a_retried_round_gives_the_same_result(shard_folder: Path) -> None:
    config = config_for(shard_folder)
    trainer = DistributedTrainer(LocalEngine(), config, list_shards(config))
    trainer.prepare()
    trainer.run_round()
    assert trainer.spectra is not None
    tasks = trainer.tasks()
    first = trainer.engine.run_round(trainer.spectra, tasks)
    again = trainer.engine.run_round(trainer.spectra, tasks[::-1])[::-1]
    assert [r.worker for r in first] == [0, 1]
    for a, b in zip(first, again):
        assert spectra_equal(a.rows, b.rows)
        assert (a.next_doc, a.tokens, a.loss) == (b.next_doc, b.tokens, b.loss)
        assert a.rows[0].shape[0] > 0
    trainer.engine.close()


def test_a_run_trains_every_token_of_every_epoch(shard_folder: Path) -> None:
    config = config_for(shard_folder)
    trainer = trained(config)
    corpus_tokens = sum(w.tokens for w in trainer.workers)
    assert trainer.state.cluster_tokens_done == corpus_tokens * config.epochs
    assert all(c.epoch == config.epochs for c in trainer.state.cursors)
    assert trainer.state.round >= 2 * config.epochs
    model = trainer.model()
    assert len(model) == len(trainer.vocab or [])
    assert 0 < model.avg_active() <= config.max_frequencies
    stats = model.stats
    assert stats["rounds"] == trainer.state.round
    assert [w["tokens"] for w in stats["workers"]] == [w.tokens for w in trainer.workers]


def test_two_runs_give_the_same_model(shard_folder: Path) -> None:
    config = config_for(shard_folder)
    assert spectra_equal(trained(config).spectra or (), trained(config).spectra or ())


def test_a_resumed_run_gives_the_same_model(shard_folder: Path, tmp_path: Path) -> None:
    config = config_for(shard_folder)
    whole = trained(config)
    checkpoint = tmp_path / "run.distributed.npz"
    first = DistributedTrainer(
        LocalEngine(), config, list_shards(config), checkpoint_path=checkpoint
    )
    first.prepare()
    rounds = first.rounds()
    next(rounds)
    next(rounds)
    first.engine.close()  # the driver stops here (killed after its checkpoint)
    second = DistributedTrainer(
        LocalEngine(), config, list_shards(config), checkpoint_path=checkpoint
    )
    second.prepare()
    assert second.resumed and second.state.round == 2
    for _ in second.rounds():
        pass
    assert second.state.round == whole.state.round
    assert spectra_equal(second.spectra or (), whole.spectra or ())


def test_a_checkpoint_of_other_settings_is_refused(shard_folder: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.distributed.npz"
    config = config_for(shard_folder)
    first = DistributedTrainer(
        LocalEngine(), config, list_shards(config), checkpoint_path=checkpoint
    )
    first.prepare()
    first.run_round()
    other = config.replace(round_tokens=999)
    again = DistributedTrainer(LocalEngine(), other, list_shards(other), checkpoint_path=checkpoint)
    with pytest.raises(Exception, match="other settings or data"):
        again.prepare()


def test_the_local_engine_and_the_cli_never_import_ray(shard_folder: Path) -> None:
    code = (
        "import sys, css_rs.cli.train\n"
        "from css_rs.distributed import DistributedTrainer, LocalEngine, list_shards\n"
        "from css_rs.config import TrainConfig\n"
        f"c = TrainConfig(source='text', path={str(shard_folder)!r}, epochs=1, min_word_freq=2,\n"
        "                 frequency_dim=16, max_frequencies=2)\n"
        "t = DistributedTrainer(LocalEngine(), c, list_shards(c)); t.prepare(); t.run()\n"
        "assert not any(m == 'ray' or m.startswith('ray.') for m in sys.modules), 'ray imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cli_refuses_a_source_that_is_not_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "css_rs", "train", "--engine", "ray", "--source", "synthetic"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "source = 'synthetic' is invalid with --engine ray" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_damaged_checkpoint_is_named_not_a_traceback(shard_folder: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.distributed.npz"
    checkpoint.write_bytes(b"not a checkpoint")
    config = config_for(shard_folder)
    trainer = DistributedTrainer(
        LocalEngine(), config, list_shards(config), checkpoint_path=checkpoint
    )
    with pytest.raises(InputError, match=r"run\.distributed\.npz: not a readable distributed"):
        trainer.prepare()
    assert checkpoint.read_bytes() == b"not a checkpoint"


def test_ray_engine_without_ray_says_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed\n"
        "from css_rs.distributed import RayEngine\n"
        "from css_rs.errors import InputError\n"
        "try:\n"
        "    RayEngine()\n"
        "except InputError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "pip install 'css-rs[ray]'" in out.stdout


def test_a_local_checkpoint_without_distributed_settings_still_resumes() -> None:
    before = {k: v for k, v in TrainConfig().to_dict().items() if k not in DISTRIBUTED_SETTINGS}
    assert config_differences(before, TrainConfig(workers=5, round_tokens=10)) == []
    assert set(DISTRIBUTED_SETTINGS) == set(TrainConfig.sections()["distributed"])
