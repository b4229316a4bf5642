"""The OpenAPI document covers every route, and /docs works without a CDN."""

from __future__ import annotations

from compere.http.routes import ROUTES


async def test_openapi_lists_every_route_with_its_schemas(client):
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert "200" in op["responses"]
        for status in route.errors:
            assert str(status) in op["responses"]
    create = doc["paths"]["/entities/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create == {"$ref": "#/components/schemas/EntityCreate"}
    entity = doc["components"]["schemas"]["Entity"]
    assert {"id", "name", "description", "image_urls", "rating"} <= set(entity["required"])


async def test_docs_page_and_its_assets_are_served_locally(client):
    page = await client.get("/docs")
    assert page.status == 200
    html = await page.text()
    assert "http://" not in html and "https://" not in html
    for asset in (
        "/docs/swagger-ui/swagger-ui-bundle.js",
        "/docs/swagger-ui/swagger-ui.css",
        "/docs/static/init.js",
    ):
        assert asset in html
        resp = await client.get(asset)
        assert resp.status == 200, asset
        assert len(await resp.read()) > 100


async def test_health_and_readiness(client, make_client):
    health = await (await client.get("/health")).json()
    assert health["status"] == "healthy" and health["version"] and health["timestamp"]
    ready = await client.get("/health/ready")
    assert ready.status == 200
    assert (await ready.json())["checks"]["database"] == "ok"
    # A configured Redis that does not answer makes the service not ready, quickly.
    broken = await make_client(REDIS_URL="redis://127.0.0.1:1/0")
    resp = await broken.get("/health/ready")
    assert resp.status == 503
    assert (await resp.json())["checks"]["redis"] == "unavailable"


async def test_request_ids_are_echoed_or_made(client):
    resp = await client.get("/health", headers={"X-Request-ID": "abcdef0123456789"})
    assert resp.headers["X-Request-ID"] == "abcdef0123456789"
    resp = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert resp.headers["X-Request-ID"] != "bad id with spaces" and len(resp.headers["X-Request-ID"]) == 32
