"""Reads that may be slightly stale go to a streaming replica while it is fresh enough.

:class:`ReplicatedDatabase` is the primary's :class:`Database` with one difference:
:meth:`reader` answers with the replica while the replica is up and its lag is within
``REPLICA_MAX_LAG_SECONDS``, else with the primary. Every write, every transaction and
every other read stays on the primary, so nothing that must see its own writes (a vote,
a just-created entity, an idempotent replay) can miss them.

How stale a replica read may be: each worker checks every ``REPLICA_CHECK_INTERVAL``
seconds. A check notes the primary's WAL position with the time, then asks the replica
how far it has replayed; the replica then holds every commit made before the newest
noted position it has reached, and its lag is the age of that position. A read on the
replica therefore misses at most the commits of the last
``REPLICA_MAX_LAG_SECONDS + REPLICA_CHECK_INTERVAL`` seconds (plus one check's duration).
A replica that fails a check, or a read, is left alone until a later check succeeds;
the read that failed is run again on the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from compere.infra import metrics
from compere.storage.database import (
    Connection,
    Database,
    DatabaseError,
    DatabaseMisconfigured,
    Params,
    Query,
    Row,
)

log = logging.getLogger(__name__)

_PRIMARY_POSITION = Query(sa.select(sa.func.pg_current_wal_lsn().label("lsn")))
_REPLICA_POSITION = Query(
    sa.select(
        sa.func.pg_is_in_recovery().label("in_recovery"),
        sa.func.pg_last_wal_replay_lsn().label("lsn"),
    )
)
# Noted primary positions kept at most (about 3 hours at one check a second); a replica
# further behind than the oldest is at least that stale.
_MAX_SAMPLES = 10_000


def parse_lsn(text: str) -> int:
    """A WAL position like ``16/B374D848`` as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """What the last check found: ``status`` is ``ok``, ``lagging`` or ``unavailable``."""

    status: str
    lag_seconds: float | None  # None while unknown (never checked, or unavailable)
    checked_at: float  # time.monotonic() of the check

    @property
    def usable(self) -> bool:
        return self.status == "ok"


class ReplicaLag:
    """The replica's lag from noted primary positions and its replayed position."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque(maxlen=_MAX_SAMPLES)

    def note_primary(self, lsn: int) -> None:
        self._samples.append((self.clock(), lsn))

    def lag(self, replayed: int) -> float:
        """Seconds since the newest noted primary position the replica has replayed."""
        now = self.clock()
        caught_up: tuple[float, int] | None = None
        while self._samples and self._samples[0][1] <= replayed:
            caught_up = self._samples.popleft()
        if caught_up is None:  # behind every noted position: at least as old as the oldest
            return now - self._samples[0][0] if self._samples else 0.0
        self._samples.appendleft(caught_up)  # still the newest known-replayed position
        return now - caught_up[0]


class ReplicaReader(Connection):
    """Reads on the replica; a read the replica fails runs again on the primary."""

    def __init__(self, owner: ReplicatedDatabase) -> None:
        self._owner = owner

    async def fetch_all(self, query: Query, params: Params | None = None) -> list[Row]:
        replica = self._owner.replica
        if replica is None:  # closed meanwhile
            return await self._owner.fetch_all(query, params)
        try:
            return await replica.fetch_all(query, params)
        except DatabaseError as exc:
            self._owner.replica_failed(exc)
            return await self._owner.fetch_all(query, params)

    async def execute(self, query: Query, params: Params | None = None) -> int:
        raise RuntimeError("the replica reader only reads")

    async def execute_script(self, sql: str) -> None:
        raise RuntimeError("the replica reader only reads")

    async def raw(self, sql: str, values: tuple[Any, ...] = ()) -> None:
        raise RuntimeError("the replica reader only reads")

    async def lock_tables(self, *tables: str) -> None:
        raise RuntimeError("the replica reader only reads")


class ReplicatedDatabase(Database):
    """The primary, plus a replica for :meth:`reader` while it is fresh enough.

    ``open_replica`` opens the replica's pool; a replica that cannot be opened at
    start-up is tried again at every check, so it never stops Compere from starting.
    """

    def __init__(
        self,
        primary: Database,
        open_replica: Callable[[], Awaitable[Database]],
        *,
        max_lag: float,
        check_interval: float,
    ) -> None:
        self.primary = primary
        self.replica: Database | None = None
        self._open_replica = open_replica
        self.name = primary.name
        self.dialect = primary.dialect
        self.writes_vote_in_one_statement = primary.writes_vote_in_one_statement
        self.reads_on_event_loop = primary.reads_on_event_loop
        self.insert_or_skip = primary.insert_or_skip
        self.max_lag = max_lag
        self.check_interval = check_interval
        self.state = ReplicaState("unavailable", None, 0.0)  # until the first check
        self._lag = ReplicaLag()
        self._reader = ReplicaReader(self)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- routing ---------------------------------------------------------------------

    def reader(self) -> Connection:
        return self._reader if self.state.usable else self.primary

    def replica_failed(self, exc: BaseException) -> None:
        """A read failed on the replica: leave it alone until a check succeeds."""
        if self.state.status != "unavailable":
            log.warning("replica read failed (%s): reading from the primary", exc)
        self._set_state(ReplicaState("unavailable", None, time.monotonic()))

    # --- lag checks --------------------------------------------------------------------

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._watch(), name="compere-replica-lag")

    async def _watch(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.check_interval)
            if self._stopping.is_set():
                return
            try:
                await self.check()
            except DatabaseMisconfigured as exc:
                log.error("replica not used: %s", exc)
                self._set_state(ReplicaState("unavailable", None, time.monotonic()))

    async def check(self) -> ReplicaState:
        """Measure the replica's lag once and decide whether reads may use it."""
        try:
            async with asyncio.timeout(max(self.check_interval, 1.0)):
                if self.replica is None:
                    self.replica = await self._open_replica()
                self._lag.note_primary(parse_lsn(await self.primary.fetch_value(_PRIMARY_POSITION)))
                row = await self.replica.fetch_one(_REPLICA_POSITION)
        except DatabaseMisconfigured:
            raise  # a wrong setting: stop start-up (or the watcher) with its message
        except (DatabaseError, TimeoutError) as exc:
            if self.state.status != "unavailable" or self.state.checked_at == 0.0:
                log.warning("replica check failed (%s): reading from the primary", exc)
            state = ReplicaState("unavailable", None, time.monotonic())
        else:
            if row is None or not row["in_recovery"] or row["lsn"] is None:
                # Promoted, or not a replica at all: its data may have parted from the primary's.
                state = ReplicaState("unavailable", None, time.monotonic())
            else:
                lag = self._lag.lag(parse_lsn(row["lsn"]))
                state = ReplicaState("ok" if lag <= self.max_lag else "lagging", lag, time.monotonic())
        self._set_state(state)
        return state

    def _set_state(self, state: ReplicaState) -> None:
        if state.usable != self.state.usable and self.state.checked_at != 0.0:
            log.info("replica %s", "in use again" if state.usable else f"not used: {state.status}")
        self.state = state
        metrics.DB_REPLICA_IN_USE.set(1 if state.usable else 0)
        if state.lag_seconds is not None:
            metrics.DB_REPLICA_LAG_SECONDS.set(state.lag_seconds)

    # --- everything else is the primary ----------------------------------------------

    async def fetch_all(self, query: Query, params: Params | None = None) -> list[Row]:
        return await self.primary.fetch_all(query, params)

    async def execute(self, query: Query, params: Params | None = None) -> int:
        return await self.primary.execute(query, params)

    async def execute_script(self, sql: str) -> None:
        await self.primary.execute_script(sql)

    async def raw(self, sql: str, values: tuple[Any, ...] = ()) -> None:
        await self.primary.raw(sql, values)

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        return self.primary.transaction()

    def session(self) -> AbstractAsyncContextManager[Connection]:
        return self.primary.session()

    def migration_lock(self) -> AbstractAsyncContextManager[Connection]:
        return self.primary.migration_lock()

    @asynccontextmanager
    async def migration_step(self, conn: Connection) -> AsyncIterator[None]:
        async with self.primary.migration_step(conn):
            yield

    async def column_names(self, table: str) -> list[str]:
        return await self.primary.column_names(table)

    async def ping(self) -> None:
        await self.primary.ping()

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        replica, self.replica = self.replica, None
        try:
            if replica is not None:
                await replica.close()
        finally:
            await self.primary.close()
