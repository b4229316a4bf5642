"""A statement that outlasts aiopg's own client-side timeout is a 503, never a 500.

Found by the benchmark: at N = 100,000 whole-leaderboard reads on a loaded machine ran
past the pool's ``timeout=`` and aiopg raised ``TimeoutError``, which reached the error
middleware as an unhandled exception. Here a row lock held by another connection keeps a
vote waiting past that timeout (server-side statement timeout off, so only aiopg's own
timeout can fire).
"""

from __future__ import annotations

import psycopg2
import pytest

from compere.http.app import create_app
from compere.settings import load_settings
from tests.helpers import NO_DOTENV, empty_postgres

pytestmark = pytest.mark.postgres


async def test_a_vote_stuck_past_the_driver_timeout_is_a_503(
    aiohttp_client, shared_postgres_url: str
) -> None:
    empty_postgres(shared_postgres_url)
    settings = load_settings(
        {
            "DATABASE_URL": shared_postgres_url,
            "DB_STATEMENT_TIMEOUT_MS": "0",  # only aiopg's timeout (about 1 s here) can fire
            "DB_POOL_TIMEOUT": "0.5",
        },
        dotenv=NO_DOTENV,
    )
    client = await aiohttp_client(await create_app(settings, configure_logs=False))
    ids = []
    for name in ("first", "second"):
        response = await client.post("/entities/", json={"name": name, "description": "", "image_urls": []})
        assert response.status == 200
        ids.append((await response.json())["id"])

    holder = psycopg2.connect(shared_postgres_url)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT id FROM entities WHERE id = %s FOR UPDATE", (ids[0],))
            response = await client.post(
                "/comparisons/",
                json={"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[0]},
            )
    finally:
        holder.rollback()
        holder.close()

    assert response.status == 503
    assert response.headers.get("Retry-After")
    body = await response.json()
    assert "Traceback" not in str(body) and "TimeoutError" not in str(body)

    # The service is still healthy afterwards: the broken connection left the pool.
    response = await client.post(
        "/comparisons/", json={"entity1_id": ids[0], "entity2_id": ids[1], "selected_entity_id": ids[1]}
    )
    assert response.status == 200
