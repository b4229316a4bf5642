"""Load a CSV of items and a CSV of judgements made elsewhere into Compere.

    python examples/import_judgements.py http://127.0.0.1:8090 items.csv judgements.csv

``items.csv`` is an import file (``external_id,name,description``; see
docs/import-export.md): items already on the server, matched on ``external_id``, are left
alone. ``judgements.csv`` has the columns ``a,b,winner``: two items' ``external_id`` and
the preferred one's ``external_id``, or ``tie`` (or nothing) for a tie.

Judgements are recorded as ordinary votes. They come without a ``pair_token`` (the pairs
were not served by Compere), which the server accepts: the vote is stored without the
pair's provenance. Each one is sent with an ``Idempotency-Key`` derived from the file and
its row, so running the script again (after an interruption, say) within the server's
``IDEMPOTENCY_TTL`` (24 hours by default) stores nothing twice.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from evaluation_loop import print_leaderboard

from compere.client import AsyncClient, RetryPolicy

TIE = {"", "tie"}


def read_judgements(path: Path) -> Iterator[tuple[int, str, str, str | None]]:
    """(row number, a, b, winner or None) for every row; bad rows stop the script with their number."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        for row_number, row in enumerate(csv.DictReader(file), start=2):
            a, b = (row.get("a") or "").strip(), (row.get("b") or "").strip()
            winner = (row.get("winner") or "").strip()
            if not a or not b or (winner.lower() not in TIE and winner not in (a, b)):
                raise SystemExit(f"{path}:{row_number}: need a, b and a winner that is a, b or 'tie'")
            yield row_number, a, b, None if winner.lower() in TIE else winner


async def record_judgements(
    compere: AsyncClient, path: Path, namespace: str, concurrency: int
) -> tuple[int, list[str]]:
    """Send every judgement as a vote; returns (recorded, problems)."""
    ids: dict[str, int] = {}
    async for entity in compere.iter_entities(page_size=1000):
        if entity.external_id is not None:
            ids[entity.external_id] = entity.id
    rows = read_judgements(path)
    recorded = 0
    problems: list[str] = []

    async def worker() -> None:
        nonlocal recorded
        for row_number, a, b, winner in rows:  # one shared iterator: each row goes to one worker
            missing = [x for x in (a, b) if x not in ids]
            if missing:
                problems.append(f"row {row_number}: unknown item {', '.join(missing)}")
                continue
            key = hashlib.sha256(f"{namespace}\n{row_number}\n{a}\n{b}\n{winner}".encode()).hexdigest()
            await compere.vote(ids[a], ids[b], None if winner is None else ids[winner], idempotency_key=key)
            recorded += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return recorded, problems


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", help="base URL, e.g. http://127.0.0.1:8090")
    parser.add_argument("items", type=Path, help="CSV of items (external_id,name,description)")
    parser.add_argument("judgements", type=Path, help="CSV of judgements (a,b,winner)")
    parser.add_argument("--concurrency", type=int, default=16, help="votes in flight (16)")
    parser.add_argument(
        "--namespace",
        help="what makes this file's idempotency keys its own (default: the file's absolute path)",
    )
    parser.add_argument("--token", default=os.environ.get("COMPERE_TOKEN"), help="bearer token, if needed")
    args = parser.parse_args(argv)
    namespace = args.namespace or str(args.judgements.resolve())
    retry = RetryPolicy(attempts=10, max_delay=5.0)
    async with AsyncClient(
        args.server, token=args.token, concurrency=args.concurrency, retry=retry
    ) as compere:
        result = await compere.import_entities(args.items, format="csv")
        print(
            f"items: {result.created} new, {result.existing} already there, {result.rejected_count} rejected"
        )
        for rejection in result.rejected:
            print(f"  line {rejection.line}: {rejection.reason}", file=sys.stderr)
        recorded, problems = await record_judgements(compere, args.judgements, namespace, args.concurrency)
        print(f"judgements: {recorded} recorded, {len(problems)} skipped\n")
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        await print_leaderboard(compere)
    return 1 if problems or result.rejected_count else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
