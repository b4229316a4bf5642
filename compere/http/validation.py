"""Turning request bodies, query strings and path parts into validated models."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from compere.domain.inputs import issue_message
from compere.http.errors import ApiError, not_found
from compere.http.schemas import MAX_ID

M = TypeVar("M", bound=BaseModel)


def _issues(exc: ValidationError, prefix: str) -> list[dict[str, Any]]:
    # Never echo the input back: it may hold a password or a huge string.
    return [
        {"loc": [prefix, *err["loc"]], "msg": issue_message(err), "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def parse_json(raw: bytes) -> Any:
    """Decode a JSON body; 400 when it is not JSON at all."""
    if not raw.strip():
        raise ApiError(400, "Request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        # orjson refuses lone surrogate escapes that JSON itself allows; let the
        # schema reject those with a field-level message instead.
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "Request body is not valid JSON") from None


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type such as ``application/merge-patch+json``.

    ``content_type`` is aiohttp's ``request.content_type``: the media type without
    parameters (so a charset is fine), lower-cased, ``application/octet-stream`` when
    the header is missing.
    """
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def require_json_content_type(request: web.Request) -> None:
    """415 for a body that does not say it is JSON.

    Browsers send ``text/plain``, form and multipart bodies across sites without asking
    the server first (a CORS "simple request"); only a JSON type needs a preflight. So a
    JSON body must say it is one, or a hostile page could make a visitor's browser post it.
    """
    if request.body_exists and not is_json_media_type(request.content_type):
        raise ApiError(415, "Content-Type must be application/json")


async def read_body(request: web.Request, model: type[M]) -> M:
    """Validate a JSON object body against ``model`` (415 unless sent as JSON, 422 with
    per-field messages)."""
    require_json_content_type(request)
    data = parse_json(await request.read())
    if not isinstance(data, dict):
        raise ApiError(422, [{"loc": ["body"], "msg": "Input should be a JSON object", "type": "model_type"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, _issues(exc, "body")) from None


def read_query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise ApiError(422, _issues(exc, "query")) from None


def path_id(request: web.Request, name: str, kind: str) -> int:
    """An integer id from the path: 422 when not a number, 404 when it cannot exist."""
    raw = request.match_info[name]
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            422, [{"loc": ["path", name], "msg": "Input should be a valid integer", "type": "int_parsing"}]
        ) from None
    if not 1 <= value <= MAX_ID:
        raise not_found(kind, raw)
    return value
