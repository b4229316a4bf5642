"""Text dissimilarity for content pairing: TF-IDF vectors and cosine similarity.

An entity's document is its name and description. Tokens are lower-cased runs of
letters and digits (Unicode-aware). Weights are ``tf * idf`` with raw term counts
and the smoothed ``idf = ln((1 + n) / (1 + df)) + 1`` over the ``n`` documents
compared, and every vector is scaled to unit length, so the cosine similarity of
two documents is their dot product: 1 for the same words in the same proportions,
0 for no word in common (or an empty document).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


class TextEntity(NamedTuple):
    id: int
    name: str
    description: str = ""


class DissimilarPair(NamedTuple):
    entity1_id: int
    entity2_id: int
    similarity: float  # cosine of the two TF-IDF vectors, 0..1


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text`` (letters and digits; punctuation splits)."""
    return _TOKEN.findall(text.lower())


def tfidf_matrix(documents: Sequence[str]) -> np.ndarray:
    """One unit-length TF-IDF row per document (all-zero for a document without words)."""
    counts = [Counter(tokenize(doc)) for doc in documents]
    vocabulary: dict[str, int] = {}
    for c in counts:
        for term in c:
            vocabulary.setdefault(term, len(vocabulary))
    n = len(documents)
    matrix = np.zeros((n, len(vocabulary)))
    for row, c in enumerate(counts):
        for term, k in c.items():
            matrix[row, vocabulary[term]] = k
    df = (matrix > 0).sum(axis=0)
    matrix *= np.log((1.0 + n) / (1.0 + df)) + 1.0
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


def similarity_matrix(documents: Sequence[str]) -> np.ndarray:
    """Pairwise cosine similarities of the documents' TF-IDF vectors."""
    m = tfidf_matrix(documents)
    return np.clip(m @ m.T, 0.0, 1.0)


def document_of(entity: TextEntity) -> str:
    return f"{entity.name}\n{entity.description or ''}"


def most_dissimilar_pair(
    entities: Sequence[TextEntity], rng: random.Random, sample_size: int = 200
) -> DissimilarPair:
    """The pair of entities whose texts are least similar.

    With more than ``sample_size`` entities a uniform sample of that many is
    compared (the cost is quadratic in the number compared), drawn from ``rng``;
    the storage layer may equally pass an already sampled list. Among equally
    dissimilar pairs the one with the smallest ids wins, so the result depends only
    on the entities and the seed, not on the order they were passed in.
    """
    if len(entities) < 2:
        raise ValueError("need at least two entities")
    pool = sorted(entities, key=lambda e: e.id)
    if len(pool) > sample_size:
        pool = sorted(rng.sample(pool, sample_size), key=lambda e: e.id)
    sim = similarity_matrix([document_of(e) for e in pool])
    rows, cols = np.triu_indices(len(pool), 1)
    values = sim[rows, cols]
    # Round so that float noise cannot decide between pairs that are equal on paper.
    k = int(np.argmin(np.round(values, 12)))
    return DissimilarPair(pool[rows[k]].id, pool[cols[k]].id, float(values[k]))


def cosine(a: str, b: str) -> float:
    """Cosine similarity of two texts, with IDF taken over just the two of them."""
    sim = similarity_matrix([a, b])
    return float(sim[0, 1])


__all__ = [
    "DissimilarPair",
    "TextEntity",
    "cosine",
    "most_dissimilar_pair",
    "similarity_matrix",
    "tfidf_matrix",
    "tokenize",
]
