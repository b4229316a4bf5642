"""``/voters`` and ``/projects/{slug}/voters``: each voter's reliability, weight and
influence (superusers; a project's owners)."""

from __future__ import annotations

from aiohttp import web

from compere.http.errors import json_response
from compere.http.keys import DATABASE, PROJECT
from compere.http.schemas import VotersQuery
from compere.http.validation import read_query
from compere.services.voters import voters_report


async def list_voters(request: web.Request) -> web.Response:
    query = read_query(request, VotersQuery)
    project = request[PROJECT]
    policy = project.settings.trust
    report = await voters_report(
        request.app[DATABASE], project.id, policy, project.settings.prior, skip=query.skip, limit=query.limit
    )
    body = {"mode": policy.mode, "voters": report.voters, "few_voter_entities": report.few_voter_entities}
    return json_response(body, headers={"X-Total-Count": str(report.total)})
