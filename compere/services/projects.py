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

from compere.domain.projects import DEFAULT_SLUG, Project, ProjectSettings, Role, Visibility
from compere.domain.strategies import Strategy
from compere.settings import Settings
from compere.storage import projects as store
from compere.storage.database import Connection, Row
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
    )


def project_from_row(row: Row, settings: Settings) -> Project:
    overrides: dict[str, object] = {
        "strategy": row["strategy"],
        "elo_k_factor": row["elo_k_factor"],
        "prior_sd": row["prior_sd"],
        "exploration": row["exploration"],
        "allow_ties": None if row["allow_ties"] is None else bool(row["allow_ties"]),
        "allow_anonymous": None if row["allow_anonymous"] is None else bool(row["allow_anonymous"]),
        "daily_vote_cap": row["daily_vote_cap"],
    }
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
