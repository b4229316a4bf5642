"""Typed rows: entities and comparisons as storage hands them out, in plain Python values.

Whatever the backend stored (ISO text on SQLite, TIMESTAMPTZ on PostgreSQL; image URLs
as JSON text; an integer where SQLite's RETURNING saw a whole number), a row comes out
with aware UTC ``datetime``, ``list[str]`` and ``float``, so callers never reformat it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import orjson

from compere.storage.database import Row
from compere.storage.timestamps import as_datetime


@dataclass(frozen=True, slots=True)
class EntityRow:
    id: int
    name: str
    description: str
    image_urls: list[str]
    rating: float
    comparisons: int
    wins: int
    losses: int
    ties: int
    created_at: datetime
    updated_at: datetime
    external_id: str | None
    mu: float
    sigma: float
    prompt: str | None
    attributes: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    id: int
    entity1_id: int
    entity2_id: int
    selected_entity_id: int | None
    created_at: datetime
    user_id: int | None
    strategy: str | None
    selection_probability: float | None
    verdict: str = "win"  # 'win', 'tie' or 'both_bad'
    category: str | None = None


def verdict_of(stored: str | None, selected_entity_id: int | None) -> str:
    """A vote's verdict; votes stored before verdicts existed read as win or tie."""
    if stored is not None:
        return stored
    return "tie" if selected_entity_id is None else "win"


def entity_row(row: Row) -> EntityRow:
    """An entity read with ``tables.ENTITY_COLUMNS`` (extra columns are ignored)."""
    image_urls = row["image_urls"]
    return EntityRow(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        image_urls=orjson.loads(image_urls) if isinstance(image_urls, str) else image_urls,
        rating=float(row["rating"]),
        comparisons=row["comparisons"],
        wins=row["wins"],
        losses=row["losses"],
        ties=row["ties"],
        created_at=as_datetime(row["created_at"]),
        updated_at=as_datetime(row["updated_at"]),
        external_id=row["external_id"],
        mu=float(row["mu"]),
        sigma=float(row["sigma"]),
        prompt=row["prompt"],
        attributes=attributes_of(row.get("attributes")),  # rows read before 0014 have none
    )


def attributes_of(stored: str | dict[str, float] | None) -> dict[str, float]:
    """An entity's attributes as stored (JSON object text) as a dict."""
    if stored is None:
        return {}
    return orjson.loads(stored) if isinstance(stored, str) else dict(stored)


# The columns of entities and comparisons that hold moments.
_MOMENTS = frozenset({"created_at", "updated_at", "deleted_at"})


def plain_values(rows: list[Row]) -> list[Row]:
    """Rows of any columns of entities or comparisons (exports), changed in place:
    moments as aware UTC ``datetime``, ``image_urls`` as a list, ``attributes`` as a dict. Returns ``rows``."""
    for row in rows:
        for key in _MOMENTS.intersection(row):
            if row[key] is not None:
                row[key] = as_datetime(row[key])
        image_urls = row.get("image_urls")
        if isinstance(image_urls, str):
            row["image_urls"] = orjson.loads(image_urls)
        if "attributes" in row:
            row["attributes"] = attributes_of(row["attributes"])
    return rows


def comparison_row(row: Row) -> ComparisonRow:
    """A comparison read with ``tables.COMPARISON_COLUMNS``."""
    return ComparisonRow(
        id=row["id"],
        entity1_id=row["entity1_id"],
        entity2_id=row["entity2_id"],
        selected_entity_id=row["selected_entity_id"],
        created_at=as_datetime(row["created_at"]),
        user_id=row["user_id"],
        strategy=row["strategy"],
        selection_probability=row["selection_probability"],
        verdict=verdict_of(row["verdict"], row["selected_entity_id"]),
        category=row["category"],
    )
