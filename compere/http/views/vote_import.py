"""``POST /comparisons/import`` (and ``/projects/{slug}/comparisons/import``, for the
project's editors): a vote log streamed in the request body (see
:mod:`compere.services.vote_import`)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from compere.http.auth import require_bulk_access
from compere.http.errors import ApiError, json_response
from compere.http.keys import DATABASE, PROJECT, SETTINGS, USER, VOTER_IDS
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
        trust=request.app[SETTINGS].trust,
        judge_voter=_judge_voter(request),
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


def _judge_voter(request: web.Request) -> Callable[[str], str]:
    """An arena judge's voter id: sent by an API key, the id that key's votes get for a
    ``voter`` field of the same name (one voter whether its votes came live or in a file);
    otherwise the import namespace ``compere import comparisons`` uses too."""
    voter_ids, caller = request.app[VOTER_IDS], request.get(USER)
    if caller is not None and caller.api_key is not None:
        key_id = caller.api_key.id
        return lambda judge: voter_ids.on_behalf_of(key_id, judge)
    return voter_ids.judge
