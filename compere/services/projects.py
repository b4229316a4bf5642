"""A project as requests use it: its row combined with the deployment's settings, read
through a short per-worker cache.

Every request on a board names a project (the top-level routes name ``default``), so
the lookup must cost nothing on the hot path: each worker keeps what it read for one
second. A change made through this worker is seen at once (the entry is dropped); a
change made through another worker within a second (archive, settings, visibility).
Membership is not cached: a removed member loses access with the next request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, cast

from compere.domain.projects import (
    DEFAULT_SLUG,
    SETTING_NAMES,
    Objective,
    Project,
    ProjectSettings,
    Role,
    Visibility,
)
from compere.domain.strategies import Strategy
from compere.domain.trust import POLICIES
from compere.settings import Settings
from compere.storage import projects as store
from compere.storage.bulk import lock_for_replay, replay_project
from compere.storage.database import Connection, Database, Row
from compere.storage.timestamps import as_datetime

CACHE_SECONDS = 1.0


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def effective_settings(row: Row, settings: Settings) -> ProjectSettings:
    """A project's ranking settings: its own where set, the deployment's elsewhere."""
    return ProjectSettings(
        strategy=cast(Strategy, _pick(row["strategy"], settings.ranking_strategy)),
        elo_k_factor=float(_pick(row["elo_k_factor"], settings.elo_k_factor)),
        prior=settings.prior._replace(sigma0=float(_pick(row["prior_sd"], settings.prior.sigma0))),
        exploration=float(_pick(row["exploration"], settings.pair_exploration)),
        allow_ties=bool(_pick(row["allow_ties"], True)),
        allow_anonymous=bool(_pick(row["allow_anonymous"], False)),
        daily_vote_cap=int(_pick(row["daily_vote_cap"], 0)),
        trust=POLICIES[_pick(row["trust_mode"], settings.trust_mode)],
        provisional_max_uncertainty=float(
            _pick(row["provisional_max_uncertainty"], settings.provisional_max_uncertainty)
        ),
        provisional_min_votes=int(_pick(row["provisional_min_votes"], settings.provisional_min_votes)),
        ranking_objective=cast(Objective, _pick(row["ranking_objective"], settings.ranking_objective)),
        ranking_top_k=int(_pick(row["ranking_top_k"], settings.ranking_top_k)),
    )


def project_from_row(row: Row, settings: Settings) -> Project:
    overrides: dict[str, object] = {name: row[name] for name in SETTING_NAMES}
    for flag in ("allow_ties", "allow_anonymous"):  # SQLite keeps booleans as integers
        overrides[flag] = None if row[flag] is None else bool(row[flag])
    return Project(
        id=int(row["id"]),
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        visibility=cast(Visibility, row["visibility"]),
        created_at=as_datetime(row["created_at"]),
        archived_at=None if row["archived_at"] is None else as_datetime(row["archived_at"]),
        overrides=overrides,
        settings=effective_settings(row, settings),
    )


async def change_project(
    db: Database, project_id: int, changes: dict[str, Any], settings: Settings
) -> tuple[Row, int | None]:
    """Apply ``changes`` to a project's row. When they change the trust mode in force,
    the project's ratings, strengths, counters and voter records were derived under the
    old one: they are replayed from its vote log under the new one in the same
    transaction, with votes kept out meanwhile, so the stored state is at every moment
    the one ``rebuild-ratings`` would produce. Returns the new row and the number of
    votes replayed (None when nothing needed replaying)."""
    if "trust_mode" not in changes:
        row = await store.update(db, project_id, changes)
        assert row is not None
        return row, None
    async with db.transaction() as tx:
        await lock_for_replay(tx)  # first: the mode read below holds until the commit
        before = await store.by_id(tx, project_id)
        assert before is not None
        row = await store.update(tx, project_id, changes)
        assert row is not None
        old, new = effective_settings(before, settings), effective_settings(row, settings)
        if old.trust == new.trust:
            return row, None
        replayed = await replay_project(
            tx,
            project_id,
            k_factor=new.elo_k_factor,
            initial_rating=settings.elo_initial_rating,
            prior=new.prior,
            trust=new.trust,
        )
        return row, replayed


@dataclass
class ProjectCache:
    """Projects by slug, each kept for :data:`CACHE_SECONDS` per worker."""

    settings: Settings
    _entries: dict[str, tuple[float, Project | None]] = field(default_factory=dict)

    async def get(self, db: Connection, slug: str) -> Project | None:
        now = time.monotonic()
        entry = self._entries.get(slug)
        if entry is not None and now - entry[0] < CACHE_SECONDS:
            return entry[1]
        row = await store.by_slug(db, slug)
        project = None if row is None else project_from_row(row, self.settings)
        if len(self._entries) > 10_000:  # slugs probed by strangers: keep the map bounded
            self._entries.clear()
        self._entries[slug] = (now, project)
        return project

    async def default(self, db: Connection) -> Project:
        project = await self.get(db, DEFAULT_SLUG)
        assert project is not None, "the default project is created by the schema"
        return project

    def forget(self, slug: str) -> None:
        self._entries.pop(slug, None)


async def role_of(db: Connection, project: Project, user_id: int) -> Role | None:
    return cast("Role | None", await store.role_of(db, project.id, user_id))
