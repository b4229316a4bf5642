"""One settings object, built once at start-up from the environment and a ``.env`` file.

Each setting is declared once, as a field of :class:`Settings`: its environment variable,
type, default, check and a line saying what it means. :func:`load_settings` reads every
field from its variable; a bad value raises :class:`SettingsError` with one line that
names the variable and what is allowed, and the CLI prints that line and exits.
Production refuses unsafe combinations (see ``_production_problems``). What other parts
build from the settings (the Bayesian prior, the UCB parameters, the rate-limit policies,
the trusted proxies) is built once, with the settings.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from compere.domain.bayes import DEFAULT_PRIOR, Prior
from compere.domain.projects import OBJECTIVES, Objective
from compere.domain.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy
from compere.domain.trust import POLICIES, TRUST_MODES, TrustMode, TrustPolicy
from compere.domain.ucb import UCBParams
from compere.infra.addresses import IPNetwork, TrustedProxies, parse_trusted_proxies
from compere.infra.logging import FORMATS, LogFormat
from compere.infra.ratelimit_policy import FailMode, RateLimitPolicy
from compere.infra.redis import parse_redis_url

Environment = Literal["development", "staging", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ENVIRONMENTS: tuple[Environment, ...] = get_args(Environment)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
DbPooler = Literal["none", "pgbouncer"]
DB_POOLERS: tuple[DbPooler, ...] = get_args(DbPooler)
FAIL_MODES: tuple[FailMode, ...] = get_args(FailMode)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

T = TypeVar("T")
Option = TypeVar("Option", bound=str)
LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
_UCB = UCBParams()  # the original Compere's pairing parameters: the defaults below

# HS256 wants a key at least as long as its 32-byte output (RFC 7518 section 3.2).
MIN_SECRET_KEY_LENGTH = 32
# Keys printed in the security policy and the docs as examples: anyone can sign with them.
PUBLISHED_EXAMPLE_KEYS = frozenset({"xK8vJ2mN7pQ9rS3tW6yZ1aB4cD5eF8gH", "your-very-long-secure-secret-key"})
# Estimated bits a production key must carry. secrets.token_hex(16) (128 random bits, the
# least of the usual recipes) scores 94 or more; one letter repeated scores 0.
MIN_SECRET_KEY_BITS = 80


class SettingsError(ValueError):
    """A configuration value is missing, malformed or unsafe; the message names it."""


# --- how a setting is declared ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variable:
    """How one setting is read from the environment (kept in its field's metadata)."""

    name: str  # the environment variable
    parse: Callable[[str], Any]  # the stripped text to the value; ValueError/TypeError when bad
    expected: str  # what the error message says is allowed
    doc: str  # what the setting means, in one line


_VARIABLE = "variable"  # the metadata key


def variable_of(name: str) -> Variable:
    """The declaration of the setting ``name`` (a field of :class:`Settings`)."""
    return next(f.metadata[_VARIABLE] for f in fields(Settings) if f.name == name)


def variables() -> list[Variable]:
    """Every setting read from the environment, in declaration order."""
    return [f.metadata[_VARIABLE] for f in fields(Settings) if _VARIABLE in f.metadata]


def _setting(name: str, default: T, parse: Callable[[str], T], expected: str, doc: str, **options: Any) -> T:
    return field(default=default, metadata={_VARIABLE: Variable(name, parse, expected, doc)}, **options)


def _flag(name: str, default: bool, doc: str) -> bool:
    def parse(raw: str) -> bool:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(raw)

    return _setting(name, default, parse, "true or false", doc)


def _number(name: str, default: float, low: float, high: float, doc: str) -> float:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:  # also rejects nan
            raise ValueError(raw)
        return value

    return _setting(name, default, parse, f"a number from {low:g} to {high:g}", doc)


def _integer(name: str, default: int, low: int, high: int, doc: str) -> int:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return _setting(name, default, parse, f"an integer from {low} to {high}", doc)


def _choice(
    name: str, default: Option, options: tuple[Option, ...], doc: str, *, upper: bool = False
) -> Option:
    def parse(raw: str) -> Option:
        value = raw.upper() if upper else raw.lower()
        for option in options:
            if value == option:
                return option
        raise ValueError(raw)

    return _setting(name, default, parse, "one of " + ", ".join(options), doc)


# --- parsers of single values ------------------------------------------------------


def _database_url(value: str) -> str:
    if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return value
    parts = urlsplit(value)
    if parts.scheme in ("postgresql", "postgres") and parts.path.strip("/"):
        return value
    raise ValueError(value)


def _postgres_url(value: str) -> str:
    if urlsplit(value).scheme not in ("postgresql", "postgres"):
        raise ValueError(value)
    return _database_url(value)


def _redis_url(value: str) -> str:
    parse_redis_url(value)  # ValueError for an unknown scheme or a malformed node list
    return value


def _networks(value: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDR blocks (``10.0.0.0/8, ::1``)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()
    )


def _origins(value: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(origin)
    return origins


def _key_prefix(value: str) -> str:
    if len(value) > 64 or not value.isprintable() or " " in value:
        raise ValueError(value)
    return value


def _trusted_proxies(value: str) -> tuple[str, ...]:
    items = tuple(item for item in re.split(r"[,\s]+", value) if item)
    parse_trusted_proxies(items)  # ValueError for a host name or stray bits
    return items


_KEY_RULE = "up to 64 printable characters, no spaces"
_DATABASE_RULE = "sqlite:///PATH or postgresql://USER@HOST/DB"


# --- the settings ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting, each declared once: its variable, type, default, check and meaning.

    The fields after the declared ones are derived from them when a Settings is made
    (by :func:`load_settings` or directly, as tests do), never per request.
    """

    database_url: str = _setting(
        "DATABASE_URL", "sqlite:///./compere.db", _database_url, _DATABASE_RULE, "the database to use"
    )
    redis_url: str | None = _setting(
        "REDIS_URL",
        None,
        _redis_url,
        "redis://HOST:PORT/DB, redis+cluster://HOST:PORT,HOST:PORT or redis+sentinel://HOST:PORT,.../SERVICE/DB",
        "Redis for shared limits, login counters, idempotency: one server, a cluster or a Sentinel set",
    )
    environment: Environment = _choice(
        "ENVIRONMENT",
        "development",
        ENVIRONMENTS,
        "production hides error details and refuses unsafe settings",
    )
    log_level: LogLevel = _choice(
        "LOG_LEVEL", "INFO", LOG_LEVELS, "the least severe level logged", upper=True
    )
    log_requests: bool = _flag("LOG_REQUESTS", True, "one log line per request")
    log_format: LogFormat = _choice("LOG_FORMAT", "text", FORMATS, "text, or one JSON object per line")

    elo_k_factor: float = _number("ELO_K_FACTOR", 32.0, 0.1, 400, "Elo K")
    elo_initial_rating: float = _number("ELO_INITIAL_RATING", 1500.0, 0, 100_000, "rating of a new entity")
    ucb_exploration_constant: float = _number(
        "UCB_EXPLORATION_CONSTANT", _UCB.exploration, 0, 100, "UCB's exploration constant c"
    )
    ucb_unexplored_weight: float = _number(
        "UCB_UNEXPLORED_WEIGHT", _UCB.unexplored_weight, 0, 1e9, "draw weight of never-compared entities"
    )
    pairing_ucb_weight: float = _number(
        "PAIRING_UCB_WEIGHT", _UCB.ucb_weight, 0, 1, "weight of the opponent's UCB score"
    )
    pairing_similarity_weight: float = _number(
        "PAIRING_SIMILARITY_WEIGHT", _UCB.similarity_weight, 0, 1, "weight of rating closeness"
    )
    pairing_random_weight: float = _number(
        "PAIRING_RANDOM_WEIGHT", _UCB.random_weight, 0, 1, "weight of chance"
    )
    pairing_rating_threshold: float = _number(
        "PAIRING_RATING_THRESHOLD",
        _UCB.rating_threshold,
        1,
        10_000,
        "ratings closer than this count as close",
    )
    recent_comparison_limit: int = _integer(
        "RECENT_COMPARISON_LIMIT", 5, 0, 1000, "an entity's last N opponents are not offered again"
    )

    auth_enabled: bool = _flag("AUTH_ENABLED", False, "require tokens; must be true in production")
    secret_key: str | None = _setting(
        "SECRET_KEY", None, str, "text", "JWT and pair-token signing key", repr=False
    )
    access_token_expire_minutes: int = _integer(
        "ACCESS_TOKEN_EXPIRE_MINUTES", 30, 1, 60 * 24 * 30, "token lifetime in minutes"
    )
    cors_origins: tuple[str, ...] = _setting(
        "CORS_ORIGINS",
        (),
        _origins,
        "comma-separated origins like https://app.example.com",
        "origins allowed to call from a browser",
    )
    # bcrypt below 10 rounds is too cheap to slow down an offline guess; above 16
    # one login takes seconds.
    bcrypt_rounds: int = _integer("BCRYPT_ROUNDS", 12, 10, 16, "bcrypt cost")
    # bcrypt reads at most 72 bytes, so a longer minimum could never be met safely.
    password_min_length: int = _integer("PASSWORD_MIN_LENGTH", 12, 8, 64, "shortest password accepted")
    login_max_failures: int = _integer(
        "LOGIN_MAX_FAILURES", 5, 1, 1000, "login attempts per username per window before 429"
    )
    login_max_failures_per_client: int = _integer(
        "LOGIN_MAX_FAILURES_PER_CLIENT", 20, 1, 100_000, "login attempts per client per window before 429"
    )
    login_failure_window: int = _integer(
        "LOGIN_FAILURE_WINDOW", 900, 1, 86_400, "seconds the login counters last"
    )
    auth_cookie: bool = _flag("AUTH_COOKIE", False, "also put the token in an httpOnly cookie")
    # Anyone may create an ordinary account once a superuser exists (else superusers only).
    open_signup: bool = _flag("OPEN_SIGNUP", False, "anyone may sign up once a superuser exists")

    rate_limit_enabled: bool = _flag(
        "RATE_LIMIT_ENABLED", False, "limit requests; must be true in production"
    )
    rate_limit_requests: int = _integer("RATE_LIMIT_REQUESTS", 100, 1, 10_000_000, "requests per window")
    rate_limit_window: int = _integer("RATE_LIMIT_WINDOW", 60, 1, 86_400, "window in seconds")
    rate_limit_auth_requests: int = _integer(
        "RATE_LIMIT_AUTH_REQUESTS", 10, 1, 10_000_000, "login and sign-up requests per auth window"
    )
    rate_limit_auth_window: int = _integer("RATE_LIMIT_AUTH_WINDOW", 60, 1, 86_400, "auth window in seconds")
    rate_limit_fail_mode: FailMode = _choice(
        "RATE_LIMIT_FAIL_MODE", "open", FAIL_MODES, "without Redis: open serves unlimited, closed answers 503"
    )
    # Every Redis key starts with this (idempotency "idem:", login state "auth:", limiter
    # "rl:" follow it), so deployments sharing one Redis database stay apart.
    redis_key_prefix: str = _setting(
        "REDIS_KEY_PREFIX", "compere:", _key_prefix, _KEY_RULE, "start of every Redis key"
    )
    # Empty: REDIS_KEY_PREFIX + "rl:". When set, it still names the limiter's prefix on its own.
    rate_limit_key_prefix: str = _setting(
        "RATE_LIMIT_KEY_PREFIX", "", _key_prefix, _KEY_RULE, "the limiter's own Redis key prefix"
    )
    rate_limit_redis_timeout: float = _number(
        "RATE_LIMIT_REDIS_TIMEOUT", 0.25, 0.01, 10, "the limiter's Redis timeout, seconds"
    )
    # The entries as given; parsed into ``proxies`` once.
    trusted_proxies: tuple[str, ...] = _setting(
        "TRUSTED_PROXIES",
        (),
        _trusted_proxies,
        "IP addresses or CIDR networks separated by commas, or unix",
        "proxies whose X-Forwarded-For is believed",
    )

    max_body_size: int = _integer(
        "MAX_BODY_SIZE", 1024 * 1024, 1024, 1024**3, "largest accepted request body in bytes"
    )
    db_pool_min: int = _integer("DB_POOL_MIN", 1, 0, 1000, "PostgreSQL connections kept open per process")
    db_pool_max: int = _integer("DB_POOL_MAX", 10, 1, 1000, "PostgreSQL connections at most per process")
    db_pool_timeout: float = _number(
        "DB_POOL_TIMEOUT", 5.0, 0.01, 300, "seconds to wait for a free connection before 503"
    )
    db_statement_timeout_ms: int = _integer(
        "DB_STATEMENT_TIMEOUT_MS", 10_000, 0, 3_600_000, "server-side statement timeout (PostgreSQL)"
    )
    # PostgreSQL: keep the vote's statements prepared per connection. Impossible behind a
    # pooler in transaction mode, which does not keep a client on one server session:
    # DB_POOLER=pgbouncer turns it off, and refuses an explicit true.
    db_prepared_statements: bool = _flag(
        "DB_PREPARED_STATEMENTS", True, "keep the vote's statements prepared per connection"
    )
    # What DATABASE_URL (and DATABASE_REPLICA_URL) lead to. "pgbouncer": a pooler that may
    # hand every transaction another server session, so Compere keeps no session state
    # (no prepared statements, no session locks, timeouts sent with SET LOCAL).
    db_pooler: DbPooler = _choice(
        "DB_POOLER", "none", DB_POOLERS, "none (PostgreSQL itself) or pgbouncer (any pool_mode)"
    )
    # A streaming replica for reads that may be a little stale (docs/deployment.md).
    database_replica_url: str | None = _setting(
        "DATABASE_REPLICA_URL",
        None,
        _postgres_url,
        "postgresql://USER@HOST/DB",
        "a streaming replica for leaderboards, exports, entity lists and pair candidates",
    )
    replica_max_lag_seconds: float = _number(
        "REPLICA_MAX_LAG_SECONDS", 5.0, 0, 3600, "replica lag beyond which reads go to the primary"
    )
    replica_check_interval: float = _number(
        "REPLICA_CHECK_INTERVAL", 1.0, 0.05, 60, "seconds between replica lag checks per worker"
    )
    migrate_on_start: bool = _flag("MIGRATE_ON_START", True, "apply pending schema files at start-up")
    # /health/ready answers from a per-worker cache this young, so probes cannot load the database.
    ready_cache_seconds: float = _number(
        "READY_CACHE_SECONDS", 1.0, 0, 60, "seconds a worker answers /health/ready from its last check"
    )

    metrics_enabled: bool = _flag("METRICS_ENABLED", False, "serve Prometheus metrics at /metrics")
    # Who may read /metrics without a token: loopback by default.
    metrics_allowed_ips: tuple[IPNetwork, ...] = _setting(
        "METRICS_ALLOWED_IPS",
        LOOPBACK,
        _networks,
        "comma-separated addresses or CIDR blocks like 10.0.0.0/8,::1",
        "addresses that may read /metrics",
    )
    ranking_strategy: Strategy = _choice(
        "RANKING_STRATEGY", DEFAULT_STRATEGY, STRATEGIES, "the pair strategy when a request names none"
    )
    bayes_prior_sigma: float = _number(
        "BAYES_PRIOR_SIGMA", DEFAULT_PRIOR.sigma0, 0.1, 10, "prior spread of a new entity's strength"
    )
    ranking_objective: Objective = _choice(
        "RANKING_OBJECTIVE",
        "full",
        OBJECTIVES,
        "what active pairs serve: the whole order (full) or finding and ordering the best RANKING_TOP_K",
    )
    ranking_top_k: int = _integer("RANKING_TOP_K", 10, 1, 10_000, "K of the top_k objective")
    provisional_max_uncertainty: float = _number(
        "PROVISIONAL_MAX_UNCERTAINTY",
        0.75,
        0.01,
        10,
        "a board entry stays provisional while its uncertainty (logit sd) is above this",
    )
    provisional_min_votes: int = _integer(
        "PROVISIONAL_MIN_VOTES", 5, 0, 1_000_000, "a board entry stays provisional below this many votes"
    )
    trust_mode: TrustMode = _choice(
        "TRUST_MODE", "default", TRUST_MODES, "how strongly votes are weighed by their voter's record"
    )
    pair_exploration: float = _number(
        "PAIR_EXPLORATION", 0.1, 0, 1, "share of uniformly random pairs in the active strategy"
    )
    pair_token_ttl: int = _integer(
        "PAIR_TOKEN_TTL", 3600, 10, 7 * 86_400, "seconds a served pair_token stays valid"
    )
    idempotency_ttl: int = _integer(
        "IDEMPOTENCY_TTL",
        24 * 3600,
        60,
        30 * 86_400,
        "seconds a stored answer to an Idempotency-Key is replayed",
    )
    idempotency_lock_ttl: int = _integer(
        "IDEMPOTENCY_LOCK_TTL", 60, 1, 3600, "seconds a key stays locked by a request that never finished"
    )
    # Webhooks (docs/webhooks.md): outbound requests refuse private addresses unless allowed.
    webhook_allow_private: bool = _flag(
        "WEBHOOK_ALLOW_PRIVATE", False, "let webhooks reach loopback, link-local and private addresses"
    )
    webhook_timeout: float = _number("WEBHOOK_TIMEOUT", 10.0, 0.1, 120, "seconds per delivery attempt")
    webhook_poll_interval: float = _number(
        "WEBHOOK_POLL_INTERVAL", 1.0, 0.01, 60, "seconds between dispatcher rounds per worker"
    )
    webhook_retry_base: float = _number(
        "WEBHOOK_RETRY_BASE", 10.0, 0.01, 3600, "first retry delay in seconds (doubling)"
    )
    webhook_retry_max_delay: float = _number(
        "WEBHOOK_RETRY_MAX_DELAY", 3600.0, 0.01, 86_400, "longest retry delay in seconds"
    )
    webhook_retry_window: float = _number(
        "WEBHOOK_RETRY_WINDOW", 24 * 3600.0, 1, 30 * 86_400, "seconds after creation a delivery is retried"
    )
    webhook_batch_size: int = _integer("WEBHOOK_BATCH_SIZE", 100, 1, 1000, "votes per delivery at most")
    webhook_concurrency: int = _integer("WEBHOOK_CONCURRENCY", 10, 1, 1000, "deliveries in flight per worker")
    webhook_leaderboard_top_k: int = _integer(
        "WEBHOOK_LEADERBOARD_TOP_K", 10, 1, 1000, "size of the top leaderboard.changed watches"
    )
    webhook_leaderboard_interval: float = _number(
        "WEBHOOK_LEADERBOARD_INTERVAL", 10.0, 0.01, 86_400, "seconds between leaderboard checks"
    )

    # Derived once from the fields above (see __post_init__); not read from the environment.
    prior: Prior = field(init=False, repr=False, compare=False)  # a new entity's strength belief
    ucb: UCBParams = field(init=False, repr=False, compare=False)  # the original's pairing parameters
    rate_limit: RateLimitPolicy = field(init=False, repr=False, compare=False)  # "default"
    auth_rate_limit: RateLimitPolicy = field(init=False, repr=False, compare=False)  # login, sign-up
    proxies: TrustedProxies = field(init=False, repr=False, compare=False)  # TRUSTED_PROXIES parsed
    trust: TrustPolicy = field(init=False, repr=False, compare=False)  # TRUST_MODE's parameters

    def __post_init__(self) -> None:
        derived = {
            # Unset, the limiter's prefix follows REDIS_KEY_PREFIX.
            "rate_limit_key_prefix": self.rate_limit_key_prefix or f"{self.redis_key_prefix}rl:",
            "prior": DEFAULT_PRIOR._replace(sigma0=self.bayes_prior_sigma),
            "ucb": UCBParams(
                exploration=self.ucb_exploration_constant,
                unexplored_weight=self.ucb_unexplored_weight,
                ucb_weight=self.pairing_ucb_weight,
                similarity_weight=self.pairing_similarity_weight,
                random_weight=self.pairing_random_weight,
                rating_threshold=self.pairing_rating_threshold,
            ),
            "rate_limit": RateLimitPolicy("default", self.rate_limit_requests, self.rate_limit_window),
            "auth_rate_limit": RateLimitPolicy(
                "auth", self.rate_limit_auth_requests, self.rate_limit_auth_window
            ),
            "proxies": parse_trusted_proxies(self.trusted_proxies),
            "trust": POLICIES[self.trust_mode],
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Build the settings from ``environ`` (default ``os.environ``) over a ``.env`` file.

    Real environment variables win over the file; an unset or blank variable keeps the
    declared default. Raises :class:`SettingsError`.
    """
    base = read_dotenv(dotenv if dotenv is not None else Path(".env"))
    env: dict[str, str] = {**base, **(os.environ if environ is None else environ)}
    values: dict[str, Any] = {}
    for setting in fields(Settings):
        variable: Variable | None = setting.metadata.get(_VARIABLE)
        raw = env.get(variable.name) if variable is not None else None
        if variable is None or raw is None or raw.strip() == "":
            continue
        try:
            values[setting.name] = variable.parse(raw.strip())
        except (ValueError, TypeError):
            raise SettingsError(f"{variable.name}={raw!r} is invalid: expected {variable.expected}") from None
    if values.get("db_pooler") == "pgbouncer":
        if values.get("db_prepared_statements"):
            raise SettingsError(
                "DB_PREPARED_STATEMENTS=true cannot work with DB_POOLER=pgbouncer (a transaction "
                "pooler keeps no prepared statement from one transaction to the next): leave it unset"
            )
        values["db_prepared_statements"] = False
    settings = Settings(**values)
    if settings.database_replica_url and settings.uses_sqlite:
        raise SettingsError("DATABASE_REPLICA_URL needs a PostgreSQL DATABASE_URL")
    if settings.db_pool_min > settings.db_pool_max:
        raise SettingsError("DB_POOL_MIN must not exceed DB_POOL_MAX")
    if settings.idempotency_lock_ttl > settings.idempotency_ttl:
        raise SettingsError("IDEMPOTENCY_LOCK_TTL must not exceed IDEMPOTENCY_TTL")
    if not settings.is_production:  # production reports these with its other problems below
        if settings.auth_enabled and not settings.secret_key:
            raise SettingsError("SECRET_KEY must be set when AUTH_ENABLED is true")
        if settings.secret_key and len(settings.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters")
    problems = _production_problems(settings) if settings.is_production else []
    if problems:
        raise SettingsError("\n".join(problems))
    return settings


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value`` lines, ``#`` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise SettingsError(f"{path.name} line {number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _production_problems(s: Settings) -> list[str]:
    """Every unsafe production setting, one short sentence each."""
    problems = []
    if not s.secret_key or len(s.secret_key) < MIN_SECRET_KEY_LENGTH:
        problems.append(
            f"SECRET_KEY must be set to at least {MIN_SECRET_KEY_LENGTH} characters in production"
        )
    elif any(example.lower() in s.secret_key.lower() for example in PUBLISHED_EXAMPLE_KEYS):
        problems.append("SECRET_KEY is a published example; generate your own for production")
    elif estimated_key_bits(s.secret_key) < MIN_SECRET_KEY_BITS:
        problems.append(
            "SECRET_KEY is too predictable (repeated or sequential characters); generate one with "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    if not s.auth_enabled:
        problems.append("AUTH_ENABLED must be true in production")
    if not s.cors_origins or "*" in s.cors_origins:
        problems.append("CORS_ORIGINS must list explicit origins (no *) in production")
    if s.uses_sqlite:
        problems.append("DATABASE_URL must be PostgreSQL in production, not SQLite")
    if not s.rate_limit_enabled:
        problems.append("RATE_LIMIT_ENABLED must be true in production")
    if not s.redis_url:
        problems.append("REDIS_URL must be set in production (rate limits are shared through it)")
    return problems


def estimated_key_bits(key: str) -> float:
    """A rough estimate of the randomness in ``key``, in bits; 0 for a repeated pattern.

    The Shannon entropy of its characters, or of the steps between neighbouring
    characters when that is lower (``abcdef...`` has many letters but one step), times
    its length. Random keys score close to their real strength; what this catches is a
    key a person typed: one letter, a short pattern repeated, a run of the alphabet.
    """
    if len(key) < 2 or key in (key + key)[1:-1]:  # made of one shorter piece repeated
        return 0.0
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(key)]
    return min(_shannon_bits(key), _shannon_bits(steps)) * len(key)


def _shannon_bits(items: Sequence[object]) -> float:
    counts = Counter(items)
    return -sum(n / len(items) * math.log2(n / len(items)) for n in counts.values())


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0] + ":***"
    return parts._replace(netloc=f"{userinfo}@{netloc[1]}").geturl()


def load_settings_or_report() -> Settings | None:
    """The settings, or None after printing each configuration problem on its own line.

    Shared by the command line and gunicorn.conf.py, so both refuse a bad configuration
    the same way, once, before anything listens.
    """
    try:
        return load_settings()
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"compere: configuration error: {line}", file=sys.stderr)
        return None
