"""Memory and speed of ``css-rs train`` per phase, on N copies of the gcide corpus.

    python benches/bench_pipeline.py                 # N = 2 and N = 10
    python benches/bench_pipeline.py --copies 2      # one size only
    python benches/bench_pipeline.py --epochs 5 --threads 2

Each run writes N copies of ``../shared/data/gcide.txt.gz`` (unpacked, ~4.2 M tokens each) into
a temporary folder, trains with ``--source text --path FOLDER`` in a subprocess, and samples the
process's memory from ``/proc`` ten times a second, attributing each sample to the phase whose
banner was printed last. Reported per phase: peak RSS, peak anonymous RSS (what the process
really allocates; the rest is memory-mapped corpus pages, reclaimable page cache), seconds and
tokens/s. The whole-run peak (``VmHWM``) must stay under 1 GB and must not grow with N: the
id cache, the token ids and the offsets live on disk, only the vocabulary and the
spectra are in memory. Exit code 1 when either promise is broken.

Skips (exit code 0) when the data file is absent or ``/proc`` is not available.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gcide.txt.gz"
LIMIT_BYTES = 1 << 30
# Peak at N=10 may exceed the N=2 peak by at most this much (allocator noise, bigger pages of
# the memory-mapped corpus) before it counts as "growing with N".
GROWTH_ALLOWANCE = 1.25
PHASES = ("setup", "streaming", "converting", "training", "saving")


@dataclass
class PhaseFigures:
    peak_rss: int = 0
    peak_anon: int = 0
    started: Optional[float] = None
    ended: Optional[float] = None


@dataclass
class RunFigures:
    copies: int
    phases: dict[str, PhaseFigures] = field(default_factory=dict)
    vm_hwm: int = 0
    metadata: dict = field(default_factory=dict)
    seconds: float = 0.0


def read_status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, VmHWM of ``pid`` in bytes (empty once the process is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def write_corpus(folder: Path, copies: int) -> None:
    folder.mkdir(parents=True)
    first = folder / "gcide-00.txt"
    with gzip.open(DATA, "rb") as src, open(first, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    for i in range(1, copies):
        shutil.copyfile(first, folder / f"gcide-{i:02d}.txt")


def phase_of(line: str) -> Optional[str]:
    if line.startswith("PHASE 1:"):
        return "streaming"
    if line.startswith("PHASE 2:"):
        return "converting"
    if line.startswith("PHASE 3:"):
        return "training"
    if line.startswith("PHASE 4:"):
        return "saving"
    return None


def run_once(copies: int, epochs: int, threads: int, work: Path) -> RunFigures:
    corpus = work / f"corpus-{copies}"
    print(f"\n== N = {copies}: writing {copies} copies of {DATA.name} ...", flush=True)
    write_corpus(corpus, copies)
    figures = RunFigures(copies, {p: PhaseFigures() for p in PHASES})
    command = [
        sys.executable, "-m", "css_rs", "train",
        "--source", "text", "--path", str(corpus),
        "--max-batches", "none", "--batch-size", "100",
        "--epochs", str(epochs), "--threads", str(threads),
        "--save-checkpoint-every", "2000", "--checkpoint-every-seconds", "120",
        "--checkpoint-path", str(work / f"ckpt-{copies}" / "training_checkpoint.json"),
        "--model-path", str(work / f"model-{copies}" / "css_model.json"),
        "--fresh",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    current = {"phase": "setup"}
    figures.phases["setup"].started = started

    def follow_output() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            phase = phase_of(line)
            if phase is not None:
                now = time.monotonic()
                figures.phases[current["phase"]].ended = now
                figures.phases[phase].started = now
                current["phase"] = phase
            if line.startswith(("Streaming:", "Converting:", "Training:", "  Epoch ", "Total")):
                print("   ", line.rstrip(), flush=True)

    reader = threading.Thread(target=follow_output, daemon=True)
    reader.start()
    while proc.poll() is None:
        status = read_status(proc.pid)
        if status:
            phase = figures.phases[current["phase"]]
            phase.peak_rss = max(phase.peak_rss, status.get("VmRSS", 0))
            phase.peak_anon = max(phase.peak_anon, status.get("RssAnon", 0))
            figures.vm_hwm = max(figures.vm_hwm, status.get("VmHWM", 0))
        time.sleep(0.1)
    reader.join()
    figures.phases[current["phase"]].ended = time.monotonic()
    figures.seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"css-rs train failed with exit code {proc.returncode}")
    meta_path = work / f"model-{copies}" / "css_model.metadata.json"
    figures.metadata = json.loads(meta_path.read_text())
    shutil.rmtree(corpus)
    return figures


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def report(figures: RunFigures) -> None:
    stats = figures.metadata["stats"]
    epochs = len(stats["epochs"])
    tokens = {
        "streaming": stats["tokens"],
        "converting": stats["tokens"],
        "training": stats["corpus_tokens"] * epochs,
    }
    seconds = {
        "streaming": stats["stream_seconds"],
        "converting": stats["convert_seconds"],
        "training": stats["train_seconds"],
    }
    print(
        f"\nN = {figures.copies}: {stats['documents']:,} documents, {stats['tokens']:,} tokens, "
        f"vocabulary {stats['vocabulary_size']:,}, {figures.seconds:.1f} s in all"
    )
    print(f"  {'phase':<11} {'peak RSS':>10} {'peak anon':>10} {'seconds':>9} {'tokens/s':>12}")
    for name in PHASES:
        phase = figures.phases[name]
        if phase.started is None:
            continue
        wall = (phase.ended or phase.started) - phase.started
        secs = seconds.get(name, wall)
        rate = f"{tokens[name] / secs:,.0f}" if name in tokens and secs > 0 else "-"
        print(
            f"  {name:<11} {mb(phase.peak_rss):>10} {mb(phase.peak_anon):>10} {secs:>9.1f} "
            f"{rate:>12}"
        )
    print(f"  whole run peak RSS (VmHWM): {mb(figures.vm_hwm)}")


def check(results: list[RunFigures]) -> list[str]:
    problems = [
        f"N = {r.copies}: peak RSS {mb(r.vm_hwm)} is over 1 GB"
        for r in results
        if r.vm_hwm > LIMIT_BYTES
    ]
    ordered = sorted(results, key=lambda r: r.copies)
    if len(ordered) >= 2 and ordered[-1].vm_hwm > GROWTH_ALLOWANCE * ordered[0].vm_hwm:
        problems.append(
            f"peak RSS grows with N: {mb(ordered[0].vm_hwm)} at N = {ordered[0].copies}, "
            f"{mb(ordered[-1].vm_hwm)} at N = {ordered[-1].copies}"
        )
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[2, 10], help="values of N")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    parser.add_argument("--threads", type=int, default=0, help="training threads (0: all)")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        print(f"skipped: {DATA} not found (the shared data folder is not beside the checkout)")
        return 0
    if not Path("/proc/self/status").is_file():
        print("skipped: memory is sampled from /proc, which this system lacks")
        return 0
    with tempfile.TemporaryDirectory(prefix="css-rs-bench-") as tmp:
        results = [run_once(n, args.epochs, args.threads, Path(tmp)) for n in args.copies]
    for figures in results:
        report(figures)
    problems = check(results)
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print("\nOK: peak RSS under 1 GB" + (" and flat in N" if len(results) > 1 else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
