"""``css-rs train --engine ray``: a distributed run with the same outputs as a local one (the
model file and its metadata, a progress line, Ctrl+C exit 130, resume by running again).

The driver checkpoints after every round to ``<checkpoint_path>`` with the suffix
``.distributed.npz``; ``css-rs train`` run again with the same settings continues from there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import orjson

import css_rs
from css_rs.checkpoint import exclusive_lock, remove_temporaries
from css_rs.config import ResolvedConfig, TrainConfig
from css_rs.distributed.driver import DistributedTrainer, RoundProgress
from css_rs.distributed.engines import make_engine
from css_rs.distributed.shards import DISTRIBUTED_SOURCES, list_shards
from css_rs.errors import InputError
from css_rs.files import check_output_path, metadata_path, publish_model, utc_timestamp
from css_rs.redaction import redact_object
from css_rs.reporter import Reporter, format_count, format_rate, format_seconds
from css_rs.run_report import describe_source
from css_rs.test_hooks import TestHooks


def distributed_checkpoint_path(config: TrainConfig) -> Path:
    return Path(config.checkpoint_path).with_suffix(".distributed.npz")


def _round_line(p: RoundProgress) -> str:
    eta = "?" if p.eta_seconds == float("inf") else format_seconds(p.eta_seconds)
    return (
        f"round {p.round} · loss {p.loss:.4f} · {format_rate(p.tokens_per_second)} tokens/s "
        f"(cluster) · ETA {eta}"
    )


class DistributedRun:
    """One ``css-rs train --engine ray`` invocation."""

    def __init__(
        self,
        resolved: ResolvedConfig,
        reporter: Reporter,
        *,
        fresh: bool = False,
        resume_command: str = "css-rs train",
        hooks: Optional[TestHooks] = None,
    ) -> None:
        self.config = resolved.config
        self.resolved = resolved
        self.out = reporter
        self.fresh = fresh
        self.resume_command = resume_command
        self.hooks = hooks or TestHooks()
        self.checkpoint = distributed_checkpoint_path(self.config)

    def run(self) -> Path:
        cfg = self.config
        if cfg.source not in DISTRIBUTED_SOURCES:
            raise InputError(
                f"source = {cfg.source!r} is invalid with --engine {cfg.engine}: a distributed "
                f"run reads files (one of {', '.join(DISTRIBUTED_SOURCES)})"
            )
        model_path = Path(cfg.model_path)
        for path in (model_path, metadata_path(model_path), self.checkpoint):
            check_output_path(path)
        if self.fresh or not cfg.resume_from_checkpoint:
            self.checkpoint.unlink(missing_ok=True)
        shards = list_shards(cfg)
        busy = "is writing this model; wait for it to finish, or give this run another --model-path"
        with exclusive_lock(model_path, busy):
            remove_temporaries(model_path)
            remove_temporaries(metadata_path(model_path))
            return self._run(shards)

    def _run(self, shards: list[Any]) -> Path:
        cfg = self.config
        self.out.banner("COMPRESSIVE SEMANTIC SPECTROSCOPY - DISTRIBUTED TRAINING")
        self.out.settings(
            "Configuration",
            {
                "Engine": f"{cfg.engine} ({cfg.ray_address})",
                "Workers": f"{cfg.workers} x {cfg.threads_per_worker} threads",
                "Shards": str(len(shards)),
                "Round": f"{format_count(cfg.round_tokens)} tokens per worker",
                "Epochs": str(cfg.epochs),
            },
        )
        engine = make_engine(cfg)
        try:
            trainer = DistributedTrainer(engine, cfg, shards, checkpoint_path=self.checkpoint)
            trainer.prepare()
            if trainer.resumed:
                self.out.line(f"Resuming from {self.checkpoint} at round {trainer.state.round}")
            tokens = sum(w.tokens for w in trainer.workers)
            self.out.line(
                f"Vocabulary: {format_count(len(trainer.vocab or []))} words; "
                f"{format_count(tokens)} tokens on {len(trainer.workers)} workers"
            )
            try:
                self._train(trainer)
            except KeyboardInterrupt:
                self.out.line()
                self.out.line(f"Interrupted. Resume with: {self.resume_command}")
                raise
            return self._save(trainer)
        finally:
            engine.close()

    def _train(self, trainer: DistributedTrainer) -> None:
        with self.out.task("Training", total=None) as bar:
            for progress in trainer.rounds():
                bar.update(progress.tokens_done, _round_line(progress), total=progress.tokens_total)
                self.hooks.reached("round")

    def _stats(self, trainer: DistributedTrainer) -> dict[str, Any]:
        """The figures a local run's metadata has under ``stats`` (``css-rs info`` reads them)."""
        s = trainer.state
        return {
            "documents": sum(w.documents for w in trainer.workers),
            "tokens": trainer.counted.get("tokens"),
            "vocabulary_size": len(trainer.vocab or []),
            "corpus_tokens": sum(w.tokens for w in trainer.workers),
            "elapsed": s.elapsed + trainer.vocabulary_seconds,
            "train_seconds": s.elapsed,
            "training_tokens_per_second": s.cluster_tokens_done / max(s.elapsed, 1e-9),
            "epochs": trainer.epoch_stats(),
        }

    def _save(self, trainer: DistributedTrainer) -> Path:
        cfg = self.config
        model = trainer.model()
        model_path = Path(cfg.model_path)
        meta_path = metadata_path(model_path)
        data = model.to_bytes()
        metadata: dict[str, Any] = {
            "timestamp": utc_timestamp(),
            "css_rs_version": css_rs.__version__,
            "model_path": str(model_path),
            "config": cfg.to_dict(),
            "config_origins": self.resolved.origins,
            "stats": self._stats(trainer),
            "dataset_progress": {"source": cfg.source, "description": describe_source(cfg)},
            "distributed": trainer.stats(),
            "model_sha256": hashlib.sha256(data).hexdigest(),
        }
        meta_bytes = orjson.dumps(redact_object(metadata), option=orjson.OPT_INDENT_2)
        backup = publish_model(
            model_path, data, (meta_path, meta_bytes), keep_backups=cfg.keep_backups
        )
        if backup is not None:
            self.out.ok(f"Backup created: {backup}")
        self.out.ok(f"Model saved: {model_path} ({len(data) / 1e6:.2f} MB)")
        self.out.ok(f"Metadata saved: {meta_path}")
        trainer.delete_checkpoint()
        return model_path
