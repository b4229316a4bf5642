"""Input rules shared by the HTTP API, the CLI and the services: what an entity's and a
user's fields may hold, and how a broken rule reads.

Pydantic types and models, so one declaration both validates and documents (the HTTP
schemas reuse them unchanged, and the OpenAPI document describes them from here).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import ErrorDetails

from compere.domain.accounts import canonical_name
from compere.domain.covariates import MAX_ATTRIBUTES, check_attributes


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


# Length constraints go before this check in an Annotated type: after it, pydantic no
# longer sees a string and says "at most 1000 items after validation" for a long text.
STORABLE = AfterValidator(_storable_text)
StorableText = Annotated[str, STORABLE]


def trimmed(max_length: int) -> AfterValidator:
    """Surrounding spaces removed; then 1 to ``max_length`` characters."""

    def check(value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty or only spaces")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        return value

    return AfterValidator(check)


Name = Annotated[StorableText, trimmed(200)]
# A vote's verdict, the criterion it judged, and a client's own id of the end user who
# cast it (the vote's ``voter`` field, an arena file's ``judge``).
Verdict = Literal["win", "tie", "both_bad"]
Category = Annotated[str, StringConstraints(min_length=1, max_length=100), STORABLE]
VoterName = Annotated[str, StringConstraints(min_length=1, max_length=200), STORABLE]
Description = Annotated[str, StringConstraints(max_length=1000), STORABLE, _none_as("")]
ImageUrl = Annotated[StorableText, trimmed(2048)]
ImageUrls = Annotated[list[ImageUrl], Field(max_length=10), _none_as([])]
ExternalId = Annotated[StorableText, trimmed(200)]
Prompt = Annotated[StorableText, StringConstraints(max_length=20000)]
Attributes = Annotated[dict[str, float], BeforeValidator(check_attributes)]
ATTRIBUTES_DESCRIPTION = (
    f"Named numbers (at most {MAX_ATTRIBUTES}; names of a-z, 0-9 and _, starting with a letter, at most 32 "
    'characters), e.g. {"length": 512}: covariates a fitted board can control for (/ratings?control=)'
)


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


class InputModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- entities ----------------------------------------------------------------------


class EntityCreate(InputModel):
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
    attributes: Attributes = Field(default_factory=dict, description=ATTRIBUTES_DESCRIPTION)


# --- users -------------------------------------------------------------------------

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
# The length rules that depend on settings (minimum, 72 bytes) are checked by the caller
# (sign-up view, CLI) with compere.infra.passwords.password_problem.
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024), STORABLE]


class UserCreate(InputModel):
    username: Username = Field(
        description="3 to 50 letters, digits or ._@-; unique regardless of case and Unicode form"
    )
    password: Password = Field(
        description="At least PASSWORD_MIN_LENGTH characters (default 12), at most 72 bytes in UTF-8, "
        "not a common password and not containing the username"
    )
    email: Email | None = None
    full_name: Annotated[str, StringConstraints(max_length=200), STORABLE] | None = None
    is_superuser: bool = Field(default=False, description="Honoured only when a superuser creates the user")
