"""Webhook subscriptions, the event outbox, and the delivery log with its retry schedule.

A subscription belongs to a project and hears that project's events only; every
subscription query takes the project, so one project's owners never see another's.

Timestamps are ISO 8601 UTC text written by the caller (``compere.storage.timestamps.utc_now``
format), so "due" comparisons work alike on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from compere.storage.database import Connection, Database, Query, Row
from compere.storage.tables import (
    DEFAULT_PROJECT_ID,
    comparisons,
    projects,
    webhook_deliveries,
    webhook_events,
    webhook_state,
    webhook_subscriptions,
)

subs = webhook_subscriptions
deliveries = webhook_deliveries
# A literal, not a bound parameter, so the planners can use the partial index on
# pending deliveries (SQLite cannot match a parameter to an index's WHERE clause).
_PENDING: sa.ColumnClause[str] = sa.literal_column("'pending'")

PUBLIC_SUBSCRIPTION_COLUMNS = (
    subs.c.id,
    subs.c.url,
    subs.c.events,
    subs.c.description,
    subs.c.active,
    subs.c.created_at,
    subs.c.updated_at,
)
DELIVERY_COLUMNS = (
    deliveries.c.id,
    deliveries.c.subscription_id,
    deliveries.c.event_type,
    deliveries.c.status,
    deliveries.c.attempts,
    deliveries.c.next_attempt_at,
    deliveries.c.last_attempt_at,
    deliveries.c.response_code,
    deliveries.c.last_error,
    deliveries.c.replay_of,
    deliveries.c.created_at,
    deliveries.c.delivered_at,
)

# --- subscriptions ------------------------------------------------------------------

_INSERT_SUBSCRIPTION = Query(
    sa.insert(subs)
    .values(
        url=param("url"),
        events=param("events"),
        secret=param("secret"),
        description=param("description"),
        active=param("active"),
        created_at=param("now"),
        updated_at=param("now"),
        project_id=param("project_id"),
    )
    .returning(*PUBLIC_SUBSCRIPTION_COLUMNS)
)
_ONE = sa.and_(subs.c.id == param("id"), subs.c.project_id == param("project_id"))
_GET_SUBSCRIPTION = Query(sa.select(*PUBLIC_SUBSCRIPTION_COLUMNS).where(_ONE))
_LIST_SUBSCRIPTIONS = Query(
    sa.select(*PUBLIC_SUBSCRIPTION_COLUMNS)
    .where(subs.c.project_id == param("project_id"))
    .order_by(subs.c.id)
)
_DELETE_SUBSCRIPTION = Query(sa.delete(subs).where(_ONE))
_ACTIVE_SUBSCRIPTIONS = Query(
    sa.select(
        subs.c.id,
        subs.c.url,
        subs.c.secret,
        subs.c.events,
        subs.c.project_id,
        projects.c.slug.label("project"),
    )
    .select_from(subs.join(projects, projects.c.id == subs.c.project_id))
    .where(subs.c.active == sa.true())
)


async def create_subscription(
    db: Connection,
    *,
    project_id: int,
    url: str,
    events: Sequence[str],
    secret: str,
    description: str,
    active: bool,
    now: str,
) -> Row:
    row = await db.fetch_one(
        _INSERT_SUBSCRIPTION,
        {
            "url": url,
            "events": json.dumps(sorted(events)),
            "secret": secret,
            "description": description,
            "active": active,
            "now": now,
            "project_id": project_id,
        },
    )
    assert row is not None
    return row


async def get_subscription(db: Connection, subscription_id: int, project_id: int) -> Row | None:
    return await db.fetch_one(_GET_SUBSCRIPTION, {"id": subscription_id, "project_id": project_id})


async def list_subscriptions(db: Connection, project_id: int) -> list[Row]:
    return await db.fetch_all(_LIST_SUBSCRIPTIONS, {"project_id": project_id})


async def update_subscription(
    db: Connection, subscription_id: int, project_id: int, changes: dict[str, Any], now: str
) -> Row | None:
    """Apply a partial update (``url``, ``events``, ``description``, ``active``)."""
    values = dict(changes)
    if "events" in values:
        values["events"] = json.dumps(sorted(values["events"]))
    values["updated_at"] = now
    stmt = (
        sa.update(subs)
        .where(subs.c.id == subscription_id, subs.c.project_id == project_id)
        .values(**values)
        .returning(*PUBLIC_SUBSCRIPTION_COLUMNS)
    )
    return await db.fetch_one(Query(stmt))


async def delete_subscription(db: Connection, subscription_id: int, project_id: int) -> bool:
    """Delete a subscription with its delivery log."""
    return await db.execute(_DELETE_SUBSCRIPTION, {"id": subscription_id, "project_id": project_id}) > 0


async def active_subscriptions(db: Connection) -> list[Row]:
    """Active subscriptions of every project with their secrets and project slugs (for the
    dispatcher only)."""
    return await db.fetch_all(_ACTIVE_SUBSCRIPTIONS)


# --- the outbox ----------------------------------------------------------------------

_INSERT_EVENT = Query(
    sa.insert(webhook_events).values(
        event_type=param("event_type"),
        subject_id=param("subject_id"),
        payload=param("payload"),
        created_at=param("now"),
        project_id=param("project_id"),
    )
)
# The oldest events with, for votes, the comparison they report. FOR UPDATE (without
# SKIP LOCKED) makes a second dispatcher wait for the first one's batch instead of
# fanning out later events before it, which would break the order within a subscription.
_CLAIM_EVENTS = Query(
    sa.select(
        webhook_events.c.id,
        webhook_events.c.event_type,
        webhook_events.c.payload,
        webhook_events.c.created_at,
        # A vote's event leaves its project to the comparison.
        sa.func.coalesce(comparisons.c.project_id, webhook_events.c.project_id, DEFAULT_PROJECT_ID).label(
            "project_id"
        ),
        comparisons.c.id.label("comparison_id"),
        comparisons.c.entity1_id,
        comparisons.c.entity2_id,
        comparisons.c.selected_entity_id,
        comparisons.c.created_at.label("comparison_created_at"),
        comparisons.c.user_id,
        comparisons.c.strategy,
        comparisons.c.selection_probability,
    )
    .select_from(
        webhook_events.outerjoin(
            comparisons,
            sa.and_(
                comparisons.c.id == webhook_events.c.subject_id,
                webhook_events.c.event_type == "comparison.created",
            ),
        )
    )
    .order_by(webhook_events.c.id)
    .limit(param("limit"))
    .with_for_update(of=webhook_events)
)
_DELETE_EVENTS = Query(
    sa.delete(webhook_events).where(webhook_events.c.id.between(param("first"), param("last")))
)


async def insert_event(
    db: Connection,
    event_type: str,
    *,
    now: str,
    project_id: int,
    subject_id: int | None = None,
    payload: str | None = None,
) -> None:
    params = {"event_type": event_type, "subject_id": subject_id, "payload": payload, "now": now}
    await db.execute(_INSERT_EVENT, {**params, "project_id": project_id})


async def claim_events(tx: Connection, limit: int) -> list[Row]:
    """The oldest ``limit`` events, locked until the transaction ends."""
    return await tx.fetch_all(_CLAIM_EVENTS, {"limit": limit})


async def delete_events(tx: Connection, first: int, last: int) -> None:
    """Delete fanned-out events. Uncommitted events in the range are not visible, so survive."""
    await tx.execute(_DELETE_EVENTS, {"first": first, "last": last})


# --- deliveries ------------------------------------------------------------------------

_INSERT_DELIVERY = Query(
    sa.insert(deliveries)
    .values(
        subscription_id=param("subscription_id"),
        event_type=param("event_type"),
        body=param("body"),
        status="pending",
        attempts=0,
        next_attempt_at=param("now"),
        replay_of=param("replay_of"),
        created_at=param("now"),
    )
    .returning(*DELIVERY_COLUMNS)
)


def _claim_query() -> Query:
    earlier = deliveries.alias("earlier")
    # The head of each active subscription's queue: one index probe per subscription
    # (webhook_deliveries_pending_idx), however long a queue a dead receiver has built.
    heads = sa.select(
        sa.select(sa.func.min(earlier.c.id))
        .where(earlier.c.subscription_id == subs.c.id, earlier.c.status == _PENDING)
        .scalar_subquery()
    ).where(subs.c.active == sa.true())
    due_heads = (
        sa.select(deliveries.c.id)
        .where(
            deliveries.c.id.in_(heads),
            deliveries.c.status == _PENDING,
            deliveries.c.next_attempt_at <= param("now"),
        )
        .order_by(deliveries.c.id)
        .limit(param("limit"))
        .with_for_update(skip_locked=True)
    )
    # The lease: while an attempt runs its row is not due, so no other worker takes it
    # and the deliveries behind it keep waiting; if the worker dies, the lease runs out
    # and the delivery is tried again.
    return Query(
        sa.update(deliveries)
        .where(deliveries.c.id.in_(due_heads.scalar_subquery()))
        .values(
            attempts=deliveries.c.attempts + 1,
            last_attempt_at=param("now"),
            next_attempt_at=param("lease_until"),
        )
        .returning(
            deliveries.c.id,
            deliveries.c.subscription_id,
            deliveries.c.event_type,
            deliveries.c.body,
            deliveries.c.attempts,
            deliveries.c.created_at,
        )
    )


_CLAIM_DELIVERIES = _claim_query()
_FINISH_DELIVERY = Query(
    sa.update(deliveries)
    .where(deliveries.c.id == param("id"))
    .values(
        status=param("status"),
        response_code=param("response_code"),
        last_error=param("last_error"),
        next_attempt_at=param("next_attempt_at"),
        delivered_at=param("delivered_at"),
    )
)
_GET_DELIVERY = Query(
    sa.select(*DELIVERY_COLUMNS, deliveries.c.body).where(
        deliveries.c.id == param("id"), deliveries.c.subscription_id == param("subscription_id")
    )
)


async def insert_delivery(
    tx: Connection,
    *,
    subscription_id: int,
    event_type: str,
    body: str,
    now: str,
    replay_of: int | None = None,
) -> Row:
    row = await tx.fetch_one(
        _INSERT_DELIVERY,
        {
            "subscription_id": subscription_id,
            "event_type": event_type,
            "body": body,
            "now": now,
            "replay_of": replay_of,
        },
    )
    assert row is not None
    return row


async def claim_deliveries(db: Database, *, now: str, lease_until: str, limit: int) -> list[Row]:
    """Take up to ``limit`` due deliveries, each the oldest pending one of its subscription.

    PostgreSQL skips rows another worker has locked (``FOR UPDATE SKIP LOCKED``); SQLite
    runs the statement on its single writer. Each claimed row counts an attempt and is
    leased until ``lease_until``.
    """
    async with db.transaction() as tx:
        return await tx.fetch_all(_CLAIM_DELIVERIES, {"now": now, "lease_until": lease_until, "limit": limit})


async def finish_delivery(
    db: Database,
    delivery_id: int,
    *,
    status: str,
    response_code: int | None,
    last_error: str | None,
    next_attempt_at: str,
    delivered_at: str | None,
) -> None:
    await db.execute(
        _FINISH_DELIVERY,
        {
            "id": delivery_id,
            "status": status,
            "response_code": response_code,
            "last_error": last_error,
            "next_attempt_at": next_attempt_at,
            "delivered_at": delivered_at,
        },
    )


async def list_deliveries(
    db: Connection, subscription_id: int, *, skip: int, limit: int, status: str | None
) -> list[Row]:
    """A subscription's delivery log, newest first."""
    stmt = sa.select(*DELIVERY_COLUMNS).where(deliveries.c.subscription_id == subscription_id)
    if status is not None:
        stmt = stmt.where(deliveries.c.status == status)
    stmt = stmt.order_by(deliveries.c.id.desc()).limit(limit).offset(skip)
    return await db.fetch_all(Query(stmt))


async def get_delivery(db: Connection, subscription_id: int, delivery_id: int) -> Row | None:
    """One delivery of the subscription, with its body."""
    return await db.fetch_one(_GET_DELIVERY, {"id": delivery_id, "subscription_id": subscription_id})


# --- dispatcher state ----------------------------------------------------------------

_READ_STATE = Query(
    sa.select(webhook_state.c.value).where(webhook_state.c.name == param("name")).with_for_update()
)
_INSERT_STATE = Query(sa.insert(webhook_state).values(name=param("name"), value=param("value")))
_UPDATE_STATE = Query(
    sa.update(webhook_state).where(webhook_state.c.name == param("name")).values(value=param("value"))
)


async def read_state(tx: Connection, name: str) -> str | None:
    """A state value, locked until the transaction ends (None when never written)."""
    value = await tx.fetch_value(_READ_STATE, {"name": name})
    return None if value is None else str(value)


async def write_state(tx: Connection, name: str, value: str, *, exists: bool) -> None:
    await tx.execute(_UPDATE_STATE if exists else _INSERT_STATE, {"name": name, "value": value})
