"""What a training run says and records: the guide's banner and configuration, the resume
note, the closing summary (with the planted words' neighbours on the synthetic corpus), and
the metadata file written beside the model. ``pipeline.TrainingRun`` decides when; this module
decides what, through the terminal ``Reporter``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import css_rs
from css_rs.checkpoint import PHASE_STREAMING
from css_rs.config import ResolvedConfig, TrainConfig
from css_rs.files import utc_timestamp
from css_rs.reporter import Reporter, format_count, format_seconds

if TYPE_CHECKING:
    from css_rs.checkpoint import Checkpoint
    from css_rs.pipeline import RunResult, StreamStats, TrainStats

# Words of the synthetic corpus whose neighbours show at a glance that training worked.
SYNTHETIC_PROBES = ("cat", "guitar", "money", "rain", "bank", "bat")


def describe_source(cfg: TrainConfig) -> str:
    if cfg.source == "synthetic":
        return (
            f"synthetic corpus ({format_count(cfg.synthetic_documents)} documents, seed {cfg.seed})"
        )
    if cfg.source in ("hf", "hf-parquet"):
        return f"{cfg.dataset} ({cfg.dataset_config}, {cfg.split}) via {cfg.source}"
    return f"{cfg.source} {cfg.path}"


def announce(out: Reporter, resolved: ResolvedConfig) -> None:
    cfg = resolved.config
    out.banner("COMPRESSIVE SEMANTIC SPECTROSCOPY - LARGE SCALE TRAINING")
    out.line()
    out.settings(
        "Configuration",
        {
            "Source": describe_source(cfg),
            "Max batches": "unlimited"
            if cfg.batch_limit() is None
            else format_count(cfg.batch_limit() or 0),
            "Batch size": str(cfg.batch_size),
            "Frequency dim": str(cfg.frequency_dim),
            "Max frequencies": str(cfg.max_frequencies),
            "Vocabulary size": f"up to {format_count(cfg.max_vocab_size)}",
            "Epochs": str(cfg.epochs),
        },
    )
    if resolved.config_file:
        out.line(f"  Config file: {resolved.config_file}")


def announce_resume(
    out: Reporter, checkpoint: Checkpoint, stream: StreamStats, differences: list[str]
) -> None:
    out.banner("RESUMING FROM CHECKPOINT", out.resume_char)
    out.line(f"Checkpoint from: {checkpoint.timestamp}")
    phase = checkpoint.phase
    if phase == PHASE_STREAMING and stream.complete:
        phase = "streaming complete"
    out.line(f"Phase: {phase}")
    out.line(f"Batches processed: {format_count(stream.batches)}")
    out.line(f"Documents: {format_count(stream.documents)}")
    out.line(f"Tokens: {format_count(stream.tokens)}")
    for line in differences:
        out.line(f"Setting changed (--force): {line}")
    out.line(out.resume_char * 70)
    out.line()


def summary(out: Reporter, result: RunResult, source: str) -> None:
    out.banner("TRAINING COMPLETE!")
    out.line()
    out.line(f"Total documents: {format_count(result.stream.documents)}")
    out.line(f"Total tokens: {format_count(result.stream.tokens)}")
    out.line(f"Vocabulary size: {format_count(result.vocabulary_size)}")
    out.line(
        f"Training time: {format_seconds(result.elapsed)} "
        f"(streaming {format_seconds(result.stream.seconds)}, "
        f"training {format_seconds(result.train.seconds)})"
    )
    out.line()
    out.line(f"Model saved to: {result.model_path}")
    if source == "synthetic":
        show_neighbours(out, result.model)
    out.line()
    out.line(out.heavy * 70)


def show_neighbours(out: Reporter, model: Any) -> None:
    out.line()
    out.line("Nearest neighbours of planted words (synthetic corpus):")
    for word in SYNTHETIC_PROBES:
        if word not in model:
            continue
        near = ", ".join(f"{w} {c:.2f}" for w, c in model.similar(word, k=5))
        out.line(f"  {word:<8} {near}")


def metadata(
    resolved: ResolvedConfig, s: StreamStats, t: TrainStats, result: RunResult
) -> dict[str, Any]:
    """The metadata file's contents: settings and where each came from, figures of every phase,
    and where the source stopped."""
    config = resolved.config
    seconds = s.seconds if s.seconds > 0 else float("inf")
    return {
        "timestamp": utc_timestamp(),
        "css_rs_version": css_rs.__version__,
        "model_path": str(result.model_path),
        "config": config.to_dict(),
        "config_origins": resolved.origins,
        "stats": {
            "documents": s.documents,
            "tokens": s.tokens,
            "batches": s.batches,
            "skipped": s.skipped,
            "vocabulary_size": result.vocabulary_size,
            "corpus_documents": t.corpus_documents,
            "corpus_tokens": t.corpus_tokens,
            "cache_bytes": t.cache_bytes,
            "distinct_words": t.distinct_words,
            "elapsed": result.elapsed,
            "stream_seconds": s.seconds,
            "convert_seconds": t.convert_seconds,
            "train_seconds": t.seconds,
            "docs_per_second": s.documents / seconds,
            "tokens_per_second": s.tokens / seconds,
            "training_tokens_per_second": t.tokens_per_second,
            "epochs": t.epoch_stats,
        },
        "dataset_progress": {
            "source": config.source,
            "description": describe_source(config),
            "documents": s.documents,
            "total_documents": s.total_documents,
            "percent": (100.0 * s.documents / s.total_documents) if s.total_documents else None,
            "position": s.position,
        },
    }
