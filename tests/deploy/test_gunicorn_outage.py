"""A PostgreSQL outage under the shipped gunicorn config: every answer is 200 or 503.

The app runs in gunicorn exactly as ``gunicorn.conf.py`` ships it (its worker class,
uvloop when installed) on a PostgreSQL server the test owns, while several clients
vote; the server is stopped (as for maintenance, then as in a crash) and started again.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp

from tests.helpers import OUTAGE_VOTERS, VoteLoad, assert_exactly_once, seed, wait_ready
from tests.servers import REPO


def shipped_worker_class() -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"), "--print-config"],
        check=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    for line in result.stdout.splitlines():
        name, _, value = line.partition(" = ")
        if name.strip() == "worker_class":
            return value.strip()
    raise AssertionError("gunicorn --print-config shows no worker_class")


async def test_postgres_outage_under_the_shipped_worker_answers_only_200_or_503(
    gunicorn_factory, own_postgres
):
    assert shipped_worker_class() == "aiohttp.GunicornUVLoopWebWorker"
    url = own_postgres.create_database("compere")
    app = gunicorn_factory(
        workers=2,
        DATABASE_URL=url,
        DB_POOL_MAX="4",
        DB_POOL_TIMEOUT="1",
        DB_STATEMENT_TIMEOUT_MS="2000",
    )
    base = f"http://127.0.0.1:{app.port}"
    recoveries = []
    async with aiohttp.ClientSession() as session:
        ids = await seed(session, base)
        load = VoteLoad(session, base, ids, keyed=False)
        load.start()
        for mode in ("fast", "immediate", "fast"):
            await asyncio.sleep(0.8)
            await asyncio.to_thread(own_postgres.stop, mode)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(own_postgres.start)
            recoveries.append(await wait_ready(session, base, within=15))
        await asyncio.sleep(0.8)
        await load.stop()

    log = app.log.read_text(errors="replace")
    print(f"\nstatuses {dict(load.statuses)}, recovery after restart {[round(r, 2) for r in recoveries]} s")
    assert set(load.statuses) <= {200, 503}, dict(load.statuses)
    assert load.statuses[200] > 0 and load.statuses[503] > 0
    assert all(r < 5 for r in recoveries)
    assert "Traceback" not in log, log[-4000:]
    # A vote in flight when a stop kills its backend may be committed yet answered 503.
    assert_exactly_once(url, load.acknowledged, in_doubt=OUTAGE_VOTERS * 3)
