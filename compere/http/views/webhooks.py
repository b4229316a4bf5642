"""``/webhooks/`` (the default project's, superusers) and ``/projects/{slug}/webhooks/``
(the project's owners): subscriptions, their delivery log, and replays. A subscription
hears the events of its own project only."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web
from yarl import URL

from compere.http.auth import require_bulk_access
from compere.http.errors import json_response, not_found, validation_error
from compere.http.keys import DATABASE, PROJECT, WEBHOOKS
from compere.http.schemas import DeliveryListQuery, WebhookCreate, WebhookUpdate
from compere.http.validation import path_id, read_body, read_query
from compere.infra.outbound import literal_address
from compere.services.webhooks import WebhookDispatcher
from compere.storage import webhooks as store
from compere.storage.database import Row
from compere.storage.timestamps import as_datetime, utc_now


def subscription_out(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "events": json.loads(row["events"]),
        "description": row["description"],
        "active": bool(row["active"]),
        "created_at": as_datetime(row["created_at"]),
        "updated_at": as_datetime(row["updated_at"]),
    }


def delivery_out(row: Row) -> dict[str, Any]:
    def moment(name: str) -> Any:
        return None if row[name] is None else as_datetime(row[name])

    return {
        "id": row["id"],
        "subscription_id": row["subscription_id"],
        "event_type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": moment("next_attempt_at") if row["status"] == "pending" else None,
        "last_attempt_at": moment("last_attempt_at"),
        "response_code": row["response_code"],
        "last_error": row["last_error"],
        "replay_of": row["replay_of"],
        "created_at": moment("created_at"),
        "delivered_at": moment("delivered_at"),
    }


def _check_destination(dispatcher: WebhookDispatcher, url: str) -> None:
    """Refuse an address literal the dispatcher would refuse (names are checked when sent)."""
    host = URL(url).host or ""
    literal = literal_address(host)
    reason = dispatcher.policy.refusal(literal) if literal is not None else None
    if reason is not None:
        raise validation_error(["body", "url"], f"Webhooks may not reach {literal}: it is {reason}")


async def create_webhook(request: web.Request) -> web.Response:
    require_bulk_access(request)
    body = await read_body(request, WebhookCreate)
    dispatcher = request.app[WEBHOOKS]
    _check_destination(dispatcher, body.url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = await store.create_subscription(
        request.app[DATABASE],
        project_id=request[PROJECT].id,
        url=body.url,
        events=sorted(set(body.events)),
        secret=secret,
        description=body.description,
        active=body.active,
        now=utc_now(),
    )
    await dispatcher.subscriptions_changed()
    return json_response({**subscription_out(row), "secret": secret})


async def list_webhooks(request: web.Request) -> web.Response:
    require_bulk_access(request)
    rows = await store.list_subscriptions(request.app[DATABASE], request[PROJECT].id)
    return json_response([subscription_out(row) for row in rows])


async def _subscription(request: web.Request) -> tuple[int, Row]:
    subscription_id = path_id(request, "webhook_id", "Webhook")
    row = await store.get_subscription(request.app[DATABASE], subscription_id, request[PROJECT].id)
    if row is None:
        raise not_found("Webhook", subscription_id)
    return subscription_id, row


async def get_webhook(request: web.Request) -> web.Response:
    require_bulk_access(request)
    _, row = await _subscription(request)
    return json_response(subscription_out(row))


async def update_webhook(request: web.Request) -> web.Response:
    require_bulk_access(request)
    subscription_id = path_id(request, "webhook_id", "Webhook")
    body = await read_body(request, WebhookUpdate)
    changes = body.model_dump(include=body.model_fields_set)
    for name in ("url", "events", "active"):
        if name in changes and changes[name] is None:
            raise validation_error(["body", name], "Input must not be null", "none_forbidden")
    if changes.get("description", "") is None:
        changes["description"] = ""
    if "url" in changes:
        _check_destination(request.app[WEBHOOKS], changes["url"])
    if "events" in changes:
        changes["events"] = sorted(set(changes["events"]))
    db, project_id = request.app[DATABASE], request[PROJECT].id
    if changes:
        row = await store.update_subscription(db, subscription_id, project_id, changes, utc_now())
    else:
        row = await store.get_subscription(db, subscription_id, project_id)
    if row is None:
        raise not_found("Webhook", subscription_id)
    await request.app[WEBHOOKS].subscriptions_changed()
    return json_response(subscription_out(row))


async def delete_webhook(request: web.Request) -> web.Response:
    require_bulk_access(request)
    subscription_id = path_id(request, "webhook_id", "Webhook")
    if not await store.delete_subscription(request.app[DATABASE], subscription_id, request[PROJECT].id):
        raise not_found("Webhook", subscription_id)
    await request.app[WEBHOOKS].subscriptions_changed()
    return json_response({"message": f"Webhook {subscription_id} deleted"})


async def list_deliveries(request: web.Request) -> web.Response:
    require_bulk_access(request)
    subscription_id, _ = await _subscription(request)
    query = read_query(request, DeliveryListQuery)
    rows = await store.list_deliveries(
        request.app[DATABASE], subscription_id, skip=query.skip, limit=query.limit, status=query.status
    )
    return json_response([delivery_out(row) for row in rows])


async def replay_delivery(request: web.Request) -> web.Response:
    """Queue the same body again as a new delivery (after the ones already queued)."""
    require_bulk_access(request)
    subscription_id, _ = await _subscription(request)
    delivery_id = path_id(request, "delivery_id", "Delivery")
    db = request.app[DATABASE]
    original = await store.get_delivery(db, subscription_id, delivery_id)
    if original is None:
        raise not_found("Delivery", delivery_id)
    async with db.transaction() as tx:
        row = await store.insert_delivery(
            tx,
            subscription_id=subscription_id,
            event_type=original["event_type"],
            body=original["body"],
            now=utc_now(),
            replay_of=delivery_id,
        )
    request.app[WEBHOOKS].wake()
    return json_response(delivery_out(row))
