"""The OpenAPI 3.0.3 document, generated from the route table, and the local ``/docs`` page."""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from compere import __version__
from compere.http import idempotency, schemas
from compere.http.errors import json_response
from compere.http.routes import Route
from compere.http.static_files import STATIC_DIR

_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {
    200: "Success",
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    415: "Content-Type is not application/json",
    422: "Validation error",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}
_IDEMPOTENCY_PARAMETER = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the first successful answer for this key is stored for 24 hours "
        "and replayed to retries; the same key with a different body gets 422, a retry while "
        "the first request still runs gets 409."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency.MAX_KEY_LENGTH,
        "pattern": "^[ -~]+$",
    },
}
SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The access_token from POST /auth/token, or an API key (ck_...)",
    },
    "apiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key from POST /auth/api-keys; acts within its scopes and project",
    },
    "cookieAuth": {
        "type": "apiKey",
        "in": "cookie",
        "name": "__Host-compere_token",
        "description": "With AUTH_COOKIE=true; writes also need the X-CSRF-Token header",
    },
}


def _schema_of(annotation: Any, defs: dict[str, Any], mode: str) -> dict[str, Any]:
    schema = TypeAdapter(annotation).json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
    defs.update(schema.pop("$defs", {}))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        defs[annotation.__name__] = schema
        return {"$ref": _REF.format(model=annotation.__name__)}
    return schema


def _query_parameters(model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "Requests allowed per window", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in the window", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {
        "description": "UTC epoch seconds when one more request becomes possible",
        "schema": {"type": "integer"},
    },
    "RateLimit-Policy": {"description": "Quota policy (IETF draft)", "schema": {"type": "string"}},
    "RateLimit": {"description": "Current quota (IETF draft)", "schema": {"type": "string"}},
}


_ID_SCHEMA = {"type": "integer", "minimum": 1}
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    "username": {"type": "string", "minLength": 1, "maxLength": 254},
}
_ROLES_NOTE = (
    " Roles: viewer reads, voter also gets pairs and votes, editor also changes entities"
    " and imports or exports, owner also manages the project; superusers may do everything."
    " A private project is 404 to non-members; an archived one is read-only."
    " With AUTH_ENABLED=false every project is open."
)
_PROJECT_ACCESS: dict[str | None, str] = {
    "read": "Needs read access to the project (anyone on a public project)." + _ROLES_NOTE,
    "vote": "Needs the voter role (any signed-in user on a public project; anyone where it"
    " accepts anonymous votes)." + _ROLES_NOTE,
    "write": "Needs the editor role." + _ROLES_NOTE,
    "admin": "Needs the owner role." + _ROLES_NOTE,
}
_PROJECT_MANAGEMENT = "Access as the summary says." + _ROLES_NOTE


def _operation(route: Route, defs: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": f"{route.operation_prefix}{route.method.lower()}_{route.handler.__name__}",
    }
    params = [
        {"name": p, "in": "path", "required": True, "schema": _PATH_SCHEMAS.get(p, _ID_SCHEMA)}
        for p in route.path_params
    ]
    if route.query is not None:
        params += _query_parameters(route.query, defs)
    if route.idempotent:
        params.append(_IDEMPOTENCY_PARAMETER)
    if params:
        op["parameters"] = params
    if route.body is not None:
        body_schema = _schema_of(route.body, defs, "validation")
        content = {"application/json": {"schema": body_schema}}
        if route.form_body:
            content["application/x-www-form-urlencoded"] = {"schema": body_schema}
        op["requestBody"] = {"required": True, "content": content}
    ok: dict[str, Any] = {"description": _STATUS_TEXT[200]}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": _schema_of(route.response, defs, "serialization")}}
    headers = dict(route.headers)
    if route.idempotent:
        headers[idempotency.REPLAYED_HEADER] = "`true` when this is the stored answer to an earlier request"
    if headers:
        ok["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    responses: dict[str, Any] = {"200": ok}
    error_ref = _schema_of(schemas.Error, defs, "serialization")
    errors = set(route.errors) | ({400, 409, 422, 503} if route.idempotent else set())
    if route.body is not None:
        errors.add(415)  # a body must be sent as application/json (form_body routes: or a form)
    if route.access == "project":
        op["security"] = [{}, *({name: []} for name in SECURITY_SCHEMES)]
        errors |= {401, 403, 404}
        op["description"] = _PROJECT_ACCESS.get(route.project_action, _PROJECT_MANAGEMENT)
    elif route.access == "public":
        op["security"] = []
    else:
        op["security"] = [{name: []} for name in SECURITY_SCHEMES]
        errors.add(401)
        if route.access == "superuser":
            errors.add(403)
        if not route.auth_always:
            op["description"] = "Needs a token when AUTH_ENABLED=true; open otherwise."
    limited = not (route.path == "/health" or route.path.startswith("/health/"))
    if limited:  # with RATE_LIMIT_ENABLED, every route but /health is limited
        ok.setdefault("headers", {}).update(_RATE_LIMIT_HEADERS)
        errors.add(429)
    for status in sorted(errors):
        body = route.error_bodies.get(status)
        schema = error_ref if body is None else _schema_of(body, defs, "serialization")
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": schema}},
        }
    if limited:
        responses["429"]["headers"] = {
            **_RATE_LIMIT_HEADERS,
            "Retry-After": {
                "description": "Seconds until a request can succeed",
                "schema": {"type": "integer"},
            },
        }
    op["responses"] = responses
    return op


def as_openapi30(schema: Any) -> Any:
    """Rewrite pydantic's JSON Schema (2020-12) into the OpenAPI 3.0 dialect.

    The bundled Swagger UI renders only OpenAPI 3.0, so ``{"anyOf": [X, {"type":
    "null"}]}`` becomes ``X`` with ``nullable: true`` and ``const`` becomes ``enum``.
    """
    if isinstance(schema, list):
        return [as_openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: as_openapi30(value) for key, value in schema.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out.update(rest[0])
        elif len(rest) == 1:
            out["allOf"] = rest
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "prefixItems" in out:
        out.pop("prefixItems")
    return out


def build_openapi(routes: list[Route]) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.documented:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, defs)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Compere",
            "version": __version__,
            "description": "Pairwise comparison ranking: entities, comparisons, leaderboards, active pairing.",
        },
        "paths": as_openapi30(paths),
        "components": {
            "schemas": as_openapi30(dict(sorted(defs.items()))),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


# The /docs and /redoc pages: scripts, styles and the document from this origin only, no
# inline scripts. Swagger UI and ReDoc set inline styles and use data: images; ReDoc runs
# its search index in a worker it builds from a blob: URL. nginx sends the same policy.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "worker-src blob:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)


def setup_openapi(app: web.Application, routes: list[Route]) -> None:
    """Serve ``/openapi.json`` and the ``/docs`` (Swagger UI) and ``/redoc`` pages.

    The pages' assets come from this package, and only the files the pages load are
    served (not the rest of the Swagger UI bundle: its demo page, OAuth2 redirect page
    and source maps).
    """

    @cache
    def document() -> dict[str, Any]:
        return build_openapi(routes)

    async def openapi_json(request: web.Request) -> web.Response:
        return json_response(document())

    app.router.add_get("/openapi.json", openapi_json)
    docs = STATIC_DIR / "docs"
    app.router.add_get("/docs", _file(docs / "index.html", DOCS_CONTENT_SECURITY_POLICY))
    app.router.add_get("/redoc", _file(docs / "redoc.html", DOCS_CONTENT_SECURITY_POLICY))
    swagger_ui = _swagger_ui_dir()
    assets = {
        "/docs/static/init.js": docs / "init.js",
        "/docs/redoc/redoc.standalone.js": docs / "redoc" / "redoc.standalone.js",
        **{
            f"/docs/swagger-ui/{name}": swagger_ui / name
            for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
        },
    }
    for path, file in assets.items():
        app.router.add_get(path, _file(file))


def _file(path: Path, policy: str | None = None) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    headers = {"Content-Security-Policy": policy} if policy else None

    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers=headers)

    serve.__name__ = f"serve_{path.stem.replace('-', '_').replace('.', '_')}"
    return serve


def _swagger_ui_dir() -> Path:
    import swagger_ui_bundle

    return Path(typing.cast(str, swagger_ui_bundle.swagger_ui_path))
