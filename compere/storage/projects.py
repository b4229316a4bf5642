"""Projects and their members: create, read, list, change, archive and restore."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.domain.accounts import canonical_name
from compere.storage.database import Connection, Database, Query, Row
from compere.storage.tables import project_members, projects, users
from compere.storage.timestamps import utc_now

PROJECT_COLUMNS = tuple(projects.c)
_BY_SLUG = Query(sa.select(*PROJECT_COLUMNS).where(projects.c.slug == param("slug")))
_BY_ID = Query(sa.select(*PROJECT_COLUMNS).where(projects.c.id == param("id")))
_ROLE = Query(
    sa.select(project_members.c.role).where(
        project_members.c.project_id == param("project_id"), project_members.c.user_id == param("user_id")
    )
)
_MEMBERS = Query(
    sa.select(users.c.id.label("user_id"), users.c.username, project_members.c.role)
    .select_from(project_members.join(users, users.c.id == project_members.c.user_id))
    .where(project_members.c.project_id == param("project_id"))
    .order_by(users.c.id)
)
_USER_BY_NAME = Query(
    sa.select(users.c.id, users.c.username).where(users.c.username_canonical == param("canonical"))
)
_REMOVE_MEMBER = Query(
    sa.delete(project_members).where(
        project_members.c.project_id == param("project_id"), project_members.c.user_id == param("user_id")
    )
)
_SET_ARCHIVED = Query(
    sa.update(projects)
    .where(projects.c.id == param("id"))
    .values(archived_at=param("archived_at"))
    .returning(*PROJECT_COLUMNS)
)


async def by_slug(db: Connection, slug: str) -> Row | None:
    return await db.fetch_one(_BY_SLUG, {"slug": slug})


async def by_id(db: Connection, project_id: int) -> Row | None:
    return await db.fetch_one(_BY_ID, {"id": project_id})


async def role_of(db: Connection, project_id: int, user_id: int) -> str | None:
    row = await db.fetch_one(_ROLE, {"project_id": project_id, "user_id": user_id})
    return None if row is None else str(row["role"])


async def visible(
    db: Connection, *, user_id: int | None, everything: bool, archived: bool, skip: int, limit: int
) -> list[Row]:
    """The projects a caller may see, oldest first: all of them (``everything``), else
    the public ones and those ``user_id`` is a member of. Archived ones only when asked
    (and then only those)."""
    stmt = sa.select(*PROJECT_COLUMNS)
    stmt = stmt.where(projects.c.archived_at.is_not(None) if archived else projects.c.archived_at.is_(None))
    if not everything:
        member_of = sa.select(project_members.c.project_id).where(project_members.c.user_id == user_id)
        shown = [projects.c.visibility == "public"]
        if user_id is not None:
            shown.append(projects.c.id.in_(member_of))
        stmt = stmt.where(sa.or_(*shown))
    stmt = stmt.order_by(projects.c.id).limit(limit).offset(skip)
    return await db.fetch_all(Query(stmt))


async def create(db: Database, values: dict[str, Any], owner_id: int | None) -> Row:
    """A new project (``values``: slug, name, description, visibility and any settings),
    with ``owner_id`` as its owner, in one transaction. A taken slug is ConflictError."""
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            Query(sa.insert(projects).values(**values, created_at=utc_now()).returning(*PROJECT_COLUMNS))
        )
        assert row is not None
        if owner_id is not None:
            await tx.execute(
                Query(sa.insert(project_members).values(project_id=row["id"], user_id=owner_id, role="owner"))
            )
    return row


async def update(db: Connection, project_id: int, changes: dict[str, Any]) -> Row | None:
    if not changes:
        return await by_id(db, project_id)
    stmt = (
        sa.update(projects).where(projects.c.id == project_id).values(**changes).returning(*PROJECT_COLUMNS)
    )
    return await db.fetch_one(Query(stmt))


async def set_archived(db: Connection, project_id: int, archived: bool) -> Row | None:
    return await db.fetch_one(
        _SET_ARCHIVED, {"id": project_id, "archived_at": utc_now() if archived else None}
    )


async def members(db: Connection, project_id: int) -> list[Row]:
    return await db.fetch_all(_MEMBERS, {"project_id": project_id})


async def user_by_name(db: Connection, username: str) -> Row | None:
    return await db.fetch_one(_USER_BY_NAME, {"canonical": canonical_name(username)})


async def set_member(db: Database, project_id: int, user_id: int, role: str) -> None:
    """Give ``user_id`` ``role`` in the project (added, or changed if already a member)."""
    where = (project_members.c.project_id == project_id, project_members.c.user_id == user_id)
    async with db.transaction() as tx:
        changed = await tx.execute(Query(sa.update(project_members).where(*where).values(role=role)))
        if not changed:
            await tx.execute(
                Query(sa.insert(project_members).values(project_id=project_id, user_id=user_id, role=role))
            )


async def remove_member(db: Connection, project_id: int, user_id: int) -> bool:
    return await db.execute(_REMOVE_MEMBER, {"project_id": project_id, "user_id": user_id}) > 0


async def count_owners(db: Connection, project_id: int) -> int:
    stmt = (
        sa.select(sa.func.count())
        .select_from(project_members)
        .where(project_members.c.project_id == project_id, project_members.c.role == "owner")
    )
    return int(await db.fetch_value(Query(stmt)))
