"""Projects: roles and what each may do, and a project's effective ranking settings.

A project stores each ranking setting as NULL ("follow the deployment's setting") or
as its own value; :class:`ProjectSettings` is what a request works with once both are
combined (``compere.services.projects.resolve``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from compere.domain.bayes import Prior
from compere.domain.strategies import Strategy
from compere.domain.trust import TrustPolicy

Role = Literal["owner", "editor", "voter", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
# What a request asks of a project: read the board, ask for pairs and vote, change
# entities (and import or export them), change the project itself and its members.
Action = Literal["read", "vote", "write", "admin"]
ACTIONS: tuple[Action, ...] = get_args(Action)
Visibility = Literal["private", "public"]
Objective = Literal["full", "top_k"]
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)

# Each role may do its own action and every one below it.
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    "viewer": frozenset({"read"}),
    "voter": frozenset({"read", "vote"}),
    "editor": frozenset({"read", "vote", "write"}),
    "owner": frozenset({"read", "vote", "write", "admin"}),
}
ACTION_WORDS: dict[Action, str] = {
    "read": "reading this project",
    "vote": "voting in this project",
    "write": "changing this project's entities",
    "admin": "managing this project",
}

DEFAULT_SLUG = "default"
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Slugs a route under /projects/ could mistake for something else.
RESERVED_SLUGS = frozenset({"new", "me"})

# The ranking settings a project may override, as named in the API and the table.
SETTING_NAMES = (
    "strategy",
    "elo_k_factor",
    "prior_sd",
    "exploration",
    "allow_ties",
    "allow_anonymous",
    "daily_vote_cap",
    "trust_mode",
    "provisional_max_uncertainty",
    "provisional_min_votes",
    "ranking_objective",
    "ranking_top_k",
)


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` cannot name a new project, or None."""
    if not SLUG_PATTERN.match(slug):
        return "must be 1-63 lowercase letters, digits or hyphens, starting with a letter or digit"
    if slug in RESERVED_SLUGS:
        return "is reserved"
    return None


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    """The ranking settings in force for one project."""

    strategy: Strategy
    elo_k_factor: float
    prior: Prior
    exploration: float
    allow_ties: bool
    allow_anonymous: bool
    daily_vote_cap: int  # votes per voter per UTC day; 0 = no cap
    trust: TrustPolicy  # how votes are weighed by their voter's record (trust_mode)
    provisional_max_uncertainty: float  # a board entry is provisional above this uncertainty...
    provisional_min_votes: int  # ... or below this many votes
    ranking_objective: Objective  # what active pairs serve: the whole order or the best K
    ranking_top_k: int  # K of the top_k objective


@dataclass(frozen=True, slots=True)
class Project:
    """A project as a request sees it: its row, and its settings in force."""

    id: int
    slug: str
    name: str
    description: str
    visibility: Visibility
    created_at: datetime
    archived_at: datetime | None
    overrides: dict[str, object]  # the stored setting columns (None: the deployment's)
    settings: ProjectSettings

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


def refusal(
    project: Project,
    action: Action,
    *,
    role: Role | None,
    signed_in: bool,
    superuser: bool,
) -> tuple[int, str] | None:
    """Whether a caller may do ``action`` in ``project``: None, or (status, reason).

    A private project does not exist (404) for whoever is signed in and not a member;
    an anonymous caller is asked to sign in (401), as for a project that does not exist,
    so neither answer tells a private project from a missing one. A public project may
    be read by anyone, and voted in by anyone signed in (or by anyone at all where it
    accepts anonymous votes). An archived project is read-only for everyone.
    """
    if not superuser and role is None and project.visibility == "private":
        return (404, f"Project '{project.slug}' not found") if signed_in else (401, "Not authenticated")
    if project.archived and action != "read":
        return 403, "This project is archived: it is read-only until a superuser restores it"
    if superuser:
        return None
    if role is not None and action in ROLE_ACTIONS[role]:
        return None
    if role is None and action == "read":
        return None  # a public project's board
    if role is None and action == "vote" and (signed_in or project.settings.allow_anonymous):
        return None
    if not signed_in:
        return 401, "Not authenticated"
    held = f"your role is {role}" if role is not None else "you are not a member"
    return 403, f"Not allowed: {ACTION_WORDS[action]} needs a higher role ({held})"
