"""Plain helpers shared by tests (no fixtures): a judge with a hidden truth, rank agreement,
the votes a database holds."""

from __future__ import annotations

import itertools
import random
import sqlite3
from collections import Counter

import psycopg2

from compere.http.schemas import Entity

ITEMS = 20
# The order a perfect ranking recovers: item names to hidden scores (a fixed shuffle).
HIDDEN_SCORE = {
    f"item {i:02d}": score for i, score in enumerate(random.Random(20).sample(range(ITEMS), ITEMS))
}


def prefer_larger_hidden_score(a: Entity, b: Entity) -> Entity:
    """A deterministic judge: the item with the larger hidden score wins."""
    return a if HIDDEN_SCORE[a.name] > HIDDEN_SCORE[b.name] else b


def kendall_tau(names_best_first: list[str]) -> float:
    """Agreement of a ranking with the hidden order: 1 identical, -1 reversed."""
    concordant = discordant = 0
    for better, worse in itertools.combinations(names_best_first, 2):
        if HIDDEN_SCORE[better] > HIDDEN_SCORE[worse]:
            concordant += 1
        else:
            discordant += 1
    return (concordant - discordant) / (concordant + discordant)


def stored_votes(database_url: str) -> tuple[Counter[tuple[int, int, int | None]], float]:
    """Every stored vote as (entity1, entity2, winner), counted, and the sum of all ratings."""
    votes = "SELECT entity1_id, entity2_id, selected_entity_id FROM comparisons"
    ratings = "SELECT SUM(rating) FROM entities"
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute(votes).fetchall()
            (total,) = conn.execute(ratings).fetchone()
        finally:
            conn.close()
    else:
        with psycopg2.connect(database_url) as pg, pg.cursor() as cur:
            cur.execute(votes)
            rows = cur.fetchall()
            cur.execute(ratings)
            (total,) = cur.fetchone()
        pg.close()
    return Counter((a, b, c) for a, b, c in rows), float(total)
