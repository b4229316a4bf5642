"""Stored rows to API response dicts."""

from __future__ import annotations

from typing import Any

from compere.domain.bayes import interval95
from compere.storage.database import Row
from compere.storage.rows import ComparisonRow, EntityRow
from compere.storage.timestamps import as_datetime


def entity_out(row: EntityRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "image_urls": row.image_urls,
        "rating": row.rating,
        "comparisons": row.comparisons,
        "wins": row.wins,
        "losses": row.losses,
        "ties": row.ties,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "external_id": row.external_id,
        "prompt": row.prompt,
        "attributes": row.attributes,
        **strength_fields(row.mu, row.sigma),
    }


def strength_fields(score: float, uncertainty: float) -> dict[str, Any]:
    # float(): the fitted model's figures may come from NumPy; clients always see floats.
    score, uncertainty = float(score), float(uncertainty)
    lower, upper = interval95(score, uncertainty)
    return {"score": score, "uncertainty": uncertainty, "interval_95": [lower, upper]}


def comparison_out(row: ComparisonRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "entity1_id": row.entity1_id,
        "entity2_id": row.entity2_id,
        "selected_entity_id": row.selected_entity_id,
        "created_at": row.created_at,
        "strategy": row.strategy,
        "selection_probability": row.selection_probability,
        "user_id": row.user_id,
        "verdict": row.verdict,
        "category": row.category,
    }


def user_out(row: Row) -> dict[str, Any]:
    """A user as the API shows it: never the password hash."""
    return {
        "id": row["id"],
        "username": row["username"],
        "email": row["email"],
        "full_name": row["full_name"],
        "disabled": bool(row["disabled"]),
        "is_superuser": bool(row["is_superuser"]),
        "created_at": as_datetime(row["created_at"]),
    }
