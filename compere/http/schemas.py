"""Request and response shapes, declared once.

The same pydantic models validate input and generate the OpenAPI document. Views
build response dicts directly (faster than model instances); the response models
document them and the OpenAPI tests check that the two agree. The field rules that the
CLI and the services share (entities, users) live in ``compere.domain.inputs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from compere.domain import covariates
from compere.domain.inputs import (
    ATTRIBUTES_DESCRIPTION,
    STORABLE,
    Attributes,
    Category,
    Description,
    ImageUrls,
    InputModel,
    Name,
    Password,
    Prompt,
    StorableText,
    Verdict,
    VoterName,
    trimmed,
)

# Part of the API's models (routes, OpenAPI, the Python client), declared with their rules.
from compere.domain.inputs import EntityCreate as EntityCreate
from compere.domain.inputs import UserCreate as UserCreate
from compere.domain.strategies import Strategy

# Ids are 64-bit integers in PostgreSQL; anything larger can never exist.
MAX_ID = 2**63 - 1


def _not_bool(value: object) -> object:
    # JSON true/false are not numbers, whatever Python's bool-is-int says.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


Integer = Annotated[int, BeforeValidator(_not_bool)]
# Constraints go before the validator, or pydantic documents them as "ge"/"le".
EntityId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_not_bool)]


# Every request and response model ignores fields it does not know.
Model = InputModel


class EntityUpdate(Model):
    """Partial update: only the fields present in the body change."""

    name: Name | None = None
    description: Description | None = None
    image_urls: ImageUrls | None = None
    prompt: Prompt | None = None
    attributes: Attributes | None = Field(
        default=None, description=ATTRIBUTES_DESCRIPTION + "; replaces the whole set, null clears it"
    )


class Entity(Model):
    id: int
    name: str
    description: str
    image_urls: list[str]
    rating: float = Field(description="Elo rating")
    comparisons: int = Field(description="Comparisons this entity took part in")
    wins: int
    losses: int
    ties: int
    created_at: datetime
    updated_at: datetime
    external_id: str | None = Field(default=None, description="The identifier given at creation or import")
    prompt: str | None = Field(default=None, description="The prompt this entity answers, if any")
    attributes: dict[str, float] = Field(
        default_factory=dict, description="Named numbers a fitted board can control for (/ratings?control=)"
    )
    score: float = Field(description="Bayesian strength (posterior mean, logit units)")
    uncertainty: float = Field(description="Posterior standard deviation of the strength")
    interval_95: list[float] = Field(
        min_length=2, max_length=2, description="95% credible interval [low, high]"
    )


class RankedEntity(Entity):
    rank: int = Field(
        description="Leaderboard rank; statistically tied entities share it (by=score, model=bt)"
    )
    tied: bool = Field(description="Another entity on the board shares this rank")
    provisional: bool | None = Field(
        default=None,
        description="Only with detail=full: still too uncertain or too few votes to be ranked for sure",
    )
    rank_interval_95: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="Only with detail=full: 95% interval [best, worst] of the entity's rank",
    )


class EntityListQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=1000)
    search: Annotated[str, StringConstraints(max_length=200), STORABLE] | None = None


def _control(value: str) -> str:
    covariates.parse_names(value)
    return value


Control = Annotated[str, StringConstraints(max_length=600), AfterValidator(_control)]


class ComparisonCreate(Model):
    entity1_id: EntityId
    entity2_id: EntityId
    selected_entity_id: EntityId | None = Field(description="The preferred entity, or null for a tie")
    pair_token: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="The pair_token of the served pair; links the vote to it (single use)"
    )
    verdict: Verdict | None = Field(
        default=None,
        description="win (selected_entity_id names the winner), tie or both_bad (selected_entity_id "
        "null); by default win when an entity is selected, else tie",
    )
    category: Category | None = Field(
        default=None, description="The criterion or prompt category this vote judged"
    )
    voter: VoterName | None = Field(
        default=None,
        description="Your own id of the end user this vote is cast for (API keys with the vote "
        "scope only); stored only as a keyed hash",
    )


class Comparison(Model):
    id: int
    entity1_id: int
    entity2_id: int
    selected_entity_id: int | None
    created_at: datetime
    user_id: int | None = Field(default=None, description="Who recorded it; null when recorded anonymously")
    strategy: str | None = Field(description="Strategy that served the pair, when a pair_token was sent")
    selection_probability: float | None = Field(description="Probability the pair had of being chosen")
    verdict: Verdict = Field(default="win", description="win, tie or both_bad")
    category: str | None = Field(default=None, description="The criterion this vote judged, if any")


MAX_BATCH_VOTES = 1000


class ComparisonBatch(Model):
    votes: list[ComparisonCreate] = Field(
        min_length=1,
        max_length=MAX_BATCH_VOTES,
        description="Up to 1,000 votes, stored in this order in one transaction",
    )


class BatchItemResult(Model):
    index: int = Field(description="Position of the vote in the request")
    status: int = Field(description="200 stored; 404 an entity is missing or deleted; 409 pair_token used")
    comparison: Comparison | None = Field(default=None, description="The stored comparison (status 200)")
    detail: str | None = Field(default=None, description="Why the vote was not stored")


class BatchResult(Model):
    stored: int = Field(description="How many votes were stored")
    results: list[BatchItemResult]


class ComparisonListQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=1000)
    entity_id: EntityId | None = None


class ImportQuery(Model):
    format: Literal["jsonl", "csv"] = Field(default="jsonl", description="How the request body is written")


class ImportRejection(Model):
    line: int
    reason: str


class ImportResult(Model):
    created: int = Field(description="New entities")
    existing: int = Field(description="Records whose external_id already existed (left unchanged)")
    rejected_count: int
    rejected: list[ImportRejection] = Field(description="The first 100 rejected lines and why")


class VoteImportQuery(Model):
    format: Literal["jsonl", "csv"] = Field(default="jsonl", description="How the request body is written")
    on_error: Literal["skip", "stop"] = Field(
        default="skip",
        description="skip: report a bad line and go on (up to max_rejected); stop: stop at the first",
    )
    max_rejected: int = Field(
        default=100, ge=0, le=10_000_000, description="With skip: the most lines rejected"
    )
    source: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="The name this file's progress is kept under (default: a digest of its first record)",
    )


class VoteImportResult(Model):
    kind: Literal["compere", "arena"] | None = Field(
        description="What the file was read as (null: no record)"
    )
    source: str | None = Field(description="The name the file's progress is kept under")
    stored: int = Field(description="Votes stored by this request")
    already_imported: int = Field(description="Records an earlier import of this file already took care of")
    rejected_count: int
    rejected: list[ImportRejection] = Field(description="The first 100 rejected lines and why")
    entities_created: int
    lines_done: int = Field(description="Every line up to this one is stored, rejected or was done before")
    complete: bool = Field(description="Whether the whole body was read; if not, send it again to go on")
    stopped_line: int | None = Field(description="The line the import stopped before, when it stopped early")
    stopped: str | None = Field(description="Why the import stopped early")


class ExportQuery(Model):
    format: Literal["jsonl", "csv"] = Field(default="jsonl", description="JSON Lines (default) or CSV")


class MabUpdateQuery(Model):
    comparison_id: EntityId


class Pair(Model):
    entity1: Entity
    entity2: Entity
    pair_token: str = Field(description="Echo it in POST /comparisons/ to link the vote to this pair")
    strategy: str
    selection_probability: float = Field(description="Probability of this pair given the candidate set")


class PairQuery(Model):
    strategy: Strategy | None = Field(
        default=None, description="Pair selection strategy; the server's RANKING_STRATEGY by default"
    )
    category: Category | None = Field(
        default=None, description="Focus on this category: judge candidates by its board (active, random)"
    )


class ContentPairQuery(Model):
    seed: Integer | None = Field(default=None, ge=0, le=2**32, description="Makes the sample reproducible")


class ContentPair(Model):
    entity1: Entity
    entity2: Entity


class RatingsQuery(Model):
    by: Literal["rating", "score"] = Field(
        default="rating", description="Sort by Elo rating or Bayesian score"
    )
    model: Literal["online", "bt"] = Field(
        default="online", description="online: per-vote updates; bt: Bradley-Terry fit of the whole log"
    )
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Annotated[int, Field(ge=1, le=100_000), BeforeValidator(_not_bool)] | None = Field(
        default=None, description="Page size; without it the whole leaderboard is streamed"
    )
    category: Category | None = Field(
        default=None, description="The board of this category's votes only (a Bradley-Terry fit)"
    )
    detail: Literal["basic", "full"] = Field(
        default="basic",
        description="full: order by score and add provisional and rank_interval_95 to every entry",
    )
    provisional: Literal["last", "inline"] = Field(
        default="last",
        description="With detail=full: list provisional entries after the settled ones, or in place",
    )
    control: Control | None = Field(
        default=None,
        description="Entity attributes to control for, comma-separated (e.g. length,markdown_headers): the "
        "fitted board with what they explain taken out, beside the unadjusted ranks, and the fitted "
        "coefficients (the answer is then an object, see ControlledBoard)",
    )


class ControlledEntity(RankedEntity):
    unadjusted_score: float = Field(description="The score on the board without the control")
    unadjusted_rank: int = Field(description="The rank on the board without the control")
    imputed: list[str] = Field(
        description="Controlled attributes this entity lacks: taken at the board's mean (no adjustment for them)"
    )


class Coefficient(Model):
    attribute: str
    coefficient: float = Field(
        description="Logits per standard deviation of the attribute: > 0 means votes favour more of it"
    )
    standard_error: float = Field(description="Laplace standard error of the coefficient")
    interval_95: list[float] = Field(min_length=2, max_length=2)
    mean: float = Field(description="The attribute's mean over the board's entities that have it")
    standard_deviation: float = Field(
        description="Its standard deviation there (the unit of the coefficient)"
    )


class ControlledBoard(Model):
    control: list[str] = Field(description="The attributes controlled for")
    category: str | None = None
    coefficients: list[Coefficient]
    entries: list[ControlledEntity] = Field(
        description="Best first by the adjusted score: score, uncertainty, rank and tied are the adjusted board's"
    )


class ProgressQuery(Model):
    model: Literal["online", "bt"] = Field(default="online", description="Which board to assess")
    target_tau: float = Field(
        default=0.8, ge=-0.99, le=0.999, description="The Kendall tau to estimate votes for"
    )
    top_k: Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_not_bool)] | None = Field(
        default=None,
        description="How many top entries must be settled against the next (default: the project's ranking_top_k)",
    )
    category: Category | None = Field(default=None, description="Assess this category's board")


class CategoryCount(Model):
    category: str
    votes: int


class AttributeCount(Model):
    attribute: str
    entities: int = Field(description="Live entities that have this attribute")


class Progress(Model):
    model: Literal["online", "bt"]
    category: str | None = None
    entities: int
    votes: int = Field(description="Votes recorded so far")
    expected_tau: float = Field(
        description="Posterior expected Kendall tau between the board's order and the true order"
    )
    settled_adjacent_share: float = Field(
        description="Share of neighbouring entries whose order is at least 95% probable"
    )
    target_tau: float
    votes_to_target: int | None = Field(
        description="More votes expected to bring expected_tau to target_tau (null: beyond 1,000 per entity)"
    )
    top_k: int
    votes_to_settle_top_k: int | None = Field(
        description="More votes expected before each of the top k is 95% sure against the next one"
    )
    strategy: str = Field(description="The pair strategy assumed for the coming votes")
    information_per_vote: float = Field(description="p(1-p) per vote assumed for that strategy")


class Message(Model):
    message: str


class Health(Model):
    status: Literal["healthy"]
    timestamp: datetime
    version: str


class ReadinessSummary(Model):
    status: Literal["ready", "not ready"]
    database: Literal["connected", "disconnected"]


class Readiness(ReadinessSummary):
    timestamp: datetime = Field(
        description="When this worker last ran the checks (cached up to READY_CACHE_SECONDS)"
    )
    checks: dict[str, str] = Field(description="Each dependency: ok, degraded, unavailable or not configured")
    detail: ReadinessSummary | None = Field(
        default=None, description="Only when not ready: the original Compere's 503 body"
    )


# --- users and tokens ---------------------------------------------------------------


class PasswordChange(Model):
    current_password: Password
    new_password: Password = Field(
        description="The same policy as at sign-up: at least PASSWORD_MIN_LENGTH characters, at most "
        "72 bytes in UTF-8, not a common password and not containing the username"
    )


class PasswordChanged(Model):
    message: str
    access_token: str = Field(description="A new token; every older token of the account has ended")
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds until the token expires")
    csrf_token: str | None = Field(
        default=None, description="Cookie mode only: send it back in the X-CSRF-Token header on writes"
    )


class User(Model):
    id: int
    username: str
    email: str | None
    full_name: str | None
    disabled: bool
    is_superuser: bool
    created_at: datetime


class UserListQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=1000)


class LoginForm(Model):
    """OAuth2 password grant, as a form body (``application/x-www-form-urlencoded``) or JSON."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=254), STORABLE]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024), STORABLE]
    grant_type: Literal["password"] | None = None


class Token(Model):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds until the token expires")
    csrf_token: str | None = Field(
        default=None, description="Cookie mode only: send it back in the X-CSRF-Token header on writes"
    )


class ValidationIssue(Model):
    loc: list[str | int]
    msg: str
    type: str


class Error(Model):
    detail: str | list[ValidationIssue]
    request_id: str | None = None


# --- webhooks -------------------------------------------------------------------------

WebhookEvent = Literal["comparison.created", "leaderboard.changed", "entity.created", "import.finished"]


def _webhook_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password")
    return value


WebhookUrl = Annotated[StorableText, trimmed(2048), AfterValidator(_webhook_url)]
WebhookEvents = Annotated[list[WebhookEvent], Field(min_length=1, max_length=4)]
WebhookDescription = Annotated[StorableText, StringConstraints(max_length=500)]


class WebhookCreate(Model):
    url: WebhookUrl = Field(description="Where deliveries are POSTed (http or https)")
    events: WebhookEvents = Field(description="Event types to receive")
    description: WebhookDescription = ""
    active: bool = True


class WebhookUpdate(Model):
    """Partial update: only the fields present in the body change."""

    url: WebhookUrl | None = None
    events: WebhookEvents | None = None
    description: WebhookDescription | None = None
    active: bool | None = None


class Webhook(Model):
    id: int
    url: str
    events: list[str]
    description: str
    active: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(description="The signing secret: shown only in this response, keep it")


class WebhookDelivery(Model):
    id: int
    subscription_id: int
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="When the next attempt is due (pending only)")
    last_attempt_at: datetime | None
    response_code: int | None = Field(description="HTTP status of the last attempt, if it got one")
    last_error: str | None
    replay_of: int | None = Field(description="The delivery this one replays")
    created_at: datetime
    delivered_at: datetime | None


class DeliveryListQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=1000)
    status: Literal["pending", "delivered", "failed"] | None = None


class PreferenceExportQuery(Model):
    format: Literal["dpo", "arena"] = Field(description="dpo: prompt/chosen/rejected; arena: battles")
    ties: Literal["skip", "keep"] = Field(
        default="skip", description="dpo only: keep writes ties with a `tie: true` field"
    )


class VotersQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=10_000)


class Voter(Model):
    voter: str = Field(description="`u:<user id>`")
    votes: int
    reliability: float = Field(description="posterior probability that the voter answers by the consensus")
    evidence: float = Field(
        description="summed log-likelihood ratio of the voter's answers (reliable vs random)"
    )
    board_weight: float = Field(description="what each of the voter's votes counts for on the model=bt board")
    mean_vote_weight: float = Field(description="what the voter's votes counted for online, on average")
    entities: int = Field(description="distinct entities voted on")
    entity_cap: float | None = Field(description="votes on one entity that count (null when TRUST_MODE=off)")
    max_influence: float = Field(description="largest share of one live entity's vote weight the voter holds")
    max_influence_entity_id: int | None


class FewVoterEntity(Model):
    entity_id: int
    effective_voters: float = Field(
        description="(sum of weights)^2 / sum of squared weights, over its voters"
    )
    top_voter: str
    top_share: float


class VotersReport(Model):
    mode: Literal["off", "default", "strict"]
    voters: list[Voter]
    few_voter_entities: list[FewVoterEntity] = Field(
        description="live entities whose vote weight rests on fewer than 3 effective voters"
    )


# --- API keys ------------------------------------------------------------------------

ApiKeyScope = Literal["read", "vote", "write", "admin"]


class ApiKeyCreate(Model):
    name: Annotated[str, StringConstraints(max_length=200), STORABLE] = Field(
        default="", description="What the key is for (shown in lists)"
    )
    scopes: list[ApiKeyScope] = Field(
        min_length=1, max_length=4, description="read, vote, write and/or admin"
    )
    project_id: Integer | None = Field(
        default=None, ge=1, le=MAX_ID, description="The one project the key acts on; null for all of yours"
    )
    expires_at: datetime | None = Field(default=None, description="When the key stops working (with a zone)")
    rate_limit: Integer | None = Field(
        default=None, ge=1, le=1_000_000, description="Requests the key may make per rate_window seconds"
    )
    rate_window: Integer | None = Field(default=None, ge=1, le=86_400, description="Seconds (default 60)")


class ApiKey(Model):
    id: int
    name: str
    prefix: str = Field(description="The visible start of the key, e.g. ck_1a2b3c4d")
    scopes: list[str]
    project_id: int | None
    rate_limit: int | None
    rate_window: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Recorded at most once a minute")
    revoked: bool


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key itself: shown only in this response, keep it")


# --- projects ------------------------------------------------------------------------

ProjectName = Name
ProjectDescription = Annotated[str, StringConstraints(max_length=2000), STORABLE]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Role = Literal["owner", "editor", "voter", "viewer"]


class ProjectSettingsIn(Model):
    """A project's own ranking settings; null (or absent on create) follows the deployment's."""

    strategy: Strategy | None = Field(default=None, description="Pair strategy (RANKING_STRATEGY)")
    elo_k_factor: float | None = Field(default=None, ge=0.1, le=400, description="Elo K (ELO_K_FACTOR)")
    prior_sd: float | None = Field(
        default=None, ge=0.1, le=10, description="Prior spread of a new entity's strength (BAYES_PRIOR_SIGMA)"
    )
    exploration: float | None = Field(
        default=None, ge=0, le=1, description="Share of uniformly random pairs (PAIR_EXPLORATION)"
    )
    allow_ties: bool | None = Field(default=None, description="Accept ties (default true)")
    allow_anonymous: bool | None = Field(
        default=None, description="Accept votes without a token on a public project (default false)"
    )
    daily_vote_cap: Integer | None = Field(
        default=None, ge=0, le=1_000_000, description="Votes per voter per UTC day, 0 = none (default 0)"
    )
    trust_mode: Literal["off", "default", "strict"] | None = Field(
        default=None,
        description="How strongly votes are weighed by their voter's record (TRUST_MODE); changing "
        "it recomputes the project's ratings from its vote log in the same request",
    )
    provisional_max_uncertainty: float | None = Field(
        default=None,
        ge=0.01,
        le=10,
        description="A board entry is provisional while its uncertainty is above this (PROVISIONAL_MAX_UNCERTAINTY)",
    )
    provisional_min_votes: Integer | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="... or while it has fewer votes than this (PROVISIONAL_MIN_VOTES)",
    )
    ranking_objective: Literal["full", "top_k"] | None = Field(
        default=None,
        description="What active pairs serve: the whole order, or finding and ordering the best "
        "ranking_top_k (RANKING_OBJECTIVE)",
    )
    ranking_top_k: Integer | None = Field(
        default=None, ge=1, le=10_000, description="K of the top_k objective (RANKING_TOP_K)"
    )


class ProjectCreate(ProjectSettingsIn):
    slug: Slug = Field(description="URL-safe and unique; cannot be changed later")
    name: ProjectName
    description: ProjectDescription = ""
    visibility: Literal["private", "public"] = "private"


class ProjectUpdate(ProjectSettingsIn):
    """Partial update: only the fields present in the body change (the slug never does)."""

    name: ProjectName | None = None
    description: ProjectDescription | None = None
    visibility: Literal["private", "public"] | None = None


class ProjectSettingsOut(Model):
    strategy: Strategy
    elo_k_factor: float
    prior_sd: float
    exploration: float
    allow_ties: bool
    allow_anonymous: bool
    daily_vote_cap: int
    trust_mode: Literal["off", "default", "strict"]
    provisional_max_uncertainty: float
    provisional_min_votes: int
    ranking_objective: Literal["full", "top_k"]
    ranking_top_k: int


class ProjectOut(Model):
    id: int
    slug: str
    name: str
    description: str
    visibility: Literal["private", "public"]
    created_at: datetime
    archived_at: datetime | None
    overrides: dict[str, str | float | bool | int | None] = Field(
        description="The project's own settings; null follows the deployment's"
    )
    settings: ProjectSettingsOut = Field(description="The settings in force")
    role: Role | None = Field(description="The caller's role in the project (null: not a member)")


class ProjectUpdated(ProjectOut):
    ratings_rebuilt: int | None = Field(
        description="When the change moved the trust mode in force: the votes replayed to recompute the "
        "project's ratings and voter records under the new mode (in the same request); null otherwise"
    )


class ProjectListQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=1000)
    archived: bool = Field(default=False, description="List the archived projects instead (superusers)")


class Member(Model):
    user_id: int
    username: str
    role: Role


class MemberSet(Model):
    role: Role
