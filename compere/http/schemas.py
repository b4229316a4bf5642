"""Request and response shapes, declared once.

The same pydantic models validate input and generate the OpenAPI document. Views
build response dicts directly (faster than model instances); the response models
document them and the OpenAPI tests check that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

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


StorableText = Annotated[str, AfterValidator(_storable_text)]
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
Description = Annotated[StorableText, StringConstraints(max_length=1000), _none_as("")]
ImageUrl = Annotated[StorableText, _trimmed(2048)]
ImageUrls = Annotated[list[ImageUrl], Field(max_length=10), _none_as([])]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EntityCreate(Model):
    name: Name = Field(description="1 to 200 characters, surrounding spaces trimmed")
    description: Description = Field(default="", description="At most 1000 characters")
    image_urls: ImageUrls = Field(default_factory=list, description="At most 10 non-empty strings")


class EntityUpdate(Model):
    """Partial update: only the fields present in the body change."""

    name: Name | None = None
    description: Description | None = None
    image_urls: ImageUrls | None = None


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


class EntityListQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=1000)
    search: Annotated[StorableText, StringConstraints(max_length=200)] | None = None


class ComparisonCreate(Model):
    entity1_id: EntityId
    entity2_id: EntityId
    selected_entity_id: EntityId | None = Field(description="The preferred entity, or null for a tie")


class Comparison(Model):
    id: int
    entity1_id: int
    entity2_id: int
    selected_entity_id: int | None
    created_at: datetime


class ComparisonListQuery(Model):
    skip: Integer = Field(default=0, ge=0, le=MAX_ID)
    limit: Integer = Field(default=100, ge=1, le=1000)
    entity_id: EntityId | None = None


class MabUpdateQuery(Model):
    comparison_id: EntityId


class Pair(Model):
    entity1: Entity
    entity2: Entity


class Message(Model):
    message: str


class Health(Model):
    status: Literal["healthy"]
    timestamp: datetime
    version: str


class Readiness(Model):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="Each dependency: ok, degraded, unavailable or not configured")


class ValidationIssue(Model):
    loc: list[str | int]
    msg: str
    type: str


class Error(Model):
    detail: str | list[ValidationIssue]
    request_id: str | None = None
