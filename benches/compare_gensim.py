"""css-rs against gensim Word2Vec, side by side in one run (ALGORITHM.md, issues 3 and 12).

    python benches/compare_gensim.py [--seeds 3] [--threads 2] [--study] [--quick]

Corpus: ``../shared/data/gcide.txt.gz`` tokenized once by css-rs's tokenizer for every system;
min_count 5, window 3, 5 negatives, 5 epochs, ``--threads`` workers. Each system trains in its
own subprocess so that peak RSS is its own. Prints a markdown table: training tokens/s
(corpus tokens x epochs / seconds of training alone, for every system: vocabularies are
built before the clock starts), ratio to gensim skip-gram 100 at its defaults and
to gensim skip-gram 100 with the same subsampling threshold, peak RSS of the process, model
size on disk, WordSim-353 Spearman (mean over seeds, with min and max), and how css-rs's
entries spread over the frequencies (effective number of frequencies, largest share of the
vocabulary on one frequency, frequencies on more than 15% of it; means over seeds). The
first seed of every row is also judged by ``interpretability.py``: DistRatio of its
frequencies (gensim: its dimensions) against a PPMI + SVD reference, and sense discovery
(ambiguous words with both senses found, controls split). css-rs subsamples with ``sample``
1e-4 by default, gensim with 1e-3, so gensim runs with both. ``--study`` adds the study of
css-rs's defaults (one setting changed at a time). Needs the ``bench`` extra (gensim,
psutil); skips if the data is absent.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from css_rs._core import kernels

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPUS = DATA / "gcide.txt.gz"
PAIRS = DATA / "wordsim353.tsv"
COMMON = {"min_count": 5, "window": 3, "negative": 5, "epochs": 5}
GENSIM_SAMPLE = 1e-3  # gensim's default
CSS_SAMPLE = 1e-4  # css-rs's default

# Refinement pruning before relative pruning (ALGORITHM.md's: amplitudes <= 1e-4, every 1000
# updates of a word).
ABSOLUTE_PRUNING = {"refine_prune_ratio": 0.0, "refine_prune_every": 1000}
# The defaults of the sixth session: absolute pruning, exploration 0.2 (ALGORITHM.md's).
SIXTH_SESSION = {**ABSOLUTE_PRUNING, "exploration_fraction": 0.2}

# The guide's original update rule, expressed in css-rs settings: hinge loss with unit
# normalisation, lr 0.03 with step decay, L1 0.003, uniform negatives, no context updates,
# supports frozen at their random start, no subsampling.
GUIDE = {
    "loss": "hinge",
    "normalize": "l2",
    "learning_rate": 0.03,
    "min_lr": 0.0,
    "lr_schedule": "step",
    "sparsity_penalty": 0.003,
    "negative_distribution": "uniform",
    "update_context": False,
    "exploration_fraction": 0.0,
    "sample": 0.0,
    **ABSOLUTE_PRUNING,
}

# The selection rule before usage balancing (plain top-K by magnitude, no score bias).
PLAIN_TOP_K = {"balance_gamma": 0.0, "score_bias": 0.0}
# css-rs's defaults before usage balancing: K = 8, lr 0.3, plain top-K (and absolute pruning).
PREVIOUS_DEFAULTS = {**PLAIN_TOP_K, **SIXTH_SESSION, "max_frequencies": 8, "learning_rate": 0.3}
K8_BALANCED = {"max_frequencies": 8, "learning_rate": 0.3}

STUDY: dict[str, dict[str, Any]] = {
    "plain top-K selection, no score bias": PLAIN_TOP_K,
    "plain top-K selection (score_bias 2)": {"balance_gamma": 0.0},
    "balance_gamma 2": {"balance_gamma": 2.0},
    "balance_gamma 4": {"balance_gamma": 4.0},
    "score_bias 0": {"score_bias": 0.0},
    "score_bias 4": {"score_bias": 4.0},
    "K=8, lr 0.3, balance_gamma 4": {**K8_BALANCED, "balance_gamma": 4.0},
    "K=32, lr 0.15": {"max_frequencies": 32, "learning_rate": 0.15},
    "sample 1e-3 (ALGORITHM.md's and word2vec's)": {"sample": 1e-3},
    "no context updates": {"update_context": False},
    "no phases": {"use_phases": False},
    "absolute pruning only": ABSOLUTE_PRUNING,
    "exploration_fraction 0.2 (ALGORITHM.md's)": {"exploration_fraction": 0.2},
    "refine_prune_ratio 0.05": {"refine_prune_ratio": 0.05},
    "refine_prune_ratio 0.2": {"refine_prune_ratio": 0.2},
}


def load_texts() -> list[str]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_css(spec: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    import css_rs

    texts = load_texts()
    vocab = css_rs.Vocabulary.from_texts(texts, min_count=COMMON["min_count"])
    ids, offsets = vocab.encode_batch(texts)
    del texts
    settings = {
        "window_size": COMMON["window"],
        "negative_count": COMMON["negative"],
        "epochs": COMMON["epochs"],
        "threads": spec["threads"],
        "seed": spec["seed"],
        **spec["settings"],  # a variant may override the common settings
    }
    config = css_rs.TrainConfig(**settings)
    start = time.perf_counter()
    model = css_rs.train((ids, offsets), vocab, config)
    seconds = time.perf_counter() - start
    path = out_dir / f"css-{os.getpid()}.json"
    model.save(path)
    usage = model.usage_stats()
    result = {
        "tokens_per_second": len(ids) * config.epochs / seconds,
        "spearman": model.evaluate_pairs(PAIRS).spearman,
        "size_mb": path.stat().st_size / 1e6,
        "avg_active": model.avg_active(),
        "peak_rss_mb": peak_rss_mb(),  # before the interpretability report loads its reference
        "effective": usage.effective,
        "largest_share": usage.largest_share,
        "crowded": usage.crowded,
    }
    if spec.get("interpret"):
        interpretability = import_interpretability()
        report = interpretability.css_report(model, interpretability.build_reference())
        result["interpretability"] = {k: report[k] for k in INTERPRETABILITY_KEYS}
    return result


def import_interpretability() -> Any:
    """The sibling script (benches/ is no package, but is on sys.path when a script in it
    runs), imported only once the peak RSS is read: it loads scipy and the reference."""
    import interpretability

    return interpretability


# What the table shows of interpretability.css_report / gensim_report.
INTERPRETABILITY_KEYS = (
    "dist_ratio",
    "dist_ratio_median",
    "senses_found",
    "chance_found",
    "ambiguous",
    "controls_split",
    "controls",
)


def run_gensim(spec: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    from gensim.models import Word2Vec

    import css_rs

    sentences = css_rs.Tokenizer().tokenize_batch(load_texts())
    tokens = sum(map(len, sentences))
    model = Word2Vec(
        vector_size=spec["dims"],
        sg=1,
        window=COMMON["window"],
        negative=COMMON["negative"],
        min_count=COMMON["min_count"],
        epochs=COMMON["epochs"],
        workers=spec["threads"],
        seed=spec["seed"],
        sample=spec["sample"],
    )
    # Timed like css-rs: training alone, with the vocabulary already built (css-rs builds and
    # encodes it before `train`; building gensim's takes ~0.8 s here, 3-4% of its run).
    model.build_vocab(sentences)
    start = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
    seconds = time.perf_counter() - start
    path = out_dir / f"gensim-{os.getpid()}.bin"
    model.wv.save_word2vec_format(str(path), binary=True)
    spearman = float(model.wv.evaluate_word_pairs(str(PAIRS))[1].statistic)
    result = {
        "tokens_per_second": tokens * COMMON["epochs"] / seconds,
        "spearman": spearman,
        "size_mb": path.stat().st_size / 1e6,
        "avg_active": float("nan"),
        "peak_rss_mb": peak_rss_mb(),  # before the interpretability report loads its reference
    }
    if spec.get("interpret"):
        interpretability = import_interpretability()
        report = interpretability.gensim_report(
            model.wv.vectors,
            list(model.wv.index_to_key),
            interpretability.build_reference(),
            spearman,
        )
        result["interpretability"] = {k: report.get(k) for k in INTERPRETABILITY_KEYS}
    return result


def worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    with tempfile.TemporaryDirectory() as tmp:
        runner = run_gensim if spec["system"] == "gensim" else run_css
        print(json.dumps(runner(spec, Path(tmp))))


def run(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, spec: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Runs ``spec`` once per seed; the first seed's model is also judged for interpretability."""
    results = [run({**spec, "seed": s, "interpret": i == 0}) for i, s in enumerate(seeds)]
    ws = [r["spearman"] for r in results]
    row = {
        "name": name,
        "tokens_per_second": statistics.mean(r["tokens_per_second"] for r in results),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "size_mb": results[0]["size_mb"],
        "ws_mean": statistics.mean(ws),
        "ws_min": min(ws),
        "ws_max": max(ws),
        "avg_active": statistics.mean(r["avg_active"] for r in results),
        "effective": mean_of(results, "effective"),
        "largest_share": mean_of(results, "largest_share"),
        "crowded": mean_of(results, "crowded"),
        "interpretability": results[0].get("interpretability") or {},
        "seeds": len(seeds),
        "system": spec["system"],
        "dims": spec.get("dims"),
        "sample": spec["sample"] if spec["system"] == "gensim" else row_sample(spec),
    }
    print(
        f"  done: {name}: {row['tokens_per_second'] / 1e6:.2f} M tok/s, WS353 {row['ws_mean']:.3f}",
        file=sys.stderr,
        flush=True,
    )
    return row


def mean_of(results: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in results if key in r]
    return statistics.mean(values) if values else float("nan")


def row_sample(spec: dict[str, Any]) -> float:
    return float(spec["settings"].get("sample", CSS_SAMPLE))


def table(rows: list[dict[str, Any]], gensim: list[dict[str, Any]]) -> str:
    """The rows, with speed ratios to gensim skip-gram 100 at its defaults (``gensim[0]``) and
    to the gensim skip-gram 100 row with the same subsampling threshold, if there is one."""
    head = (
        "| system | tokens/s | vs gensim sg-100 | vs gensim sg-100, same `sample` | peak RSS | "
        "model on disk | WordSim-353 (mean [min, max]) | effective freq. | largest share | "
        "freq. on >15% | DistRatio (median) | senses found (chance) | controls split |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    baseline = gensim[0]["tokens_per_second"]
    same = {g["sample"]: g["tokens_per_second"] for g in gensim if g["dims"] == 100}
    lines = [head]
    for r in rows:
        matched = same.get(r["sample"])
        ratio = "—" if matched is None else f"{r['tokens_per_second'] / matched:.1f}x"
        ws = f"{r['ws_mean']:.3f}"
        if r["seeds"] > 1:
            ws += f" [{r['ws_min']:.3f}, {r['ws_max']:.3f}] ({r['seeds']} seeds)"
        lines.append(
            f"| {r['name']} | {r['tokens_per_second'] / 1e6:.2f} M | "
            f"{r['tokens_per_second'] / baseline:.1f}x | {ratio} | {r['peak_rss_mb']:.0f} MB | "
            f"{r['size_mb']:.1f} MB | {ws} | {spread_cells(r)} | {interpretability_cells(r)} |"
        )
    return "\n".join(lines)


def spread_cells(r: dict[str, Any]) -> str:
    if r["effective"] != r["effective"]:  # NaN: a gensim row
        return "— | — | —"
    return f"{r['effective']:.1f} | {r['largest_share']:.0%} | {r['crowded']:.1f}"


def interpretability_cells(r: dict[str, Any]) -> str:
    i = r["interpretability"]
    if not i:
        return "— | — | —"
    ratio = f"{i['dist_ratio']:.2f} ({i['dist_ratio_median']:.2f})"
    if i.get("senses_found") is None:
        return f"{ratio} | — | —"
    found = f"{i['senses_found']}/{i['ambiguous']} ({i['chance_found']:.1f})"
    return f"{ratio} | {found} | {i['controls_split']}/{i['controls']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--study", action="store_true", help="also run the study of defaults")
    parser.add_argument("--quick", action="store_true", help="one seed, no gensim 16-dim")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    if not (CORPUS.exists() and PAIRS.exists()):
        print(f"skipped: {CORPUS} or {PAIRS} is absent")
        return 0
    seeds = [1] if args.quick else list(range(1, args.seeds + 1))
    base = {"threads": args.threads}
    css = {**base, "system": "css"}
    gensim = {**base, "system": "gensim"}
    rows = [
        measure(
            "gensim skip-gram, 100 dims (its default `sample` 1e-3)",
            {**gensim, "dims": 100, "sample": GENSIM_SAMPLE},
            seeds,
        ),
        measure(
            "gensim skip-gram, 100 dims, `sample` 1e-4",
            {**gensim, "dims": 100, "sample": CSS_SAMPLE},
            seeds,
        ),
    ]
    if not args.quick:
        rows.append(
            measure(
                "gensim skip-gram, 16 dims, `sample` 1e-4",
                {**gensim, "dims": 16, "sample": CSS_SAMPLE},
                [1],
            )
        )
    rows += [
        measure("css-rs defaults (K=16, balanced)", {**css, "settings": {}}, seeds),
        measure(
            "css-rs sixth session's defaults (no relative pruning, exploration 0.2)",
            {**css, "settings": SIXTH_SESSION},
            seeds,
        ),
        measure("css-rs K=8, lr 0.3, balanced", {**css, "settings": K8_BALANCED}, seeds),
        measure(
            "css-rs previous defaults (K=8, lr 0.3, plain top-K)",
            {**css, "settings": PREVIOUS_DEFAULTS},
            seeds,
        ),
        measure("css-rs, the guide's original settings", {**css, "settings": GUIDE}, [1]),
    ]
    gensim_rows = [r for r in rows if r["system"] == "gensim"]
    header = (
        f"corpus {CORPUS.name}, {COMMON}, threads={args.threads}, "
        f"css-rs training kernels: {kernels()}"
    )
    report = f"{header}\n\n{table(rows, gensim_rows)}\n"
    if args.study:
        defaults = next(r for r in rows if r["name"].startswith("css-rs defaults"))
        study = [{**defaults, "name": "none (defaults)"}]
        study += [measure(name, {**css, "settings": s}, seeds) for name, s in STUDY.items()]
        study_table = table(study, gensim_rows)
        report += f"\nStudy of the defaults (one change at a time):\n\n{study_table}\n"
    print(f"\n{report}")
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
