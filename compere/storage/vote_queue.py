"""Group commit for votes: what arrives while a vote transaction runs goes in the next.

One :class:`VoteQueue` per process. The first vote on an idle queue starts a
transaction at once (at low load a batch is one vote and costs what a lone vote always
cost); votes that arrive while it runs wait and then go together in the next
transaction, so under load the batch grows by itself and a small board's votes stop
queueing one by one on the same few row locks. No timer is involved. Each waiting
request gets its own outcome: one bad vote (a deleted entity, a used pair token) does
not fail or delay the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from compere.infra import metrics
from compere.storage import comparisons as store
from compere.storage.database import ConflictError, Database
from compere.storage.rows import ComparisonRow

log = logging.getLogger(__name__)

MAX_BATCH = 1000


class VoteQueue:
    """Store votes in group commits on ``db``; ``announce()`` says whether a webhook
    subscription wants vote events right now, ``answer`` renders a stored vote's answer
    for its Idempotency-Key record."""

    def __init__(
        self,
        db: Database,
        *,
        announce: Callable[[], bool] = lambda: False,
        answer: Callable[[ComparisonRow], bytes] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._db = db
        self._announce = announce
        self._answer = answer
        self._max_batch = max_batch
        self._waiting: list[tuple[store.Vote, asyncio.Future[store.VoteOutcome]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # transactions run, for tests and benchmarks
        self.votes = 0

    async def submit(self, vote: store.Vote) -> store.VoteOutcome:
        """Store ``vote`` with whatever else is waiting; its outcome (a row or a refusal).

        Storage errors of the whole transaction (the database unavailable) are raised.
        """
        future: asyncio.Future[store.VoteOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((vote, future))
        metrics.VOTES_WAITING.inc()
        future.add_done_callback(_answered)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain())
        # Shielded: a request that goes away must not cancel the others' transaction.
        return await asyncio.shield(future)

    async def wait_idle(self) -> None:
        """Wait until every vote submitted so far has its outcome (at shutdown, before
        the database closes)."""
        while self._worker is not None:
            await asyncio.wait({self._worker})

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._run(batch)
        finally:
            self._worker = None

    async def _run(self, batch: list[tuple[store.Vote, asyncio.Future[store.VoteOutcome]]]) -> None:
        votes = [vote for vote, _ in batch]
        metrics.VOTE_BATCHES.inc()
        self.batches += 1
        self.votes += len(votes)
        try:
            outcomes = await self._record(votes)
        except ConflictError as exc:
            if len(batch) == 1:
                _settle(batch[0][1], _conflict_outcome(batch[0][0], exc))
                return
            # A concurrent transaction took a pair token or key after this batch checked
            # them: store the votes one by one so only the late one is refused.
            for item in batch:
                await self._run([item])
            return
        except BaseException as exc:
            for _, future in batch:
                _settle(future, exc=exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)

    async def _record(self, votes: list[store.Vote]) -> list[store.VoteOutcome]:
        announce = self._announce()
        if len(votes) == 1 and votes[0].receipt is None:
            # One vote: the lone-vote path (the writes in one statement with the COMMIT).
            try:
                row = await store.record_vote(self._db, votes[0], announce=announce)
            except (store.EntityNotFound, store.DailyCapReached) as exc:
                return [exc]
            return [row]
        return await store.record_votes(self._db, votes, announce=announce, answer=self._answer)


def _answered(_: asyncio.Future[store.VoteOutcome]) -> None:
    metrics.VOTES_WAITING.dec()


def _conflict_outcome(vote: store.Vote, exc: ConflictError) -> store.VoteOutcome:
    """A lone vote refused by a unique index: its key was answered, or its token used."""
    if vote.receipt is not None and store.conflict_is_idempotency_key(exc):
        return store.AlreadyRecorded(vote.receipt.key)
    return store.PairTokenUsed()


def _settle(
    future: asyncio.Future[store.VoteOutcome],
    outcome: store.VoteOutcome | None = None,
    *,
    exc: BaseException | None = None,
) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    elif exc is not None:
        future.set_exception(exc)
    else:
        assert outcome is not None
        future.set_result(outcome)
