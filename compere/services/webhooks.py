"""Signed webhooks: the outbox that requests write, and the dispatcher that delivers it.

Requests never talk to receivers. A change that a subscription wants writes one event
row in its own transaction (a vote: one more CTE of the vote's statement on
PostgreSQL). Each worker runs one :class:`WebhookDispatcher` task that

1. fans new events out into deliveries, one per subscription and event (votes batched:
   up to ``WEBHOOK_BATCH_SIZE`` comparisons per delivery), and deletes the events;
2. claims due deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single writer
   on SQLite), only the oldest pending one of each subscription, so a subscription's
   deliveries are sent in order and a later one waits while an earlier one is retried;
3. signs and POSTs them, and records the outcome: delivered, or the next attempt after
   an exponential back-off, until ``WEBHOOK_RETRY_WINDOW`` (24 h) has passed since the
   delivery was created; then it is marked failed and the next one goes;
4. every ``WEBHOOK_LEADERBOARD_INTERVAL`` seconds, compares the top K of each board a
   subscription watches (order and shared ranks) with the last one reported and writes
   a ``leaderboard.changed`` event when it moved.

A subscription belongs to a project and hears that project's events only; every
delivery names the project (``project``: its slug) beside the event.

The schedule lives in the database, so it survives restarts and every worker shares it.
See docs/webhooks.md for the payloads and the signature scheme.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp.abc import AbstractResolver

from compere import __version__
from compere.infra.outbound import SIGNATURE_HEADER, AddressPolicy, WebhookSender, signature_header
from compere.services.boards import RankingCache
from compere.services.projects import project_from_row
from compere.settings import Settings
from compere.storage import leaderboard, projects
from compere.storage import webhooks as store
from compere.storage.comparisons import VOTE_EVENT
from compere.storage.database import ConflictError, Connection, Database, DatabaseError, Row
from compere.storage.tables import DEFAULT_PROJECT_ID
from compere.storage.timestamps import as_datetime

log = logging.getLogger(__name__)

ENTITY_CREATED = "entity.created"
IMPORT_FINISHED = "import.finished"
LEADERBOARD_CHANGED = "leaderboard.changed"
EVENT_TYPES = (VOTE_EVENT, LEADERBOARD_CHANGED, ENTITY_CREATED, IMPORT_FINISHED)

_EVENTS_PER_FAN_OUT = 1000
_LEADERBOARD_STATE = "leaderboard.top"
_LEASE_MARGIN = 30.0  # seconds beyond the request timeout before a claimed delivery is due again

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """The stored text of a moment (the format of ``storage.timestamps.utc_now``)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter, for ``window`` seconds after a delivery is created."""

    base: float
    max_delay: float
    window: float

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        exponent = min(max(attempts - 1, 0), 40)
        return min(self.base * 2.0**exponent, self.max_delay) * random.uniform(0.8, 1.0)


@dataclass(frozen=True, slots=True)
class _Subscription:
    id: int
    url: str
    secret: str
    events: frozenset[str]
    project_id: int = DEFAULT_PROJECT_ID
    project: str = "default"  # the project's slug, named in every delivery


def delivery_body(event_type: str, data: Any, created_at: datetime, project: str = "default") -> str:
    """The JSON body of a delivery; its ``id`` stays the same across retries and replays."""
    return orjson.dumps(
        {
            "id": uuid.uuid4().hex,
            "type": event_type,
            "project": project,
            "created_at": created_at,
            "data": data,
        }
    ).decode()


def _vote(row: Row) -> dict[str, Any]:
    return {
        "id": row["comparison_id"],
        "entity1_id": row["entity1_id"],
        "entity2_id": row["entity2_id"],
        "selected_entity_id": row["selected_entity_id"],
        "created_at": as_datetime(row["comparison_created_at"]),
        "user_id": row["user_id"],
        "strategy": row["strategy"],
        "selection_probability": row["selection_probability"],
    }


def plan_deliveries(
    events: list[Row], subscriptions: list[_Subscription], batch_size: int
) -> dict[int, list[tuple[str, Any]]]:
    """Per subscription, the deliveries ``events`` make, in event order.

    Consecutive votes share a delivery (up to ``batch_size``); any other event closes
    the batch, so the order of events is kept within each subscription. A subscription
    gets the events of its own project only.
    """
    planned: dict[int, list[tuple[str, Any]]] = {}
    for event in events:
        kind = event["event_type"]
        if kind == VOTE_EVENT and event["comparison_id"] is None:
            continue  # cannot happen (votes are never deleted); nothing to report
        for sub in subscriptions:
            if kind not in sub.events or event["project_id"] != sub.project_id:
                continue
            items = planned.setdefault(sub.id, [])
            if kind == VOTE_EVENT:
                last = items[-1] if items else None
                if last is not None and last[0] == VOTE_EVENT and len(last[1]["comparisons"]) < batch_size:
                    last[1]["comparisons"].append(_vote(event))
                else:
                    items.append((VOTE_EVENT, {"comparisons": [_vote(event)]}))
            else:
                items.append((kind, json.loads(event["payload"] or "null")))
    return planned


async def announce(db: Database, event_type: str, data: Any, project_id: int = DEFAULT_PROJECT_ID) -> bool:
    """Write an event of ``project_id`` when an active subscription of that project wants
    it (for callers without a dispatcher).

    Returns whether an event was written. The CLI's import uses this; a running server's
    dispatcher delivers it.
    """
    subscriptions = await store.active_subscriptions(db)
    if not any(
        event_type in json.loads(row["events"]) and row["project_id"] == project_id for row in subscriptions
    ):
        return False
    payload = orjson.dumps(data).decode()
    await store.insert_event(db, event_type, now=iso(system_clock()), project_id=project_id, payload=payload)
    return True


class WebhookDispatcher:
    """One per worker: knows which events are wanted and delivers the outbox."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        ranking_cache: RankingCache | None = None,
        clock: Clock = system_clock,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._cache = ranking_cache or RankingCache()
        self._clock = clock
        self._resolver = resolver
        self._retry = RetryPolicy(
            settings.webhook_retry_base, settings.webhook_retry_max_delay, settings.webhook_retry_window
        )
        self._policy = AddressPolicy(allow_private=settings.webhook_allow_private)
        self._subscriptions: dict[int, _Subscription] = {}
        self._wanted: frozenset[str] = frozenset()
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._sender: WebhookSender | None = None
        self._leaderboard_checked: float | None = None
        self._stopping = False

    @property
    def policy(self) -> AddressPolicy:
        return self._policy

    # --- what requests call ----------------------------------------------------------

    def wants(self, event_type: str) -> bool:
        """Whether an active subscription (as last seen by this worker) wants ``event_type``."""
        return event_type in self._wanted

    def wake(self) -> None:
        """Run the dispatcher now instead of at its next poll."""
        self._wake.set()

    def transaction_for(self, event_type: str) -> AbstractAsyncContextManager[Connection]:
        """A transaction when ``event_type`` is wanted (the change and its event commit
        together), else plain autocommit access to the database."""
        if self.wants(event_type):
            return self._db.transaction()
        return contextlib.nullcontext(self._db)

    async def record(self, conn: Connection, event_type: str, data: Any, project_id: int) -> None:
        """Write an event of ``project_id`` on ``conn`` (a no-op unless the event is wanted)."""
        if not self.wants(event_type):
            return
        now = iso(self._clock())
        payload = orjson.dumps(data).decode()
        await store.insert_event(conn, event_type, now=now, project_id=project_id, payload=payload)
        self.wake()

    async def subscriptions_changed(self) -> None:
        """Reload the subscriptions at once (after this worker changed one)."""
        await self.refresh()
        self.wake()

    # --- the background task --------------------------------------------------------

    async def start(self) -> None:
        self._sender = WebhookSender(self._policy, self._settings.webhook_timeout, self._resolver)
        try:
            await self.refresh()
        except DatabaseError as exc:
            log.warning("webhooks: subscriptions not loaded yet: %s", exc)
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Let the current round finish, give attempts in flight a moment, then cancel them.

        The loop is not cancelled in the middle of a database call (a pool cannot close
        while a cancelled query still holds a connection); it stops between rounds. A
        cancelled attempt has counted; its lease runs out and a worker tries again.
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait(
                {self._task}, timeout=self._settings.db_statement_timeout_ms / 1000 + 5
            )
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=min(5.0, self._settings.webhook_timeout))
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._sender is not None:
            await self._sender.close()
            self._sender = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except DatabaseError as exc:
                log.warning("webhooks: database unavailable, retrying: %s", exc)
            except Exception:
                log.exception("webhooks: dispatcher step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll_interval)
            self._wake.clear()

    async def tick(self) -> None:
        """One round: reload subscriptions, fan out events, watch the board, deliver."""
        await self.refresh()
        await self.fan_out()
        if self.wants(LEADERBOARD_CHANGED):
            loop_time = asyncio.get_running_loop().time()
            last = self._leaderboard_checked
            if last is None or loop_time - last >= self._settings.webhook_leaderboard_interval:
                self._leaderboard_checked = loop_time
                await self.watch_leaderboard()
        await self.deliver_due()

    async def refresh(self) -> None:
        rows = await store.active_subscriptions(self._db)
        self._subscriptions = {
            row["id"]: _Subscription(
                row["id"],
                row["url"],
                row["secret"],
                frozenset(json.loads(row["events"])),
                int(row["project_id"]),
                row["project"],
            )
            for row in rows
        }
        self._wanted = frozenset().union(*(sub.events for sub in self._subscriptions.values()))

    async def fan_out(self) -> int:
        """Turn the oldest events into deliveries; returns how many events were handled."""
        now = self._clock()
        async with self._db.transaction() as tx:
            events = await store.claim_events(tx, _EVENTS_PER_FAN_OUT)
            if not events:
                return 0
            planned = plan_deliveries(
                events, list(self._subscriptions.values()), self._settings.webhook_batch_size
            )
            for subscription_id, items in planned.items():
                project = self._subscriptions[subscription_id].project
                for event_type, data in items:
                    await store.insert_delivery(
                        tx,
                        subscription_id=subscription_id,
                        event_type=event_type,
                        body=delivery_body(event_type, data, now, project),
                        now=iso(now),
                    )
            await store.delete_events(tx, events[0]["id"], events[-1]["id"])
        return len(events)

    async def watch_leaderboard(self) -> bool:
        """Write ``leaderboard.changed`` for each watched board whose top K moved since it
        was last reported; returns whether any did."""
        watched = sorted(
            {sub.project_id for sub in self._subscriptions.values() if LEADERBOARD_CHANGED in sub.events}
        )
        moved = False
        for project_id in watched:
            moved |= await self._watch_board(project_id)
        return moved

    async def _watch_board(self, project_id: int) -> bool:
        row = await projects.by_id(self._db, project_id)
        if row is None:
            return False
        project = project_from_row(row, self._settings).settings
        board = await self._cache.board(self._db, project_id, "online", project.prior, project.trust)
        top_ids = board.ids[: self._settings.webhook_leaderboard_top_k]
        marker = json.dumps([[entity_id, board.rank[entity_id]] for entity_id in top_ids])
        # The default project keeps the marker's name from before projects.
        state = (
            _LEADERBOARD_STATE if project_id == DEFAULT_PROJECT_ID else f"{_LEADERBOARD_STATE}:{project_id}"
        )
        rows = await leaderboard.by_ids(self._db, project_id, top_ids) if top_ids else {}
        top = [
            {
                "id": entity_id,
                "name": rows[entity_id].name if entity_id in rows else None,
                "rank": board.rank[entity_id],
                "tied": entity_id in board.tied,
                "score": board.score[entity_id],
                "uncertainty": board.uncertainty[entity_id],
            }
            for entity_id in top_ids
        ]
        try:
            async with self._db.transaction() as tx:
                previous = await store.read_state(tx, state)
                if previous == marker or (previous is None and not top_ids):
                    return False
                await store.write_state(tx, state, marker, exists=previous is not None)
                await store.insert_event(
                    tx,
                    LEADERBOARD_CHANGED,
                    now=iso(self._clock()),
                    project_id=project_id,
                    payload=orjson.dumps(
                        {"top_k": self._settings.webhook_leaderboard_top_k, "top": top}
                    ).decode(),
                )
        except ConflictError:
            return False  # another worker wrote the first marker at the same moment
        self.wake()
        return True

    async def deliver_due(self) -> int:
        """Claim due deliveries (up to the free concurrency) and start sending them."""
        free = self._settings.webhook_concurrency - len(self._in_flight)
        if free <= 0 or not self._subscriptions:
            return 0
        now = self._clock()
        lease = now + timedelta(seconds=self._settings.webhook_timeout + _LEASE_MARGIN)
        claimed = await store.claim_deliveries(self._db, now=iso(now), lease_until=iso(lease), limit=free)
        for row in claimed:
            task = asyncio.create_task(self._attempt(row))
            self._in_flight.add(task)
            task.add_done_callback(self._attempt_done)
        return len(claimed)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self.wake()  # the next delivery of that subscription may go now

    async def _attempt(self, row: Row) -> None:
        sub = self._subscriptions.get(row["subscription_id"])
        if sub is None:
            await self.refresh()
            sub = self._subscriptions.get(row["subscription_id"])
        if sub is None or self._sender is None:
            return  # deleted or paused meanwhile: the lease runs out and it waits
        body = row["body"].encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"Compere-Webhooks/{__version__}",
            SIGNATURE_HEADER: signature_header(sub.secret, int(self._clock().timestamp()), body),
            "Compere-Event": row["event_type"],
            "Compere-Delivery": str(row["id"]),
        }
        outcome = await self._sender.post(sub.url, body, headers)
        now = self._clock()
        if outcome.ok:
            status, next_at, delivered = "delivered", now, iso(now)
        elif (now - as_datetime(row["created_at"])).total_seconds() >= self._retry.window:
            status, next_at, delivered = "failed", now, None
        else:
            status, delivered = "pending", None
            next_at = now + timedelta(seconds=self._retry.delay(row["attempts"]))
        try:
            # Shielded: a stop that cancels this attempt must not cut the write short.
            await asyncio.shield(
                store.finish_delivery(
                    self._db,
                    row["id"],
                    status=status,
                    response_code=outcome.status,
                    last_error=outcome.error,
                    next_attempt_at=iso(next_at),
                    delivered_at=delivered,
                )
            )
        except DatabaseError as exc:
            # The lease runs out and the delivery is sent again: at least once.
            log.warning("webhooks: outcome of delivery %s not recorded: %s", row["id"], exc)


@asynccontextmanager
async def running_dispatcher(
    db: Database, settings: Settings, **options: Any
) -> AsyncIterator[WebhookDispatcher]:
    """A started dispatcher, stopped cleanly on exit."""
    dispatcher = WebhookDispatcher(db, settings, **options)
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()
