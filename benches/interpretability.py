"""Do a model's frequencies (css-rs) or dimensions (gensim) mean something, and does
``polysemy`` find senses? (issue 12, part 3.)

    python benches/interpretability.py                      # css-rs defaults, gensim 16 and 100
    python benches/interpretability.py MODEL.json [MODEL2.json ...] [--gensim-dims 16 100]
    python benches/interpretability.py --seeds 3            # seeds 1..3 of each trained system

Everything is judged in a *reference embedding* independent of the systems compared: PPMI +
truncated SVD on gcide (Levy, Goldberg & Dagan 2015), tokenized by css-rs's tokenizer, window 3
each side, context counts raised to 0.75, 100 dimensions, rows scaled by sqrt(sigma) and
normalised (10-25 s on two shared cores, cached under ``~/.cache/css-rs-bench/``; WordSim-353
0.555). Judging gensim's
dimensions in gensim's own space would be circular.

Figures:

- *sparsity* of a css-rs model: frequencies in use, the effective number of frequencies (exp of
  the entropy of the frequencies' shares of all (word, frequency) entries; D if usage is even),
  the largest share of the vocabulary on one frequency, frequencies on > 15% of the vocabulary;
- *DistRatio* (word intrusion automated, Sun et al. 2016; SPINE, Subramanian et al. 2018;
  Faruqui et al. 2015): for each dimension, its top-5 words plus intruders (low on it, in the
  top 10% of another); mean intruder-to-top distance over mean distance among the top words.
  1.0: a dimension's top words are no closer to each other than to random words;
- *sense discovery*: for the ambiguous words of ``benches/senses.tsv``, whether the senses that
  css-rs's public API reports include one sense per cue set; for the controls, whether more
  than one sense is reported;
- WordSim-353 Spearman.

Importable by other bench scripts (``import interpretability`` from ``benches/``): the
``css_report`` and ``gensim_report`` functions return JSON-ready dicts. Skips (exit code 0) when
``../shared/data`` is absent. Needs scipy and, for ``--gensim-dims``, gensim (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from scipy.stats import spearmanr

if TYPE_CHECKING:
    from css_rs import CSSModel, Vocabulary

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPUS = DATA / "gcide.txt.gz"
PAIRS = DATA / "wordsim353.tsv"
SENSES = Path(__file__).resolve().parent / "senses.tsv"
CACHE_DIR = Path.home() / ".cache" / "css-rs-bench"
# Bumped whenever the reference's recipe changes, so that stale caches are not reused.
REFERENCE_VERSION = 1

MIN_COUNT = 5  # vocabulary threshold, as every system compared
SCORED_MIN_COUNT = 50  # words rarer than this have noisy vectors in every system
TOP_WORDS = 5  # a dimension's top words (Sun et al. 2016)
INTRUDERS = 5  # intruders drawn per dimension; the ratio averages over them
TOP_FRACTION = 0.1  # an intruder must be in this top fraction of another dimension
# A reported sense is assigned to a cue set only if its neighbours are closer to it than to the
# other set by this much mean cosine in the reference (a cue word held out of its own set is
# closer to it by 0.1-0.4, median 0.34) and closer to it than random words are: above the
# CHANCE_QUANTILE of CHANCE_DRAWS random sets of frequent words. With 0.99 a word with 8 peaks
# of unrelated words has both senses "found" about once in 170 (1 - 0.99^8, squared); peaks of
# real but unrelated clusters (animals for "bass") hit more often, hence the chance column.
ASSIGN_MARGIN = 0.03
CHANCE_QUANTILE = 0.99
CHANCE_DRAWS = 2000
CHANCE_SHIFTS = (1, 2, 3, 4, 5)  # rotations of the word list for the chance level of discovery
SENSE_WORDS = 10  # neighbour words of a reported sense compared with the cue sets

W2V = {"window": 3, "negative": 5, "min_count": MIN_COUNT, "epochs": 5, "sample": 1e-4}


# --- the reference embedding: PPMI + truncated SVD -----------------------------------------
@dataclass(frozen=True)
class Reference:
    """Unit-norm word vectors of the reference embedding, with the corpus counts."""

    words: list[str]
    counts: np.ndarray  # corpus count of each word (int64)
    vectors: np.ndarray  # V x dims, unit rows (float32)
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.words)})

    def rows(self, words: Sequence[str]) -> np.ndarray:
        """Reference row of each word, -1 for a word the reference does not know."""
        return np.array([self.index.get(w, -1) for w in words], dtype=np.int64)

    def mean_cosine(self, a: Sequence[str], b: Sequence[str]) -> float:
        """Mean cosine over all pairs (x in a, y in b) of known words; nan if none."""
        ra, rb = self.rows(a), self.rows(b)
        ra, rb = ra[ra >= 0], rb[rb >= 0]
        if not len(ra) or not len(rb):
            return math.nan
        return float((self.vectors[ra] @ self.vectors[rb].T).mean())

    def evaluate_pairs(self, path: Path = PAIRS) -> float:
        """Spearman between human scores and reference cosines (known pairs only)."""
        from css_rs.model import read_word_pairs

        human, cosine = [], []
        for a, b, score in read_word_pairs(path):
            ia, ib = self.index.get(a), self.index.get(b)
            if ia is not None and ib is not None:
                human.append(score)
                cosine.append(float(self.vectors[ia] @ self.vectors[ib]))
        return float(spearmanr(human, cosine).statistic)


def load_texts(path: Path = CORPUS) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


def encode_corpus(texts: list[str]) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    """css-rs's tokenizer and vocabulary (min_count 5): ``(vocab, ids, offsets)``."""
    import css_rs

    vocab = css_rs.Vocabulary.from_texts(texts, min_count=MIN_COUNT)
    ids, offsets = vocab.encode_batch(texts)
    return vocab, np.asarray(ids), np.asarray(offsets)


def cooccurrence(ids: np.ndarray, offsets: np.ndarray, size: int, window: int) -> sp.csr_matrix:
    """Symmetric word-context counts within ``window`` tokens each side, never across
    documents: one vectorised pass per distance instead of a loop over tokens."""
    doc = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    rows, cols = [], []
    for d in range(1, window + 1):
        same = doc[:-d] == doc[d:]
        left, right = ids[:-d][same], ids[d:][same]
        rows += [left, right]
        cols += [right, left]
    r = np.concatenate(rows).astype(np.int32)
    c = np.concatenate(cols).astype(np.int32)
    ones = np.ones(len(r), dtype=np.float32)
    return sp.coo_matrix((ones, (r, c)), shape=(size, size)).tocsr()  # sums duplicates


def ppmi(counts: sp.csr_matrix, cds: float = 0.75) -> sp.csr_matrix:
    """Positive PMI with context-distribution smoothing (context counts ** ``cds``), which
    keeps rare contexts from dominating (Levy et al. 2015)."""
    coo = counts.tocoo()
    word = np.asarray(counts.sum(axis=1)).ravel()
    context = np.asarray(counts.sum(axis=0)).ravel() ** cds
    total = word.sum()
    pmi = (
        np.log(coo.data / total)
        - np.log(word[coo.row] / total)
        - np.log(context[coo.col] / context.sum())
    )
    keep = pmi > 0
    values = pmi[keep].astype(np.float32)
    return sp.csr_matrix((values, (coo.row[keep], coo.col[keep])), shape=counts.shape)


def svd_embedding(matrix: sp.csr_matrix, dims: int, seed: int = 0) -> np.ndarray:
    """Truncated SVD, rows ``U sqrt(sigma)`` normalised to unit length (float32)."""
    # A fixed start vector makes ARPACK's result the same from run to run.
    v0 = np.random.default_rng(seed).standard_normal(min(matrix.shape))
    u, s, _ = svds(matrix, k=dims, v0=v0)
    x = u * np.sqrt(s)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)


def reference_cache_path(
    corpus: Path, window: int, dims: int, cds: float, cache_dir: Path = CACHE_DIR
) -> Path:
    """Cache file keyed by the corpus file (size, mtime) and every setting of the recipe."""
    st = corpus.stat()
    settings = {"window": window, "dims": dims, "cds": cds, "min_count": MIN_COUNT}
    key = json.dumps(
        [REFERENCE_VERSION, corpus.name, st.st_size, st.st_mtime_ns, settings], sort_keys=True
    )
    return cache_dir / f"ppmi-svd-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def build_reference(
    corpus: Path = CORPUS,
    *,
    window: int = 3,
    dims: int = 100,
    cds: float = 0.75,
    cache_dir: Path = CACHE_DIR,
    texts: Optional[list[str]] = None,
) -> Reference:
    """The PPMI + SVD reference of ``corpus``, from the cache when it is there."""
    cache = reference_cache_path(corpus, window, dims, cds, cache_dir)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return Reference(z["words"].tolist(), z["counts"], z["vectors"])
    vocab, ids, offsets = encode_corpus(texts if texts is not None else load_texts(corpus))
    counts = cooccurrence(ids, offsets, len(vocab), window)
    vectors = svd_embedding(ppmi(counts, cds), dims)
    words = vocab.words
    word_counts = vocab.counts
    ref = Reference(words, np.array([word_counts[w] for w in words], np.int64), vectors)
    _save_atomically(cache, ref)
    return ref


def _save_atomically(path: Path, ref: Reference) -> None:
    """A half-written cache would be read as corrupt by the next run: write, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, words=np.array(ref.words), counts=ref.counts, vectors=ref.vectors)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- DistRatio -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DistRatio:
    """Mean DistRatio over the dimensions scored (as the literature reports it) and the
    median; ``top`` holds each scored dimension's top words (a look at what they are).

    The ratios are heavy-tailed: a dimension of near-synonymous tokens (the grammar
    abbreviations vb, pr, pt; the suffixes ly, ness, ing) has tiny distances among its top words
    and a ratio of 5-8, so with the 14-20 frequencies a collapsed css-rs model has to score, one
    such dimension moves the mean by 0.3. The median does not move."""

    mean: float
    median: float
    scored: int  # dimensions with a ratio
    in_use: int  # dimensions on which some scored word has a positive loading
    ratios: list[float]
    top: dict[int, list[str]]


def css_loadings(model: CSSModel) -> np.ndarray:
    """V x D: each word's share of its squared norm on each frequency, ``|z|^2 / ||z||^2``
    (the sparse slots only: a dense background part, if a model has one, is not a mode)."""
    from css_rs.persistence import EMPTY_FREQUENCY

    freq, amp, _ = model.slot_arrays()
    used = freq != EMPTY_FREQUENCY
    power = np.where(used, amp.astype(np.float64) ** 2, 0.0)
    total = power.sum(axis=1, keepdims=True)
    share = np.divide(power, total, out=np.zeros_like(power), where=total > 0)
    out = np.zeros((len(model), model.frequency_dim))
    rows, slots = np.nonzero(used)
    np.add.at(out, (rows, freq[rows, slots].astype(np.intp)), share[rows, slots])
    return out


def gensim_loadings(vectors: np.ndarray) -> np.ndarray:
    """V x n: each dimension's value in the positive direction, ``max(x, 0)``, of the unit
    rows, so that a dimension's top words are the words most *about* it (as the css-rs share
    of the norm), not the words with the largest vectors."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return np.maximum(unit, 0.0).astype(np.float64)


def dist_ratio(
    loadings: np.ndarray,
    words: Sequence[str],
    reference: Reference,
    *,
    top: int = TOP_WORDS,
    intruders: int = INTRUDERS,
    min_count: int = SCORED_MIN_COUNT,
    seed: int = 0,
) -> DistRatio:
    """DistRatio of the dimensions of a nonnegative ``V x n`` loadings matrix whose rows are
    ``words``. Only words the reference knows with a corpus count >= ``min_count`` take part.
    Per dimension with at least ``top`` positive loadings: its ``top`` words by loading;
    intruders drawn (seeded, per dimension) among words in the bottom half of the dimension
    (or at zero) and in the top ``TOP_FRACTION`` of another dimension; ratio = mean distance
    intruder-top word / mean distance among the top words, distance = 1 - cosine in the
    reference. A dimension with fewer positive loadings has no top-5 to judge: in use, not
    scored."""
    rows = reference.rows(words)
    ok = rows >= 0
    ok[ok] = reference.counts[rows[ok]] >= min_count
    lo = loadings[ok]
    vec = reference.vectors[rows[ok]]
    kept_words = [w for w, k in zip(words, ok) if k]
    is_top = _top_fraction_mask(lo, TOP_FRACTION)
    tops_elsewhere = is_top.sum(axis=1)
    ratios, tops = [], {}
    in_use = int(np.count_nonzero((lo > 0).any(axis=0)))
    for dim in range(lo.shape[1]):
        col = lo[:, dim]
        if np.count_nonzero(col > 0) < top:
            continue
        best = np.argsort(-col, kind="stable")[:top]
        low = (col <= np.median(col)) | (col == 0)
        candidates = np.flatnonzero(low & (tops_elsewhere - is_top[:, dim] > 0))
        candidates = np.setdiff1d(candidates, best)
        if not len(candidates):
            continue
        rng = np.random.default_rng([seed, dim])  # same intruders whatever the other dims
        picked = rng.choice(candidates, size=min(intruders, len(candidates)), replace=False)
        ratio = _ratio(vec[best], vec[picked])
        if math.isfinite(ratio):  # top words all on one point (duplicates) are no test
            ratios.append(ratio)
            tops[dim] = [kept_words[i] for i in best]
    mean = float(np.mean(ratios)) if ratios else math.nan
    median = float(np.median(ratios)) if ratios else math.nan
    return DistRatio(mean, median, len(ratios), in_use, ratios, tops)


def _top_fraction_mask(loadings: np.ndarray, fraction: float) -> np.ndarray:
    """``mask[w, d]``: word ``w`` is among the top ``fraction`` of dimension ``d`` (and
    positive there: a sparse dimension's top 10% stops at its last positive loading)."""
    n = loadings.shape[0]
    rank = max(1, math.ceil(fraction * n))
    threshold = -np.partition(-loadings, rank - 1, axis=0)[rank - 1]
    return (loadings >= threshold) & (loadings > 0)


def _ratio(top: np.ndarray, intruders: np.ndarray) -> float:
    """Mean intruder-top distance over mean top-top distance (unit rows, distance 1 - cos)."""
    k = len(top)
    among = 1.0 - top @ top.T
    intra = (among.sum() - np.trace(among)) / (k * (k - 1))
    inter = float((1.0 - intruders @ top.T).mean())
    return inter / intra if intra > 0 else math.nan


# --- sense discovery -----------------------------------------------------------------------
@dataclass(frozen=True)
class SenseEntry:
    """A line of ``senses.tsv``: an ambiguous word with cue words for two senses, or a
    control (no cues)."""

    word: str
    labels: tuple[str, str] = ("", "")
    cues: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    @property
    def is_control(self) -> bool:
        return not self.cues[0]


def read_senses(path: Path = SENSES) -> list[SenseEntry]:
    """The entries of a senses file (tab-separated; ``#`` comments)."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if cols[0] == "control" and len(cols) == 2:
            entries.append(SenseEntry(cols[1]))
        elif cols[0] == "ambiguous" and len(cols) == 6:
            a, b = tuple(cols[3].split(",")), tuple(cols[5].split(","))
            entries.append(SenseEntry(cols[1], (cols[2], cols[4]), (a, b)))
        else:
            raise ValueError(f"{path}:{number}: not a control or ambiguous line: {line!r}")
    return entries


def _words_of(group: Any, k: int = SENSE_WORDS) -> list[str]:
    """The neighbour words of a reported sense or peak, whatever shape the API gives them:
    ``members`` or else ``neighbours``, an attribute or a method, of words or (word, score);
    failing both, the neighbours of the sense's own ``peaks`` (a sense grouped from peaks)."""
    items = getattr(group, "members", None) or getattr(group, "neighbours", None)
    if callable(items):
        items = items()
    out = [item if isinstance(item, str) else str(item[0]) for item in items or []]
    if not out:
        for peak in getattr(group, "peaks", None) or []:
            out += [w for w in _words_of(peak, k) if w not in out]
    return out[:k]


def reported_senses(model: CSSModel, word: str) -> tuple[list[list[str]], list[list[str]]]:
    """``(senses, peaks)``: the neighbour words of each sense the public API reports, and of
    each peak. Fields used: ``model.polysemy(word).senses`` (each sense's ``members``
    [(word, cosine)] or ``neighbours`` [words, or a method returning them]) and
    ``.peaks[i].neighbours`` [(word, score)]. Older versions reported senses through
    ``css_rs.analysis.senses(model, word)`` (peaks under ``.polysemy.peaks``), or none at all:
    then the peaks stand for the senses too."""
    from css_rs import analysis

    if callable(getattr(analysis, "senses", None)):  # a function then, a module now
        report = analysis.senses(model, word)
        senses = [_words_of(s) for s in getattr(report, "senses", [])]
        polysemy = getattr(report, "polysemy", None) or model.polysemy(word)
        peaks = [_words_of(p) for p in polysemy.peaks]
        return senses, peaks
    report = model.polysemy(word)
    peaks = [_words_of(p) for p in report.peaks]
    if not hasattr(report, "senses"):
        return peaks, peaks
    return [_words_of(s) for s in report.senses], peaks


class CueJudge:
    """Assigns a reported sense (its neighbour words) to one of two cue sets, or to none.

    Closer than the other set is not enough: a word's peaks are many tries, and a handful of
    unrelated words is always a little closer to one of two cue sets by chance. So the sense
    must also be closer to the set than random words are: its mean cosine with the set must
    reach the ``quantile`` of the mean cosines of random same-size sets of frequent reference
    words (a permutation test per cue set, cached), and exceed the other set's by ``margin``.
    """

    def __init__(
        self,
        reference: Reference,
        *,
        margin: float = ASSIGN_MARGIN,
        quantile: float = CHANCE_QUANTILE,
        draws: int = CHANCE_DRAWS,
        seed: int = 0,
    ) -> None:
        self.reference, self.margin, self.quantile = reference, margin, quantile
        self.draws, self.seed = draws, seed
        self.pool = np.flatnonzero(reference.counts >= SCORED_MIN_COUNT)
        self._chance: dict[tuple[tuple[str, ...], int], float] = {}

    def chance(self, cues: Sequence[str], size: int) -> float:
        """The ``quantile`` of the mean cosine of ``size`` random frequent words with ``cues``."""
        key = (tuple(cues), size)
        if key not in self._chance:
            ref = self.reference
            cue_rows = ref.rows(cues)
            cue_vectors = ref.vectors[cue_rows[cue_rows >= 0]]
            rng = np.random.default_rng([self.seed, size])  # same draws for every cue set
            drawn = self.pool[rng.integers(0, len(self.pool), size=(self.draws, size))]
            means = (ref.vectors[drawn] @ cue_vectors.T).mean(axis=(1, 2))
            self._chance[key] = float(np.quantile(means, self.quantile))
        return self._chance[key]

    def assign(
        self, neighbours: Sequence[str], cues: tuple[Sequence[str], Sequence[str]]
    ) -> Optional[int]:
        """0 or 1: the cue set the neighbour words are clearly close to; None otherwise."""
        known = [w for w in neighbours if w in self.reference.index]
        if not known:
            return None
        sims = [self.reference.mean_cosine(known, c) for c in cues]
        if any(math.isnan(x) for x in sims):
            return None
        best = int(np.argmax(sims))
        clear = sims[best] - sims[1 - best] >= self.margin
        return best if clear and sims[best] >= self.chance(cues[best], len(known)) else None


@dataclass(frozen=True)
class WordSenses:
    word: str
    control: bool
    senses: list[list[str]]  # neighbour words of each reported sense
    assigned: list[Optional[int]]  # cue set of each sense (None: unassigned or a control)
    peaks: list[list[str]]  # sense neighbours of each peak
    peaks_assigned: list[Optional[int]]

    @property
    def found(self) -> bool:
        """Both senses found: some reported sense goes to each cue set."""
        return {0, 1} <= set(self.assigned)

    @property
    def found_by_peaks(self) -> bool:
        return {0, 1} <= set(self.peaks_assigned)

    @property
    def split(self) -> bool:
        return len(self.senses) > 1


@dataclass(frozen=True)
class SenseDiscovery:
    found: int  # ambiguous words with both senses found among the reported senses
    found_by_peaks: int  # ... among the peaks' sense neighbours
    # The same counts with each word judged against another word's cue sets (mean over
    # CHANCE_SHIFTS rotations of the list): what the same senses and peaks find by chance.
    chance_found: float
    chance_found_by_peaks: float
    ambiguous: int
    split: int  # controls reported with more than one sense
    controls: int
    dropped: list[str]  # words of the list the model does not know
    details: list[WordSenses]


def sense_discovery(
    model: CSSModel,
    reference: Reference,
    vocab: Optional[Any] = None,
    *,
    entries: Optional[Sequence[SenseEntry]] = None,
    margin: float = ASSIGN_MARGIN,
) -> SenseDiscovery:
    """Asks ``model``'s public senses API about each word of ``entries`` (default: senses.tsv)
    known to ``vocab`` (default: the model's vocabulary; anything with ``in``), assigns each
    reported sense and each peak to a cue set (``CueJudge``), and counts ambiguous words with both
    senses found and controls split."""
    vocab = model.vocab if vocab is None else vocab
    entries = read_senses() if entries is None else entries
    judge = CueJudge(reference, margin=margin)
    details, dropped = [], []
    for entry in entries:
        if entry.word not in vocab:
            dropped.append(entry.word)
            continue
        senses, peaks = reported_senses(model, entry.word)
        if entry.is_control:
            details.append(WordSenses(entry.word, True, senses, [None] * len(senses), peaks, []))
            continue
        assigned = [judge.assign(s, entry.cues) for s in senses]
        by_peaks = [judge.assign(p, entry.cues) for p in peaks]
        details.append(WordSenses(entry.word, False, senses, assigned, peaks, by_peaks))
    ambiguous = [d for d in details if not d.control]
    controls = [d for d in details if d.control]
    by_word = {e.word: e for e in entries}
    cues = [by_word[d.word].cues for d in ambiguous]
    return SenseDiscovery(
        found=sum(d.found for d in ambiguous),
        found_by_peaks=sum(d.found_by_peaks for d in ambiguous),
        chance_found=_chance_found(judge, [d.senses for d in ambiguous], cues),
        chance_found_by_peaks=_chance_found(judge, [d.peaks for d in ambiguous], cues),
        ambiguous=len(ambiguous),
        split=sum(d.split for d in controls),
        controls=len(controls),
        dropped=dropped,
        details=details,
    )


def _chance_found(
    judge: CueJudge,
    groups: list[list[list[str]]],
    cues: list[tuple[tuple[str, ...], tuple[str, ...]]],
) -> float:
    """How many words have both senses "found" when word i is judged against the cue sets of
    word i + shift: the rate at which these groups of neighbour words hit two cue sets without
    meaning them (more peaks are more tries), averaged over CHANCE_SHIFTS shifts."""
    if len(cues) < 2:
        return math.nan
    counts = []
    for shift in CHANCE_SHIFTS:
        rotated = cues[shift % len(cues) :] + cues[: shift % len(cues)]
        counts.append(
            sum({0, 1} <= {judge.assign(g, c) for g in word} for word, c in zip(groups, rotated))
        )
    return float(np.mean(counts))


# --- reports of one system -----------------------------------------------------------------
def css_report(model: CSSModel, reference: Reference, pairs: Path = PAIRS) -> dict[str, Any]:
    """Every figure of a css-rs model, as a JSON-ready dict."""
    ratio = dist_ratio(css_loadings(model), model.words, reference)
    senses = sense_discovery(model, reference)
    return {
        **asdict(model.usage_stats()),
        "dist_ratio": ratio.mean,
        "dist_ratio_median": ratio.median,
        "dims_scored": ratio.scored,
        "dims_in_use": ratio.in_use,
        "senses_found": senses.found,
        "senses_found_by_peaks": senses.found_by_peaks,
        "chance_found": senses.chance_found,
        "chance_found_by_peaks": senses.chance_found_by_peaks,
        "ambiguous": senses.ambiguous,
        "controls_split": senses.split,
        "controls": senses.controls,
        "dropped": senses.dropped,
        "sense_details": [_detail_dict(d) for d in senses.details],
        "wordsim353": model.evaluate_pairs(pairs).spearman,
    }


def _detail_dict(d: WordSenses) -> dict[str, Any]:
    return {
        "word": d.word,
        "control": d.control,
        "found": d.found,
        "found_by_peaks": d.found_by_peaks,
        "senses": [{"words": s, "cue_set": a} for s, a in zip(d.senses, d.assigned)],
    }


def gensim_report(
    vectors: np.ndarray, words: Sequence[str], reference: Reference, wordsim353: float
) -> dict[str, Any]:
    """DistRatio of gensim's dimensions (positive direction), as a JSON-ready dict."""
    ratio = dist_ratio(gensim_loadings(vectors), words, reference)
    return {
        "dist_ratio": ratio.mean,
        "dist_ratio_median": ratio.median,
        "dims_scored": ratio.scored,
        "dims_in_use": ratio.in_use,
        "wordsim353": wordsim353,
    }


def train_css(ids: np.ndarray, offsets: np.ndarray, vocab: Vocabulary, seed: int) -> CSSModel:
    """css-rs at its defaults, 2 threads (the machine's cores)."""
    import css_rs

    return css_rs.train((ids, offsets), vocab, css_rs.TrainConfig(threads=2, seed=seed))


def train_gensim(sentences: list[list[str]], dims: int, seed: int) -> Any:
    """gensim Word2Vec skip-gram with the bench's common settings; returns its KeyedVectors."""
    from gensim.models import Word2Vec

    model = Word2Vec(sentences, vector_size=dims, sg=1, workers=2, seed=seed, **W2V)
    return model.wv


# --- script --------------------------------------------------------------------------------
def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One markdown row per system; sparsity and senses are css-rs's only ("—" for gensim)."""
    lines = [
        "| system | freqs in use | effective number | largest share | freqs > 15% | "
        "DistRatio mean, median (dims scored) | both senses found (chance) | by peaks (chance) | "
        "controls split | WordSim-353 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        found = by_peaks = controls = "—"
        if "senses_found" in r:
            n = r["ambiguous"]
            found = f"{r['senses_found']}/{n} ({_fmt(r['chance_found'], '.1f')})"
            by_peaks = (
                f"{r['senses_found_by_peaks']}/{n} ({_fmt(r['chance_found_by_peaks'], '.1f')})"
            )
            controls = f"{r['controls_split']}/{r['controls']}"
        lines.append(
            f"| {name} | {_fmt(r.get('in_use'), 'd')} | {_fmt(r.get('effective'), '.1f')} | "
            f"{_fmt(r.get('largest_share'), '.0%')} | {_fmt(r.get('crowded'), 'd')} | "
            f"{_fmt(r['dist_ratio'], '.3f')}, {_fmt(r['dist_ratio_median'], '.3f')} "
            f"({r['dims_scored']}) | {found} | {by_peaks} | "
            f"{controls} | {_fmt(r['wordsim353'], '.3f')} |"
        )
    return "\n".join(lines)


def sense_table(name: str, report: dict[str, Any], shown: int = 4) -> str:
    """Per word: each reported sense's first neighbours and the cue set it went to."""
    lines = [f"\nSenses reported by {name} (cue set A or B, - unassigned):\n"]
    lines += ["| word | both found | senses |", "|---|---|---|"]
    for d in report["sense_details"]:
        parts = [
            f"{'-' if s['cue_set'] is None else 'AB'[s['cue_set']]}: "
            + " ".join(s["words"][:shown])
            for s in d["senses"]
        ]
        found = "control" if d["control"] else ("yes" if d["found"] else "no")
        lines.append(f"| {d['word']} | {found} | {'; '.join(parts) or '(none)'} |")
    return "\n".join(lines)


def css_rows(
    models: Sequence[Path], texts: list[str], seeds: Sequence[int], reference: Reference
) -> list[tuple[str, dict[str, Any]]]:
    """The given model files, or without any, css-rs trained at its defaults per seed."""
    import css_rs

    if models:
        return [(path.name, css_report(css_rs.load(path), reference)) for path in models]
    vocab, ids, offsets = encode_corpus(texts)
    rows = []
    for seed in seeds:
        model = train_css(ids, offsets, vocab, seed)
        rows.append((f"css-rs defaults, seed {seed}", css_report(model, reference)))
    return rows


def gensim_rows(
    dims: Sequence[int], texts: list[str], seeds: Sequence[int], reference: Reference
) -> list[tuple[str, dict[str, Any]]]:
    import css_rs

    if not dims:
        return []
    sentences = css_rs.Tokenizer().tokenize_batch(texts)  # the same tokens as css-rs's
    rows = []
    for n in dims:
        for seed in seeds:
            wv = train_gensim(sentences, n, seed)
            ws = float(wv.evaluate_word_pairs(str(PAIRS))[1].statistic)
            report = gensim_report(wv.vectors, wv.index_to_key, reference, ws)
            rows.append((f"gensim sg-{n}, seed {seed}", report))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", type=Path, help="css-rs model files to report")
    parser.add_argument(
        "--gensim-dims", type=int, nargs="*", help="gensim sizes (default: 16 100 without models)"
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds 1..N of each trained system")
    parser.add_argument("--details", action="store_true", help="print each word's senses")
    args = parser.parse_args(argv)
    if not (CORPUS.is_file() and PAIRS.is_file()):
        print(f"skipped: {CORPUS} or {PAIRS} is absent")
        return 0
    texts = load_texts()
    start = time.perf_counter()
    reference = build_reference(texts=texts)
    print(
        f"reference: PPMI + SVD, {len(reference.words)} words, {reference.vectors.shape[1]} "
        f"dims, {time.perf_counter() - start:.1f} s, WordSim-353 "
        f"{reference.evaluate_pairs():.3f}\n"
    )
    seeds = range(1, args.seeds + 1)
    dims = args.gensim_dims
    if dims is None:
        dims = [] if args.models else [16, 100]
    rows = css_rows(args.models, texts, seeds, reference)
    rows += gensim_rows(dims, texts, seeds, reference)
    print(table(rows))
    for name, report in rows:
        if args.details and "sense_details" in report:
            print(sense_table(name, report))
        if report.get("dropped"):
            print(f"\n{name}: not in the vocabulary: {', '.join(report['dropped'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
