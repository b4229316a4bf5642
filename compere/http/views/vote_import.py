"""``POST /comparisons/import`` (and ``/projects/{slug}/comparisons/import``, for the
project's editors): a vote log streamed in the request body (see
:mod:`compere.services.vote_import`)."""

from __future__ import annotations

from aiohttp import web

from compere.http.auth import require_bulk_access
from compere.http.errors import ApiError, json_response
from compere.http.keys import DATABASE, PROJECT, SETTINGS
from compere.http.schemas import VoteImportQuery
from compere.http.validation import read_query
from compere.services.vote_import import (
    VoteFileError,
    VoteImportOptions,
    VoteImportSummary,
    file_lines,
    import_votes,
)


async def import_comparisons(request: web.Request) -> web.Response:
    """Read the body line by line, storing votes in batches as they come (never the whole
    file in memory). 200 with the summary whenever the import ran, also when it stopped
    early (``complete: false``: the stored part stays, sending the file again goes on);
    422 when the body is not a vote log or not the file an earlier run read."""
    require_bulk_access(request)
    query = read_query(request, VoteImportQuery)
    project = request[PROJECT]
    options = VoteImportOptions(
        fmt=query.format,
        k_factor=project.settings.elo_k_factor,
        rating=request.app[SETTINGS].elo_initial_rating,
        prior=project.settings.prior,
        max_rejected=0 if query.on_error == "stop" else query.max_rejected,
        source=query.source,
        project_id=project.id,
    )
    summary = VoteImportSummary()
    try:
        await import_votes(request.app[DATABASE], file_lines(request.content.readline), options, summary)
    except VoteFileError as exc:
        raise ApiError(422, str(exc)) from None
    return json_response(
        {
            "kind": summary.kind,
            "source": summary.source,
            "stored": summary.stored,
            "already_imported": summary.already_imported,
            "rejected_count": summary.rejected_count,
            "rejected": [{"line": r.line, "reason": r.reason} for r in summary.rejected],
            "entities_created": summary.entities_created,
            "lines_done": summary.lines_done,
            "complete": summary.complete,
            "stopped_line": summary.stopped_line,
            "stopped": summary.stopped,
        }
    )
