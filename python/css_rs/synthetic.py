"""The built-in demo corpus: seeded, English-like sentences with planted structure.

What it plants (and what tests check that training recovers):

- **Topic clusters.** ``TOPICS`` maps each of nine topics to twelve content words. A document
  is about one topic: its sentences mix that topic's words with shared function words, so words
  of one topic share contexts and words of different topics never do.
- **Two-sense words.** ``POLYSEMOUS`` maps ``bank`` to (finance, river) and ``bat`` to
  (animals, sports): each appears like an ordinary content word in documents of *both* topics,
  so its contexts come from two unrelated clusters.
- **Function words** (``FUNCTION_WORDS``) appear in every topic with Zipf-like frequencies:
  frequent, uninformative, the words subsampling is for.

The generator is a pure function of its arguments (``random.Random(seed)``), so the same seed
gives the same documents on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Optional

TOPICS: dict[str, list[str]] = {
    "animals": "cat dog horse cow sheep goat rabbit mouse lion tiger wolf fox".split(),
    "fruits": "apple banana cherry grape lemon mango orange peach pear plum melon berry".split(),
    "vehicles": "car truck bus train bicycle motorcycle tram van taxi tractor scooter "
    "wagon".split(),
    "music": "guitar piano violin drum flute trumpet cello harp song melody rhythm chord".split(),
    "finance": "money loan credit interest deposit account cash payment debt investor profit "
    "mortgage".split(),
    "river": "water stream shore fish boat current flood mud reed fishing canal delta".split(),
    "weather": "rain snow wind storm cloud sun thunder fog frost hail breeze drizzle".split(),
    "sports": "ball goal team match player score coach referee league stadium tennis "
    "soccer".split(),
    "kitchen": "knife spoon fork plate bowl oven pan kettle cup stove recipe spice".split(),
}

POLYSEMOUS: dict[str, tuple[str, str]] = {
    "bank": ("finance", "river"),
    "bat": ("animals", "sports"),
}

FUNCTION_WORDS: list[str] = "the a of and to in is with on for was by".split()
# Zipf-like: the i-th function word is 1/(i+1) as frequent as the first.
_ZIPF_WEIGHTS = [1.0 / (i + 1) for i in range(len(FUNCTION_WORDS))]


def topic_words(topic: str) -> list[str]:
    """The content words a document about ``topic`` draws from (polysemous words included)."""
    extra = [w for w, senses in POLYSEMOUS.items() if topic in senses]
    return TOPICS[topic] + extra


def cluster_of(word: str) -> Optional[str]:
    """The topic a (single-sense) content word belongs to, or None."""
    for topic, words in TOPICS.items():
        if word in words:
            return topic
    return None


def _sentence(rng: random.Random, words: list[str]) -> str:
    length = rng.randint(8, 14)
    out = []
    for _ in range(length):
        if rng.random() < 0.6:
            out.append(rng.choice(words))
        else:
            out.append(rng.choices(FUNCTION_WORDS, weights=_ZIPF_WEIGHTS)[0])
    return " ".join(out).capitalize() + "."


def generate_document(rng: random.Random) -> str:
    """One document: three to six sentences about one topic."""
    topic = rng.choice(sorted(TOPICS))
    words = topic_words(topic)
    return " ".join(_sentence(rng, words) for _ in range(rng.randint(3, 6)))


def iter_documents(num_documents: int, seed: int = 1, start: int = 0) -> Iterator[str]:
    """Documents ``start .. num_documents`` of the corpus for ``seed``.

    Document ``i`` depends only on ``(seed, i)``, so a reader can resume at any index.
    """
    for i in range(start, num_documents):
        yield generate_document(random.Random(f"css-rs-synthetic:{seed}:{i}"))


def generate_corpus(num_documents: int = 3000, seed: int = 1) -> list[str]:
    return list(iter_documents(num_documents, seed))
