"""``/export/comparisons`` and ``/export/entities``: a table as a streamed download.

The same formats as ``compere export`` (JSON Lines or CSV); the entity export is a
valid file for ``compere import`` and ``POST /entities/import``.
"""

from __future__ import annotations

import logging

from aiohttp import web

from compere.http.errors import start_stream
from compere.http.keys import DATABASE
from compere.http.permissions import require_bulk_permission
from compere.http.schemas import ExportQuery
from compere.http.validation import read_query
from compere.storage import queries
from compere.storage.database import DatabaseError
from compere.transfer import MEDIA_TYPES, RowEncoder, export_columns

log = logging.getLogger(__name__)

_BATCH = 2000


async def export_comparisons(request: web.Request) -> web.StreamResponse:
    await require_bulk_permission(request, "export comparisons")
    return await _stream_table(request, "comparisons", live_only=False)


async def export_entities(request: web.Request) -> web.StreamResponse:
    await require_bulk_permission(request, "export entities")
    # Deleted entities leave exports, as they leave the API; their votes stay.
    return await _stream_table(request, "entities", live_only=True)


async def _stream_table(request: web.Request, table: str, *, live_only: bool) -> web.StreamResponse:
    query = read_query(request, ExportQuery)
    db = request.app[DATABASE]
    columns = await queries.column_names(db, table)
    encoder = RowEncoder(query.format, export_columns(columns))
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{MEDIA_TYPES[query.format]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{table}.{query.format}"',
            "Cache-Control": "no-store",
        }
    )
    response.enable_chunked_encoding()
    if not await start_stream(request, response):
        return response
    await response.write(encoder.header().encode())
    try:
        async for rows in queries.iter_rows(db, table, columns, live_only=live_only, batch_size=_BATCH):
            await response.write(encoder.encode(rows).encode())
    except DatabaseError as exc:
        # The status line is already sent: cut the connection so the client sees an
        # incomplete download instead of a file that silently ends early.
        log.warning("export aborted: %s", exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
