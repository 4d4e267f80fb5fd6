"""``css-rs info``: a model's shape, sparsity and spread, and the summary of its training from
the metadata file beside it; ``model_info`` gathers what the command prints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import orjson
import typer

from css_rs.analysis import active_histogram
from css_rs.cli import app, handle_errors
from css_rs.cli.command import ModelCommand
from css_rs.cli.output import JSON_OPTION, MODEL_ARGUMENT, bar, emit_json, format_size
from css_rs.files import metadata_path, sha256_of
from css_rs.model import CSSModel, load


@dataclass(frozen=True)
class ModelInfo:
    """What ``css-rs info`` shows: shape, sparsity, and the training summary if present."""

    path: str
    file_size: int
    vocab_size: int
    frequency_dim: int
    max_frequencies: int
    avg_active: float
    active_histogram: list[int]
    frequencies_used: int
    effective_frequencies: float
    largest_share: float
    crowded_frequencies: int
    metadata_path: Optional[str]
    training: Optional[dict[str, Any]]
    metadata_error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def model_info(model: CSSModel, path: str | os.PathLike[str]) -> ModelInfo:
    """Describes ``model`` loaded from ``path``, with the summary of its metadata file (beside
    the model) when there is one; an unreadable metadata file is reported, not fatal."""
    meta = metadata_path(path)
    usage = model.usage_stats()
    training, error = None, None
    if meta.is_file():
        try:
            document = orjson.loads(meta.read_bytes())
            if not isinstance(document, dict):
                raise TypeError("not a JSON object")
            error = _metadata_mismatch(document, path, meta)
            if error is None:
                training = training_summary(document)
        except (orjson.JSONDecodeError, OSError, TypeError, AttributeError, ValueError) as e:
            error = f"{meta}: unreadable ({' '.join(str(e).split())})"
    return ModelInfo(
        path=str(path),
        file_size=Path(path).stat().st_size,
        vocab_size=len(model),
        frequency_dim=model.frequency_dim,
        max_frequencies=model.max_frequencies,
        avg_active=model.avg_active(),
        active_histogram=[int(n) for n in active_histogram(model)],
        frequencies_used=usage.in_use,
        effective_frequencies=usage.effective,
        largest_share=usage.largest_share,
        crowded_frequencies=usage.crowded,
        metadata_path=str(meta) if meta.is_file() else None,
        training=training,
        metadata_error=error,
    )


def _metadata_mismatch(
    document: dict[str, Any], path: str | os.PathLike[str], meta: Path
) -> Optional[str]:
    """Why the metadata beside a model does not describe it (its ``model_sha256`` is another
    file's: a save interrupted between the two renames, a model copied over by hand), or None.
    Metadata of versions that did not record the checksum is taken as it is."""
    recorded = document.get("model_sha256")
    if recorded is None:
        return None
    if not isinstance(recorded, str) or recorded != sha256_of(path):
        return (
            f"{meta} describes another model file (its model_sha256 does not match "
            f"{Path(path).name}); not shown"
        )
    return None


def _figure(value: Any) -> Any:
    """A number from a metadata file, or None (booleans and other types are not figures)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def training_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """The figures of a metadata file worth a glance (missing or malformed ones are None)."""

    def section(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    stats = section(metadata.get("stats"))
    progress = section(metadata.get("dataset_progress"))
    epochs = stats.get("epochs")
    epochs = [e for e in epochs if isinstance(e, dict)] if isinstance(epochs, list) else []
    text = {k: metadata.get(k) for k in ("timestamp", "css_rs_version")}
    source = progress.get("description") or progress.get("source")
    return {
        **{k: v if isinstance(v, str) else None for k, v in text.items()},
        "source": source if isinstance(source, str) else None,
        "documents": _figure(stats.get("documents")),
        "tokens": _figure(stats.get("tokens")),
        "epochs": len(epochs),
        "final_loss": _figure(epochs[-1].get("loss")) if epochs else None,
        "elapsed_seconds": _figure(stats.get("elapsed")),
        "training_tokens_per_second": _figure(stats.get("training_tokens_per_second")),
    }


# --- info ----------------------------------------------------------------------------------
def info(model_path: Path = MODEL_ARGUMENT, as_json: bool = JSON_OPTION) -> None:
    """Vocabulary size, D, K, active frequencies per word, training summary, file size."""
    with handle_errors():
        model = load(model_path)
        facts = model_info(model, model_path)
        if as_json:
            emit_json(facts.to_dict())
            return
        _print_info(facts)


def _print_info(facts: ModelInfo) -> None:
    typer.echo(f"Model        {facts.path} ({format_size(facts.file_size)})")
    typer.echo(f"Vocabulary   {facts.vocab_size:,} words")
    typer.echo(
        f"Spectra      D = {facts.frequency_dim} frequencies, at most "
        f"K = {facts.max_frequencies} active per word"
    )
    typer.echo(
        f"Active       {facts.avg_active:.2f} per word on average; "
        f"{facts.frequencies_used} of {facts.frequency_dim} frequencies in use"
    )
    typer.echo(
        f"Spread       effective number of frequencies {facts.effective_frequencies:.1f} "
        f"of {facts.frequency_dim}; largest share {facts.largest_share:.0%} of the vocabulary; "
        f"{facts.crowded_frequencies} on more than 15%"
    )
    typer.echo("Active frequencies per word:")
    most = max(facts.active_histogram, default=0) or 1
    for n, words in enumerate(facts.active_histogram):
        if words:
            share = 100.0 * words / max(facts.vocab_size, 1)
            typer.echo(f"  {n:>3}  {words:>9,}  {share:5.1f}%  {bar(words / most)}")
    if facts.metadata_error:
        typer.echo(f"Training     {facts.metadata_error}")
    elif facts.training is None:
        typer.echo("Training     no metadata file beside the model")
    else:
        _print_training(facts.training, facts.metadata_path or "")


def _print_training(t: dict[str, Any], source: str) -> None:
    def count(v: Any) -> str:
        return f"{v:,}" if isinstance(v, (int, float)) else "?"

    typer.echo(f"Training     (from {source})")
    typer.echo(f"  trained    {t.get('timestamp') or '?'} with css-rs {t.get('css_rs_version')}")
    typer.echo(f"  source     {t.get('source') or '?'}")
    typer.echo(f"  documents  {count(t.get('documents'))}")
    typer.echo(f"  tokens     {count(t.get('tokens'))}")
    loss = t.get("final_loss")
    loss_text = f" (final loss {loss:.4f})" if isinstance(loss, (int, float)) else ""
    typer.echo(f"  epochs     {t.get('epochs')}{loss_text}")
    elapsed, rate = t.get("elapsed_seconds"), t.get("training_tokens_per_second")
    if isinstance(elapsed, (int, float)):
        rate_text = f", training {rate:,.0f} tokens/s" if isinstance(rate, (int, float)) else ""
        typer.echo(f"  time       {elapsed:.1f} s{rate_text}")


app.command("info", cls=ModelCommand)(info)
