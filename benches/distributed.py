"""Distributed training against one process, side by side in one run (issue 16).

    python benches/distributed.py [--seeds 3] [--quick] [--no-ray]

Corpus: ``../shared/data/gcide.txt.gz`` written as 8 text shards (contiguous slices of its
lines); min_count 5, window 3, 5 negatives, 5 epochs, the engine's other defaults. Rows:

- one process, 2 threads (``css_rs.train`` on the whole corpus),
- ``LocalEngine``, 2 workers x 1 thread (``css_rs.distributed``, workers in threads),
- ``RayEngine``, 2 workers x 1 thread, on a local 2-CPU Ray cluster (loopback, no dashboard).

Per row: WordSim-353 Spearman (mean over seeds, min and max), training tokens/s (tokens x
epochs / seconds of training: vocabulary and encoding excluded, rounds' merges and transfers
included), and for the distributed rows the share of a round spent outside the workers'
training (round wall time minus the slowest worker's training time: sending, merging,
scheduling) and the bytes a round moves (spectra sent to each worker + rows sent back). Then
a table of ``round_tokens`` against quality (LocalEngine 2 x 1, first seed). Prints markdown.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPUS = DATA / "gcide.txt.gz"
PAIRS = DATA / "wordsim353.tsv"
SHARDS = 8
COMMON = {"min_word_freq": 5, "window_size": 3, "negative_count": 5, "epochs": 5}


def write_shards(folder: Path) -> None:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for i in range(SHARDS):
        part = lines[i * len(lines) // SHARDS : (i + 1) * len(lines) // SHARDS]
        (folder / f"gcide-{i}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")


def config(folder: Path, seed: int, **changes: Any) -> Any:
    from css_rs.config import TrainConfig

    return TrainConfig(
        source="text",
        path=str(folder),
        max_doc_length=0,
        seed=seed,
        workers=2,
        threads_per_worker=1,
        **COMMON,  # type: ignore[arg-type]
        **changes,
    )


def single_process(folder: Path, seed: int) -> dict[str, Any]:
    import css_rs
    from css_rs.sources import make_source

    cfg = config(folder, seed, threads=2)
    vocab = css_rs.Vocabulary()
    texts: list[str] = []
    with make_source(cfg) as source:
        for batch in source.batches():
            vocab.update(batch)
            texts.extend(batch)
    vocab.build(cfg.min_word_freq, cfg.max_vocab_size)
    ids, offsets = vocab.encode_batch(texts)
    start = time.perf_counter()
    model = css_rs.train((ids, offsets), vocab, cfg)
    seconds = time.perf_counter() - start
    return {
        "spearman": model.evaluate_pairs(PAIRS).spearman,
        "tokens_per_second": len(ids) * cfg.epochs / seconds,
        "words": vocab.words,
    }


def distributed(folder: Path, seed: int, engine: Any, **changes: Any) -> dict[str, Any]:
    from css_rs.distributed import DistributedTrainer, list_shards

    cfg = config(folder, seed, **changes)
    trainer = DistributedTrainer(engine, cfg, list_shards(cfg))
    trainer.prepare()
    try:
        model = trainer.run()
    finally:
        engine.close()
    h = trainer.state.history
    outside = [r.seconds - max(r.train_seconds) for r in h]
    spectra_bytes = sum(int(a.nbytes) for a in trainer.spectra or ())
    return {
        "spearman": model.evaluate_pairs(PAIRS).spearman,
        "tokens_per_second": trainer.state.cluster_tokens_done / trainer.state.elapsed,
        "rounds": len(h),
        "outside_share": sum(outside) / sum(r.seconds for r in h),
        "outside_seconds": statistics.mean(outside),
        "round_seconds": statistics.mean(r.seconds for r in h),
        "merge_seconds": statistics.mean(r.merge_seconds for r in h),
        "bytes_per_round": statistics.mean(
            r.bytes_returned + spectra_bytes * len(r.workers) for r in h
        ),
        "words": trainer.vocab.words if trainer.vocab is not None else [],
    }


def summary(name: str, runs: list[dict[str, Any]], base_rate: float) -> str:
    s = [r["spearman"] for r in runs]
    rate = statistics.mean(r["tokens_per_second"] for r in runs)
    cells = [
        name,
        f"{statistics.mean(s):.3f} ({min(s):.3f}-{max(s):.3f})",
        f"{rate / 1e6:.2f} M",
        f"{rate / base_rate:.2f}x",
    ]
    if "rounds" in runs[0]:
        cells += [
            str(runs[0]["rounds"]),
            f"{statistics.mean(r['round_seconds'] for r in runs):.2f} s",
            f"{100 * statistics.mean(r['outside_share'] for r in runs):.1f}%",
            f"{statistics.mean(r['merge_seconds'] for r in runs) * 1e3:.0f} ms",
            f"{statistics.mean(r['bytes_per_round'] for r in runs) / 1e6:.1f} MB",
        ]
    else:
        cells += ["-"] * 5
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 round sizes")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray row")
    args = parser.parse_args()
    if not CORPUS.exists() or not PAIRS.exists():
        print(f"skipped: {CORPUS} or {PAIRS} is absent")
        return 0
    from css_rs.distributed import LocalEngine, RayEngine

    seeds = list(range(1, 2 if args.quick else args.seeds + 1))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_shards(folder)
        rows: dict[str, list[dict[str, Any]]] = {"single": [], "local": [], "ray": []}
        for seed in seeds:
            rows["single"].append(single_process(folder, seed))
            rows["local"].append(distributed(folder, seed, LocalEngine()))
            print(f"seed {seed}: single and local done", file=sys.stderr, flush=True)
        if not args.no_ray:
            import ray

            os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
            )
            for seed in seeds:
                rows["ray"].append(distributed(folder, seed, RayEngine()))
            ray.shutdown()
        same = all(r["words"] == rows["single"][0]["words"] for v in rows.values() for r in v)
        base = statistics.mean(r["tokens_per_second"] for r in rows["single"])
        print(f"gcide in {SHARDS} shards, seeds {seeds}; vocabularies identical: {same}\n")
        print(
            "| run | WordSim-353 | tokens/s | vs 1 process | rounds | round | outside "
            "training | merge | bytes/round |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        print(summary("one process, 2 threads", rows["single"], base))
        print(summary("LocalEngine, 2 x 1", rows["local"], base))
        if rows["ray"]:
            print(summary("Ray, 2 x 1", rows["ray"], base))
        sizes = [500_000, 2_000_000] if args.quick else [250_000, 500_000, 1_000_000, 2_000_000]
        print("\n| round_tokens (per worker) | rounds | WordSim-353 | tokens/s |")
        print("| --- | --- | --- | --- |")
        for size in sizes:
            r = distributed(folder, seeds[0], LocalEngine(), round_tokens=size)
            print(
                f"| {size:,} | {r['rounds']} | {r['spearman']:.3f} | "
                f"{r['tokens_per_second'] / 1e6:.2f} M |",
                flush=True,
            )
        print("\n" + json.dumps({"kernels": __import__("css_rs")._core.kernels()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
