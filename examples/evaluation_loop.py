"""An evaluation loop: ask Compere for the next pair, let a judge decide, record the verdict.

Run it against a server that already holds the items to rank::

    python examples/evaluation_loop.py http://127.0.0.1:8090 --judge mymodule:judge \\
        --budget 500 --concurrency 8 --journal run.jsonl

The judge is any function ``judge(a, b)`` taking two :class:`~compere.http.schemas.Entity`
objects and returning the preferred one, or None for a tie (it may be ``async``).

**Crash-safe.** The loop writes each verdict to ``--journal`` (JSON Lines) *before* sending
it, and a second line once the server has stored it. Every vote's ``Idempotency-Key`` is
``<run id>-<step>``, both read back from the journal, so re-running the same command after a
crash sends the unconfirmed verdicts again under their old keys (the server answers them
from its idempotency store instead of storing them twice), then carries on until the
budget is spent. The budget counts verdicts in the journal, so it is never exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import inspect
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from compere.client import AsyncClient, BadRequest, Conflict, RetryPolicy
from compere.http.schemas import Entity, Pair

Judge = Callable[[Entity, Entity], Entity | Awaitable[Entity | None] | None]


@dataclasses.dataclass
class Verdict:
    step: int
    entity1_id: int
    entity2_id: int
    winner_id: int | None
    pair_token: str | None


@dataclasses.dataclass
class Journal:
    """The loop's own state: its run id, every verdict, and which ones the server confirmed."""

    path: Path
    run_id: str = ""
    verdicts: dict[int, Verdict] = dataclasses.field(default_factory=dict)
    confirmed: set[int] = dataclasses.field(default_factory=set)
    _out: TextIO | None = None

    @classmethod
    def open(cls, path: Path) -> Journal:
        journal = cls(path)
        if path.exists():
            text = path.read_text()
            if text and not text.endswith("\n"):
                # The crash cut the last line short: its vote was never sent. Drop the
                # fragment, or the next entry would be glued to it and lost in its turn.
                text = text[: text.rfind("\n") + 1]
                with path.open("r+") as torn:
                    torn.truncate(len(text.encode()))
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # not one of ours: leave it, never guess at it
                if "run" in entry:
                    journal.run_id = entry["run"]
                elif "winner_id" in entry:
                    journal.verdicts[entry["step"]] = Verdict(**entry)
                elif "comparison_id" in entry:
                    journal.confirmed.add(entry["step"])
        journal._out = path.open("a")
        if not journal.run_id:
            journal.run_id = uuid.uuid4().hex
            journal._append({"run": journal.run_id})
        return journal

    def _append(self, entry: dict[str, Any]) -> None:
        assert self._out is not None
        self._out.write(json.dumps(entry) + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())  # on disk before the vote leaves

    def decided(self, verdict: Verdict) -> None:
        self.verdicts[verdict.step] = verdict
        self._append(dataclasses.asdict(verdict))

    def stored(self, step: int, comparison_id: int | None) -> None:
        self.confirmed.add(step)
        self._append({"step": step, "comparison_id": comparison_id})

    def key(self, step: int) -> str:
        return f"{self.run_id}-{step}"

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def send(compere: AsyncClient, journal: Journal, verdict: Verdict) -> None:
    """Record one verdict; safe to call again for the same verdict (same key)."""
    try:
        comparison = await compere.vote(
            verdict.entity1_id,
            verdict.entity2_id,
            verdict.winner_id,
            pair_token=verdict.pair_token,
            idempotency_key=journal.key(verdict.step),
        )
        stored_id: int | None = comparison.id
    except Conflict as exc:
        if "Retry-After" in exc.headers:
            raise  # the first attempt is still running on the server: not settled yet
        # The pair_token was used already: an earlier attempt was stored, and its
        # idempotency record is gone (expired, or the store was lost).
        stored_id = None
    except BadRequest:
        if verdict.pair_token is None:
            raise
        # The pair_token expired while the loop was down: record the verdict without it.
        comparison = await compere.vote(
            verdict.entity1_id,
            verdict.entity2_id,
            verdict.winner_id,
            idempotency_key=journal.key(verdict.step) + "-untokened",
        )
        stored_id = comparison.id
    journal.stored(verdict.step, stored_id)


async def decide(judge: Judge, pair: Pair) -> int | None:
    choice = judge(pair.entity1, pair.entity2)
    if inspect.isawaitable(choice):
        choice = await choice
    if choice is None:
        return None
    if choice.id not in (pair.entity1.id, pair.entity2.id):
        raise ValueError("the judge must return one of the two entities, or None for a tie")
    return choice.id


async def evaluate(
    compere: AsyncClient, judge: Judge, journal: Journal, *, budget: int, concurrency: int = 8
) -> int:
    """Run the loop until ``budget`` verdicts are stored; returns how many this call sent."""
    unconfirmed = [v for step, v in sorted(journal.verdicts.items()) if step not in journal.confirmed]
    await asyncio.gather(*(send(compere, journal, v) for v in unconfirmed))
    steps = iter(range(max(journal.verdicts, default=-1) + 1, sys.maxsize))
    remaining = budget - len(journal.verdicts)
    sent = len(unconfirmed)

    async def worker() -> None:
        nonlocal remaining, sent
        while remaining > 0:
            remaining -= 1
            step = next(steps)
            pair = await compere.next_pair()
            verdict = Verdict(
                step, pair.entity1.id, pair.entity2.id, await decide(judge, pair), pair.pair_token
            )
            journal.decided(verdict)
            await send(compere, journal, verdict)
            sent += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


async def print_leaderboard(compere: AsyncClient, out: TextIO = sys.stdout, top: int = 50) -> None:
    """The board by the Bradley-Terry fit of every vote (the server's best estimate)."""
    board = await compere.ratings(by="score", model="bt", limit=top)
    print(f"{'rank':>4}  {'score':>7}  {'± 95%':>6}  name", file=out)
    for entry in board.items:
        spread = (entry.interval_95[1] - entry.interval_95[0]) / 2
        tie = "=" if entry.tied else " "
        print(f"{entry.rank:>3}{tie}  {entry.score:7.3f}  {spread:6.3f}  {entry.name}", file=out)


def load_judge(spec: str) -> Judge:
    """``package.module:function`` -> the function."""
    module, _, name = spec.partition(":")
    judge: Judge = getattr(importlib.import_module(module), name)
    return judge


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", help="base URL, e.g. http://127.0.0.1:8090")
    parser.add_argument("--judge", required=True, help="module:function deciding between two entities")
    parser.add_argument("--budget", type=int, default=200, help="verdicts to record in total (200)")
    parser.add_argument("--concurrency", type=int, default=8, help="pairs being judged at once (8)")
    parser.add_argument(
        "--journal", type=Path, default=Path("evaluation.jsonl"), help="the loop's state file"
    )
    parser.add_argument("--token", default=os.environ.get("COMPERE_TOKEN"), help="bearer token, if needed")
    args = parser.parse_args(argv)
    judge = load_judge(args.judge)
    journal = Journal.open(args.journal)
    retry = RetryPolicy(attempts=10, max_delay=5.0)
    try:
        async with AsyncClient(
            args.server, token=args.token, concurrency=args.concurrency, retry=retry
        ) as compere:
            sent = await evaluate(compere, judge, journal, budget=args.budget, concurrency=args.concurrency)
            print(f"run {journal.run_id}: {sent} verdicts sent, {len(journal.confirmed)} stored in all\n")
            await print_leaderboard(compere)
    finally:
        journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
