"""Entities: create, read, search, count, edit and soft-delete one at a time."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.bayes import Prior
from compere.storage.database import Connection, Query
from compere.storage.rows import EntityRow, entity_row
from compere.storage.tables import DEFAULT_PROJECT_ID, ENTITY_COLUMNS, LIVE, NEW_ENTITY, entities
from compere.storage.timestamps import utc_now


class EntityNotFound(LookupError):
    """An entity id named in a request does not exist (or was deleted)."""

    def __init__(self, entity_id: int) -> None:
        super().__init__(entity_id)
        self.entity_id = entity_id


_INSERT_ENTITY = Query(sa.insert(entities).values(**NEW_ENTITY).returning(*ENTITY_COLUMNS))
_IN_PROJECT = entities.c.project_id == param("project_id")
_GET_ENTITY = Query(sa.select(*ENTITY_COLUMNS).where(entities.c.id == param("id"), _IN_PROJECT, LIVE))
_SOFT_DELETE_ENTITY = Query(
    sa.update(entities)
    .where(entities.c.id == param("id"), _IN_PROJECT, LIVE)
    .values(deleted_at=param("now"), updated_at=param("now"))
)
_COUNT_LIVE = Query(sa.select(sa.func.count()).select_from(entities).where(_IN_PROJECT, LIVE))


def new_entity_params(
    *,
    project_id: int,
    name: str,
    description: str,
    image_urls: Sequence[str],
    rating: float,
    prior: Prior,
    now: str,
    external_id: str | None,
    prompt: str | None,
    attributes: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The parameters of :data:`compere.storage.tables.NEW_ENTITY` for one entity."""
    return {
        "project_id": project_id,
        "name": name,
        "description": description,
        "image_urls": json.dumps(list(image_urls)),
        "rating": rating,
        "mu": prior.mu0,
        "sigma": prior.sigma0,
        "random_key": random.random(),
        "now": now,
        "external_id": external_id,
        "prompt": prompt,
        "attributes": _stored_attributes(attributes),
    }


def _stored_attributes(attributes: Mapping[str, float] | None) -> str | None:
    """Attributes as stored: JSON object text, NULL for none."""
    return json.dumps(dict(attributes)) if attributes else None


async def create_entity(
    db: Connection,
    project_id: int = DEFAULT_PROJECT_ID,
    *,
    name: str,
    description: str,
    image_urls: Sequence[str],
    rating: float,
    prior: Prior,
    external_id: str | None = None,
    prompt: str | None = None,
    attributes: Mapping[str, float] | None = None,
) -> EntityRow:
    row = await db.fetch_one(
        _INSERT_ENTITY,
        new_entity_params(
            project_id=project_id,
            name=name,
            description=description,
            image_urls=image_urls,
            rating=rating,
            prior=prior,
            now=utc_now(),
            external_id=external_id,
            prompt=prompt,
            attributes=attributes,
        ),
    )
    assert row is not None
    return entity_row(row)


async def get_entity(db: Connection, project_id: int, entity_id: int) -> EntityRow | None:
    row = await db.fetch_one(_GET_ENTITY, {"id": entity_id, "project_id": project_id})
    return None if row is None else entity_row(row)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search_filter(search: str | None) -> list[sa.ColumnElement[bool]]:
    if not search:
        return []
    pattern = f"%{_escape_like(search)}%"
    return [
        sa.or_(
            entities.c.name.ilike(pattern, escape="\\"),
            entities.c.description.ilike(pattern, escape="\\"),
        )
    ]


async def list_entities(
    db: Connection, project_id: int, *, skip: int, limit: int, search: str | None
) -> list[EntityRow]:
    """A project's live entities, best rated first (as the original lists them)."""
    stmt = (
        sa.select(*ENTITY_COLUMNS)
        .where(entities.c.project_id == project_id, LIVE, *_search_filter(search))
        .order_by(entities.c.rating.desc(), entities.c.id)
        .limit(limit)
        .offset(skip)
    )
    return [entity_row(row) for row in await db.fetch_all(Query(stmt))]


async def count_entities(db: Connection, project_id: int, *, search: str | None = None) -> int:
    if not search:
        return int(await db.fetch_value(_COUNT_LIVE, {"project_id": project_id}))
    stmt = (
        sa.select(sa.func.count())
        .select_from(entities)
        .where(entities.c.project_id == project_id, LIVE, *_search_filter(search))
    )
    return int(await db.fetch_value(Query(stmt)))


async def update_entity(
    db: Connection, project_id: int, entity_id: int, changes: dict[str, Any]
) -> EntityRow | None:
    """Apply a partial update; ``changes`` holds only the fields the client sent."""
    if not changes:
        return await get_entity(db, project_id, entity_id)
    values = dict(changes)
    if "image_urls" in values:
        values["image_urls"] = json.dumps(list(values["image_urls"]))
    if "attributes" in values:
        values["attributes"] = _stored_attributes(values["attributes"])
    values["updated_at"] = utc_now()
    stmt = (
        sa.update(entities)
        .where(entities.c.id == entity_id, entities.c.project_id == project_id, LIVE)
        .values(**values)
        .returning(*ENTITY_COLUMNS)
    )
    row = await db.fetch_one(Query(stmt))
    return None if row is None else entity_row(row)


async def delete_entity(db: Connection, project_id: int, entity_id: int) -> bool:
    """Soft-delete: the entity leaves every listing and pairing; its votes stay in the log."""
    params = {"id": entity_id, "project_id": project_id, "now": utc_now()}
    return await db.execute(_SOFT_DELETE_ENTITY, params) > 0
