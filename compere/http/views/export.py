"""Streamed downloads: the comparison and entity tables (JSON Lines or CSV, as
``compere export``; the entity export is a valid import file) and preference datasets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from compere.http.auth import require_bulk_access
from compere.http.errors import start_stream
from compere.http.keys import DATABASE, PROJECT, SETTINGS
from compere.http.schemas import ExportQuery, PreferenceExportQuery
from compere.http.validation import read_query
from compere.services.transfer import (
    MEDIA_TYPES,
    RowEncoder,
    comparison_export_columns,
    encode_preferences,
    export_columns,
    judge_key,
)
from compere.storage import bulk
from compere.storage.database import DatabaseError

log = logging.getLogger(__name__)

_BATCH = 2000


async def export_comparisons(request: web.Request) -> web.StreamResponse:
    require_bulk_access(request)
    return await _stream_table(request, "comparisons", live_only=False)


async def export_entities(request: web.Request) -> web.StreamResponse:
    require_bulk_access(request)
    # Deleted entities leave exports, as they leave the API; their votes stay.
    return await _stream_table(request, "entities", live_only=True)


async def _stream_table(request: web.Request, table: str, *, live_only: bool) -> web.StreamResponse:
    query = read_query(request, ExportQuery)
    db = request.app[DATABASE]
    columns = await db.column_names(table)
    reader = db.reader()  # exports may be slightly stale: the replica's when there is one
    comparisons = table == "comparisons"
    shown = comparison_export_columns(columns) if comparisons else export_columns(columns)
    encoder = RowEncoder(query.format, shown)

    async def chunks() -> AsyncIterator[str]:
        yield encoder.header()
        project_id = request[PROJECT].id
        if comparisons:
            batches = bulk.iter_comparisons_for_export(reader, project_id, columns, batch_size=_BATCH)
        else:
            batches = bulk.iter_rows(
                reader, project_id, table, columns, live_only=live_only, batch_size=_BATCH
            )
        async for rows in batches:
            yield encoder.encode(rows)

    return await _stream(request, f"{table}.{query.format}", MEDIA_TYPES[query.format], chunks())


async def export_preferences(request: web.Request) -> web.StreamResponse:
    """``dpo`` or ``arena`` JSON Lines from the vote log (see docs/import-export.md)."""
    require_bulk_access(request)
    query = read_query(request, PreferenceExportQuery)
    db = request.app[DATABASE].reader()
    key = judge_key(request.app[SETTINGS].secret_key)
    keep_ties = query.ties == "keep"

    async def chunks() -> AsyncIterator[str]:
        batches = bulk.iter_votes_with_entities(
            db, request[PROJECT].id, same_prompt=query.format == "dpo", batch_size=_BATCH
        )
        async for rows in batches:
            yield encode_preferences(rows, query.format, keep_ties=keep_ties, judge_key=key)

    return await _stream(request, f"preferences-{query.format}.jsonl", MEDIA_TYPES["jsonl"], chunks())


async def _stream(
    request: web.Request, filename: str, media_type: str, chunks: AsyncIterator[str]
) -> web.StreamResponse:
    """Send ``chunks`` as a chunked download, one batch in memory at a time."""
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{media_type}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        }
    )
    response.enable_chunked_encoding()
    if not await start_stream(request, response):
        return response
    try:
        async for text in chunks:
            if text:
                await response.write(text.encode())
    except DatabaseError as exc:
        # The status line is already sent: cut the connection so the client sees an
        # incomplete download instead of a file that silently ends early.
        log.warning("export aborted: %s", exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
