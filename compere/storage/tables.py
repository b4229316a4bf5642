"""SQLAlchemy Core descriptions of the tables that ``sql/`` creates.

These are for building queries only; the schema itself lives in the ``.sql`` files
(``tests/test_schema.py`` checks that the two agree). Below the tables: the column lists,
filters and new-row shapes that more than one query module builds on.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

metadata = sa.MetaData()

# One board each. The ranking settings are NULL where the project follows the
# deployment's setting (compere.domain.projects.ProjectSettings resolves them).
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("slug", sa.Text, nullable=False),  # unique, immutable, URL-safe
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("visibility", sa.Text, nullable=False),  # 'private' | 'public'
    sa.Column("strategy", sa.Text),
    sa.Column("elo_k_factor", sa.Float),
    sa.Column("prior_sd", sa.Float),
    sa.Column("exploration", sa.Float),
    sa.Column("allow_ties", sa.Boolean),
    sa.Column("allow_anonymous", sa.Boolean),
    sa.Column("daily_vote_cap", sa.Integer),  # 0 = no cap
    sa.Column("trust_mode", sa.Text),  # 'off' | 'default' | 'strict'
    sa.Column("provisional_max_uncertainty", sa.Float),
    sa.Column("provisional_min_votes", sa.Integer),
    sa.Column("ranking_objective", sa.Text),  # 'full' | 'top_k'
    sa.Column("ranking_top_k", sa.Integer),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("archived_at", sa.Text),  # archived: read-only, hidden from lists
)

project_members = sa.Table(
    "project_members",
    metadata,
    sa.Column("project_id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),  # owner | editor | voter | viewer
)

# The project every top-level route acts on (created by sql/*/0007_projects.sql).
DEFAULT_PROJECT_ID = 1

entities = sa.Table(
    "entities",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("image_urls", sa.Text, nullable=False),
    sa.Column("rating", sa.Float, nullable=False),
    sa.Column("comparisons", sa.Integer, nullable=False),
    sa.Column("wins", sa.Integer, nullable=False),
    sa.Column("losses", sa.Integer, nullable=False),
    sa.Column("ties", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("deleted_at", sa.Text),
    sa.Column("external_id", sa.Text),  # optional, unique: what bulk imports match on
    sa.Column("mu", sa.Float, nullable=False),
    sa.Column("sigma", sa.Float, nullable=False),
    sa.Column("random_key", sa.Float, nullable=False),
    sa.Column("prompt", sa.Text),  # the prompt a response answers (preference exports)
    sa.Column("vote_weight", sa.Float, nullable=False),  # what its votes counted for (domain/trust.py)
    sa.Column("attributes", sa.Text),  # JSON {name: number} (NULL: none): covariates a board controls for
)

comparisons = sa.Table(
    "comparisons",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("entity1_id", sa.BigInteger, nullable=False),
    sa.Column("entity2_id", sa.BigInteger, nullable=False),
    sa.Column("selected_entity_id", sa.BigInteger),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("strategy", sa.Text),
    sa.Column("selection_probability", sa.Float),
    sa.Column("pair_token_id", sa.Text),
    sa.Column("user_id", sa.BigInteger),  # who voted; NULL when recorded anonymously
    # 'win' | 'tie' | 'both_bad'; NULL on votes older than 0012 (win if selected, else tie)
    sa.Column("verdict", sa.Text),
    sa.Column("category", sa.Text),  # the criterion the vote judged; NULL: none given
    sa.Column("project_id", sa.BigInteger, nullable=False),  # both entities' project
    sa.Column("voter", sa.Text),  # u:<user id>, k:<key id> or a:<keyed hash> (compere.infra.voters)
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("email", sa.Text),
    sa.Column("full_name", sa.Text),
    sa.Column("hashed_password", sa.Text, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("is_superuser", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    # compere.domain.accounts.canonical_name() of each: what uniqueness and login compare
    sa.Column("username_canonical", sa.Text),
    sa.Column("email_canonical", sa.Text),
    sa.Column("token_epoch", sa.Integer, nullable=False),  # raised to end every older token
    sa.Column("failed_logins", sa.Integer, nullable=False),
    sa.Column("failures_since", sa.BigInteger, nullable=False),  # Unix seconds
    sa.Column("locked_until", sa.BigInteger, nullable=False),  # Unix seconds
)

# Single logouts, each kept until its token would have expired anyway.
revoked_tokens = sa.Table(
    "revoked_tokens",
    metadata,
    sa.Column("token_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),  # Unix seconds
)

# Voter weights (compere/domain/trust.py): derived from the vote log like the ratings.
voters = sa.Table(
    "voters",
    metadata,
    sa.Column("project_id", sa.BigInteger, primary_key=True),
    sa.Column("voter", sa.Text, primary_key=True),
    sa.Column("votes", sa.BigInteger, nullable=False),
    sa.Column("evidence", sa.Float, nullable=False),
    sa.Column("touched", sa.BigInteger, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
)

voter_entities = sa.Table(
    "voter_entities",
    metadata,
    sa.Column("voter", sa.Text, primary_key=True),
    sa.Column("entity_id", sa.BigInteger, primary_key=True),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("votes", sa.BigInteger, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
)

# API keys: only the SHA-256 of a key is kept; ``prefix`` is the part shown in lists.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("project_id", sa.BigInteger),  # NULL: every project of its owner
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),  # JSON array
    sa.Column("rate_limit", sa.Integer),
    sa.Column("rate_window", sa.Integer),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Text),
    sa.Column("last_used_at", sa.Text),
    sa.Column("revoked_at", sa.Text),
)

# The per-voter daily vote counters behind a project's daily_vote_cap.
voter_daily_votes = sa.Table(
    "voter_daily_votes",
    metadata,
    sa.Column("project_id", sa.BigInteger, primary_key=True),
    sa.Column("voter", sa.Text, primary_key=True),
    sa.Column("day", sa.Text, primary_key=True),  # UTC date, YYYY-MM-DD
    sa.Column("votes", sa.Integer, nullable=False),
)

webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", sa.Text, nullable=False),  # JSON array
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("project_id", sa.BigInteger, nullable=False),  # the project whose events it hears
)

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("subject_id", sa.BigInteger),
    sa.Column("payload", sa.Text),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("project_id", sa.BigInteger),  # NULL: a vote's (its comparison's project)
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("subscription_id", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Text, nullable=False),
    sa.Column("last_attempt_at", sa.Text),
    sa.Column("response_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("replay_of", sa.BigInteger),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("delivered_at", sa.Text),
)

webhook_state = sa.Table(
    "webhook_state",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# The stored answer to each request sent with an Idempotency-Key (storage/idempotency.py).
idempotency_records = sa.Table(
    "idempotency_records",
    metadata,
    sa.Column("record_key", sa.Text, primary_key=True),  # caller scope + SHA-256 of the key
    sa.Column("fingerprint", sa.Text, nullable=False),  # method, path and body digest
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)

# One row per imported vote-log file: how far it has been stored (lines and bytes, with
# a digest of that prefix), so a re-run or a resumed run stores nothing twice.
import_runs = sa.Table(
    "import_runs",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # "compere" or "arena"
    sa.Column("lines_done", sa.BigInteger, nullable=False),
    sa.Column("bytes_done", sa.BigInteger, nullable=False),
    sa.Column("prefix_digest", sa.Text, nullable=False),
    sa.Column("stored", sa.BigInteger, nullable=False),
    sa.Column("rejected", sa.BigInteger, nullable=False),
    sa.Column("entities_created", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

# --- facts the query modules share ---------------------------------------------------

# What an entity row reads as: every column but the deletion mark and the random key.
ENTITY_COLUMNS = (
    entities.c.id,
    entities.c.name,
    entities.c.description,
    entities.c.image_urls,
    entities.c.rating,
    entities.c.comparisons,
    entities.c.wins,
    entities.c.losses,
    entities.c.ties,
    entities.c.created_at,
    entities.c.updated_at,
    entities.c.external_id,
    entities.c.mu,
    entities.c.sigma,
    entities.c.prompt,
    entities.c.attributes,
)
COMPARISON_COLUMNS = (
    comparisons.c.id,
    comparisons.c.entity1_id,
    comparisons.c.entity2_id,
    comparisons.c.selected_entity_id,
    comparisons.c.created_at,
    comparisons.c.user_id,
    comparisons.c.strategy,
    comparisons.c.selection_probability,
    comparisons.c.verdict,
    comparisons.c.category,
)
# Entities not (soft-)deleted: the only ones listings, pairs and votes see.
LIVE = entities.c.deleted_at.is_(None)

# What a new entity row is made of; shared by single creates and bulk imports.
NEW_ENTITY: dict[str, Any] = {
    "project_id": param("project_id"),
    "name": param("name"),
    "description": param("description"),
    "image_urls": param("image_urls"),
    "rating": param("rating"),
    "mu": param("mu"),
    "sigma": param("sigma"),
    "random_key": param("random_key"),
    "created_at": param("now"),
    "updated_at": param("now"),
    "external_id": param("external_id"),
    "prompt": param("prompt"),
    "attributes": param("attributes"),
}


def new_comparison(first: str, second: str) -> dict[str, Any]:
    """A new comparison row; the entity ids are bound under the given names."""
    return {
        "project_id": param("project_id"),
        "entity1_id": param(first),
        "entity2_id": param(second),
        "selected_entity_id": param("selected_entity_id"),
        "created_at": param("now"),
        "user_id": param("user_id"),
        "strategy": param("strategy"),
        "selection_probability": param("probability"),
        "pair_token_id": param("pair_token_id"),
        "verdict": param("verdict"),
        "category": param("category"),
        "voter": param("voter"),
    }
