"""Request and response shapes, declared once.

The same pydantic models validate input and generate the OpenAPI document. Views
build response dicts directly (faster than model instances); the response models
document them and the OpenAPI tests check that the two agree.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import ErrorDetails

from compere.domain.accounts import canonical_name
from compere.domain.strategies import Strategy

# Ids are 64-bit integers in PostgreSQL; anything larger can never exist.
MAX_ID = 2**63 - 1


def _storable_text(value: str) -> str:
    """Reject text no database can store: lone UTF-16 surrogates and NUL characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _none_as(default: object) -> BeforeValidator:
    def convert(value: object) -> object:
        return default if value is None else value

    return BeforeValidator(convert)


def _not_bool(value: object) -> object:
    # JSON true/false are not numbers, whatever Python's bool-is-int says.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


# Length constraints go before this check in an Annotated type: after it, pydantic no
# longer sees a string and says "at most 1000 items after validation" for a long text.
_STORABLE = AfterValidator(_storable_text)
StorableText = Annotated[str, _STORABLE]
Integer = Annotated[int, BeforeValidator(_not_bool)]
# Constraints go before the validator, or pydantic documents them as "ge"/"le".
EntityId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_not_bool)]


def _trimmed(max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty or only spaces")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        return value

    return AfterValidator(check)


Name = Annotated[StorableText, _trimmed(200)]
Description = Annotated[str, StringConstraints(max_length=1000), _STORABLE, _none_as("")]
ImageUrl = Annotated[StorableText, _trimmed(2048)]
ImageUrls = Annotated[list[ImageUrl], Field(max_length=10), _none_as([])]
ExternalId = Annotated[StorableText, _trimmed(200)]
Prompt = Annotated[StorableText, StringConstraints(max_length=20000)]


def issue_message(error: ErrorDetails) -> str:
    """A validation error's message as people should read it.

    pydantic puts "Value error, " (or "Assertion failed, ") before the text a validator
    raised; the text itself already says what is wrong.
    """
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EntityCreate(Model):
    name: Name = Field(description="1 to 200 characters, surrounding spaces trimmed")
    description: Description = Field(default="", description="At most 1000 characters")
    image_urls: ImageUrls = Field(default_factory=list, description="At most 10 non-empty strings")
    external_id: ExternalId | None = Field(
        default=None,
        description="Optional identifier from your own system, unique across entities (409 if taken)",
    )
    prompt: Prompt | None = Field(
        default=None,
        description="The prompt this entity answers (at most 20000 characters); preference exports pair "
        "responses to the same prompt",
    )


class EntityUpdate(Model):
    """Partial update: only the fields present in the body change."""

    name: Name | None = None
    description: Description | None = None
    image_urls: ImageUrls | None = None
    prompt: Prompt | None = None


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


class EntityListQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=1000)
    search: Annotated[str, StringConstraints(max_length=200), _STORABLE] | None = None


class ComparisonCreate(Model):
    entity1_id: EntityId
    entity2_id: EntityId
    selected_entity_id: EntityId | None = Field(description="The preferred entity, or null for a tie")
    pair_token: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="The pair_token of the served pair; links the vote to it (single use)"
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

_USERNAME_CHARACTERS = re.compile(r"[a-z0-9][a-z0-9._@-]*")


def _username(value: str) -> str:
    """A username whose canonical form (``canonical_name``) is made of the allowed
    characters, so a look-alike spelling (full-width letters, a dotted capital I) is the
    name it looks like and meets that name's uniqueness, not a second account."""
    value = unicodedata.normalize("NFKC", value)
    if not 3 <= len(value) <= 50:
        raise ValueError("must be 3 to 50 characters")
    if not _USERNAME_CHARACTERS.fullmatch(canonical_name(value)):
        raise ValueError("must start with a letter or digit and contain only letters, digits and ._@-")
    return value


Username = Annotated[str, StringConstraints(min_length=3, max_length=50), AfterValidator(_username)]
Email = Annotated[
    str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", strip_whitespace=True)
]
# The length rules that depend on settings (minimum, 72 bytes) are checked by the view.
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024), _STORABLE]


class UserCreate(Model):
    username: Username = Field(
        description="3 to 50 letters, digits or ._@-; unique regardless of case and Unicode form"
    )
    password: Password = Field(
        description="At least PASSWORD_MIN_LENGTH characters (default 12), at most 72 bytes in UTF-8, "
        "not a common password and not containing the username"
    )
    email: Email | None = None
    full_name: Annotated[str, StringConstraints(max_length=200), _STORABLE] | None = None
    is_superuser: bool = Field(default=False, description="Honoured only when a superuser creates the user")


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

    username: Annotated[str, StringConstraints(min_length=1, max_length=254), _STORABLE]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024), _STORABLE]
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


WebhookUrl = Annotated[StorableText, _trimmed(2048), AfterValidator(_webhook_url)]
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
