"""``/export/comparisons``: the whole vote log as a streamed download (JSON Lines or CSV)."""

from __future__ import annotations

import logging

from aiohttp import web

from compere.http.errors import ApiError
from compere.http.keys import DATABASE, SETTINGS
from compere.http.schemas import ExportQuery
from compere.http.validation import read_query
from compere.storage import queries
from compere.storage.database import DatabaseError
from compere.transfer import MEDIA_TYPES, RowEncoder, export_columns

log = logging.getLogger(__name__)

_BATCH = 2000


async def require_export_permission(request: web.Request) -> None:
    """AUTH HOOK: exports are for superusers.

    With ``AUTH_ENABLED=false`` the API is open, as in the original, and so is this.
    With auth on, this refuses everyone until it is wired to the auth module's
    superuser guard (replace the body with ``await require_superuser(request)``):
    it fails closed, never open.
    """
    if request.app[SETTINGS].auth_enabled:
        raise ApiError(403, "Exporting comparisons needs a superuser")


async def export_comparisons(request: web.Request) -> web.StreamResponse:
    await require_export_permission(request)
    query = read_query(request, ExportQuery)
    db = request.app[DATABASE]
    columns = await queries.column_names(db, "comparisons")
    encoder = RowEncoder(query.format, export_columns(columns))
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{MEDIA_TYPES[query.format]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="comparisons.{query.format}"',
            "Cache-Control": "no-store",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(encoder.header().encode())
    try:
        async for rows in queries.iter_rows(db, "comparisons", columns, batch_size=_BATCH):
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
