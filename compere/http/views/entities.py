"""``/entities/``: create, list, read, partially update, delete."""

from __future__ import annotations

import io

from aiohttp import web

from compere.http.auth import require_bulk_access
from compere.http.errors import ApiError, json_response, not_found, validation_error
from compere.http.idempotency import record_in_transaction
from compere.http.keys import DATABASE, IDEMPOTENCY_RECEIPT, PROJECT, SETTINGS, WEBHOOKS
from compere.http.schemas import EntityCreate, EntityListQuery, EntityUpdate, ImportQuery
from compere.http.validation import path_id, read_body, read_query
from compere.http.views.shapes import entity_out
from compere.services.transfer import (
    GENERATED_ID_PREFIX,
    ImportFormatError,
    check_utf8,
    import_records,
    read_entity_records,
    text_lines,
)
from compere.services.webhooks import ENTITY_CREATED, IMPORT_FINISHED
from compere.storage import entities as store

_IMPORT_BATCH = 500
_REJECTIONS_SHOWN = 100


async def create_entity(request: web.Request) -> web.Response:
    body = await read_body(request, EntityCreate)
    if body.external_id is not None and body.external_id.startswith(GENERATED_ID_PREFIX):
        raise validation_error(
            ["body", "external_id"],
            f"must not start with {GENERATED_ID_PREFIX} (exports use it for entities without one)",
        )
    webhooks = request.app[WEBHOOKS]
    # The entity commits together with its entity.created event and the answer to its
    # Idempotency-Key, when there are any (a plain insert otherwise).
    keyed = IDEMPOTENCY_RECEIPT in request
    transaction = request.app[DATABASE].transaction() if keyed else webhooks.transaction_for(ENTITY_CREATED)
    async with transaction as conn:
        row = await store.create_entity(
            conn,
            request[PROJECT].id,
            name=body.name,
            description=body.description,
            image_urls=body.image_urls,
            rating=request.app[SETTINGS].elo_initial_rating,
            external_id=body.external_id,
            prior=request[PROJECT].settings.prior,
            prompt=body.prompt,
            attributes=body.attributes,
        )
        await webhooks.record(conn, ENTITY_CREATED, entity_out(row), request[PROJECT].id)
        # 200, not 201: the original answered 200 and its clients may check for it.
        response = json_response(entity_out(row))
        await record_in_transaction(request, conn, response)
    return response


async def list_entities(request: web.Request) -> web.Response:
    query = read_query(request, EntityListQuery)
    db = request.app[DATABASE].reader()  # lists may be slightly stale; GET /entities/{id} is not
    project_id = request[PROJECT].id
    rows = await store.list_entities(db, project_id, skip=query.skip, limit=query.limit, search=query.search)
    total = await store.count_entities(db, project_id, search=query.search)
    return json_response([entity_out(r) for r in rows], headers={"X-Total-Count": str(total)})


async def get_entity(request: web.Request) -> web.Response:
    entity_id = path_id(request, "entity_id", "Entity")
    row = await store.get_entity(request.app[DATABASE], request[PROJECT].id, entity_id)
    if row is None:
        raise not_found("Entity", entity_id)
    return json_response(entity_out(row))


async def update_entity(request: web.Request) -> web.Response:
    entity_id = path_id(request, "entity_id", "Entity")
    body = await read_body(request, EntityUpdate)
    changes = body.model_dump(include=body.model_fields_set)
    # null clears the optional fields; a name cannot be cleared.
    if "name" in changes and changes["name"] is None:
        raise validation_error(["body", "name"], "Input should be a valid string", "string_type")
    for field, empty in (("description", ""), ("image_urls", []), ("attributes", {})):
        if field in changes and changes[field] is None:
            changes[field] = empty
    row = await store.update_entity(request.app[DATABASE], request[PROJECT].id, entity_id, changes)
    if row is None:
        raise not_found("Entity", entity_id)
    return json_response(entity_out(row))


async def delete_entity(request: web.Request) -> web.Response:
    entity_id = path_id(request, "entity_id", "Entity")
    if not await store.delete_entity(request.app[DATABASE], request[PROJECT].id, entity_id):
        raise not_found("Entity", entity_id)
    return json_response({"message": "Entity deleted successfully"})  # the original's words


async def import_entities(request: web.Request) -> web.Response:
    """Bulk import: the body is a CSV or JSON Lines file, as for ``compere import``.

    The body is in memory anyway, so the whole file is read and checked before anything
    is written: a file that cannot be read gets a 400 naming the line, and no rows.
    """
    require_bulk_access(request)
    query = read_query(request, ImportQuery)
    body = await request.read()
    try:
        check_utf8(body)
        records = list(read_entity_records(text_lines(io.BytesIO(body)), query.format))
    except ImportFormatError as exc:
        # A line the reader cannot get past is 422 naming it; a file-level problem, 400.
        raise ApiError(400 if exc.line is None else 422, str(exc)) from None
    summary = await import_records(
        request.app[DATABASE],
        request[PROJECT].id,
        records,
        rating=request.app[SETTINGS].elo_initial_rating,
        prior=request[PROJECT].settings.prior,
        batch_size=_IMPORT_BATCH,
    )
    counts = {
        "created": summary.created,
        "existing": summary.existing,
        "rejected_count": len(summary.rejected),
    }
    webhooks = request.app[WEBHOOKS]
    await webhooks.record(
        request.app[DATABASE], IMPORT_FINISHED, {**counts, "source": "http"}, request[PROJECT].id
    )
    return json_response(
        {
            **counts,
            "rejected": [{"line": r.line, "reason": r.reason} for r in summary.rejected[:_REJECTIONS_SHOWN]],
        }
    )
