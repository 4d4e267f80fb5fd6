"""Writers for other tools: word2vec (text and binary), a dense numpy matrix, the sparse
spectra (npz). Every file is written atomically."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from css_rs.errors import InputError
from css_rs.files import atomic_writer, check_output_path
from css_rs.persistence import EMPTY_FREQUENCY

if TYPE_CHECKING:
    from css_rs.model import CSSModel

EXPORT_FORMATS: tuple[str, ...] = ("word2vec", "word2vec-binary", "npy", "npz")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """``files.atomic_writer`` for exports. A path where the file cannot be created at
    all (a directory, a missing permission, a file where a folder should be) raises
    InputError; other failures (a full disk) stay OSError."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: is a directory, not an output file")
    try:
        with atomic_writer(target) as fh:
            yield fh
    except (PermissionError, NotADirectoryError, FileExistsError) as e:
        raise InputError(f"{target}: cannot write there ({e.strerror or e})") from None


def amplitude_matrix(model: CSSModel) -> np.ndarray:
    """``V x D`` float32 amplitudes ``|z|`` (the phase-free, real view of the spectra)."""
    return np.abs(model.to_dense(complex=True)).astype(np.float32)


def check_words_for(fmt: str, words: Sequence[str]) -> None:
    """Raises InputError for a word the format cannot hold: word2vec lines are split on
    whitespace, vocabulary files on line breaks. The tokenizer never makes such words, but a
    model from elsewhere may hold them."""
    line_based = fmt in ("word2vec", "word2vec-binary")
    for i, word in enumerate(words):
        broken = not word or (word.split() != [word] if line_based else word.splitlines() != [word])
        if broken:
            what = "whitespace" if line_based else "a line break"
            raise InputError(
                f"word {word!r} (id {i}) is empty or contains {what}: the {fmt} format cannot "
                "hold it; use --format npz"
            )


def write_word2vec(
    model: CSSModel, out: str | os.PathLike[str], *, binary: bool = False, real: bool = False
) -> Path:
    """word2vec text or binary format (gensim ``KeyedVectors.load_word2vec_format``): vectors
    are ``[re..., im...]`` (2D floats), or amplitudes (D floats) with ``real``. For the
    ``[re, im]`` layout the real cosine equals the complex cosine."""
    fmt = "word2vec-binary" if binary else "word2vec"
    check_words_for(fmt, model.words)
    vectors = amplitude_matrix(model) if real else model.to_dense(complex=False)
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    with atomic_output(out) as fh:
        fh.write(f"{vectors.shape[0]} {vectors.shape[1]}\n".encode())
        if binary:
            for word, row in zip(model.words, vectors):
                fh.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            # %.9g round-trips float32 exactly, so neighbours are the same after reading back.
            line = " ".join(["%.9g"] * vectors.shape[1])
            for word, row in zip(model.words, vectors):
                fh.write(f"{word} {line % tuple(row.tolist())}\n".encode())
    return Path(out)


def vocab_path_for(out: str | os.PathLike[str]) -> Path:
    """``emb.npy`` -> ``emb.vocab.txt`` (one word per line, row order)."""
    return Path(out).with_suffix(".vocab.txt")


def write_npy(model: CSSModel, out: str | os.PathLike[str], *, real: bool = False) -> list[Path]:
    """The dense matrix (complex64 ``V x D``, or float32 amplitudes with ``real``) as ``.npy``
    plus the vocabulary file beside it; returns both paths."""
    check_words_for("npy", model.words)
    matrix = amplitude_matrix(model) if real else model.to_dense(complex=True)
    vocab = vocab_path_for(out)
    if vocab == Path(out):
        raise InputError(f"{out}: the matrix and its vocabulary file would share this name")
    with atomic_output(out) as fh:
        np.save(fh, matrix, allow_pickle=False)
    with atomic_output(vocab) as fh:
        fh.write("".join(f"{w}\n" for w in model.words).encode("utf-8"))
    return [Path(out), vocab]


def write_npz(model: CSSModel, out: str | os.PathLike[str]) -> Path:
    """The sparse spectra in CSR layout: ``indptr`` (V+1), ``frequencies`` (the column indices),
    ``amplitudes``, ``phases``, ``words``, ``counts``, ``frequency_dim``, ``max_frequencies``.
    ``scipy.sparse.csr_matrix((amplitudes * exp(1j * phases), frequencies, indptr))`` rebuilds
    the complex matrix; no pickles are needed to read it."""
    freq, amp, phase = model.slot_arrays()
    active = freq != EMPTY_FREQUENCY  # slots are sorted by frequency, empty ones last
    arrays = {
        "indptr": np.concatenate([[0], np.cumsum(active.sum(axis=1))]).astype(np.int64),
        "frequencies": freq[active].astype(np.uint16),
        "amplitudes": amp[active].astype(np.float32),
        "phases": phase[active].astype(np.float32),
        "words": np.array(model.words, dtype=str),
        "counts": model.counts,
        "frequency_dim": np.int64(model.frequency_dim),
        "max_frequencies": np.int64(model.max_frequencies),
    }
    with atomic_output(out) as fh:
        np.savez_compressed(fh, **arrays)
    return Path(out)


def export(
    model: CSSModel, out: str | os.PathLike[str], fmt: str, *, real: bool = False
) -> list[Path]:
    """Writes ``model`` to ``out`` in ``fmt`` (one of EXPORT_FORMATS); returns the files written."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    if fmt == "npz" and real:
        raise InputError("--real does not apply to npz: it stores amplitudes and phases")
    outputs = [Path(out), vocab_path_for(out)] if fmt == "npy" else [Path(out)]
    for path in outputs:  # before writing either file of a pair
        check_output_path(path)
    if fmt == "npz":
        return [write_npz(model, out)]
    if fmt == "npy":
        return write_npy(model, out, real=real)
    return [write_word2vec(model, out, binary=fmt == "word2vec-binary", real=real)]
