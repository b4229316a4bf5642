"""One settings object, built once at start-up from the environment and a ``.env`` file.

Every variable is parsed and checked here; a bad value raises :class:`SettingsError`
with one line that names the variable and what is allowed, and the CLI prints that
line and exits. Production refuses unsafe combinations (see ``_production_problems``).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

ENVIRONMENTS = ("development", "staging", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PAIR_STRATEGIES = ("active", "ucb", "random")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))

# HS256 wants a key at least as long as its 32-byte output (RFC 7518 section 3.2).
MIN_SECRET_KEY_LENGTH = 32
# Keys printed in the security policy and the docs as examples: anyone can sign with them.
PUBLISHED_EXAMPLE_KEYS = frozenset({"xK8vJ2mN7pQ9rS3tW6yZ1aB4cD5eF8gH", "your-very-long-secure-secret-key"})
# Estimated bits a production key must carry. secrets.token_hex(16) (128 random bits, the
# least of the usual recipes) scores 94 or more; one letter repeated scores 0.
MIN_SECRET_KEY_BITS = 80


class SettingsError(ValueError):
    """A configuration value is missing, malformed or unsafe; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite:///./compere.db"
    redis_url: str | None = None
    environment: str = "development"
    log_level: str = "INFO"
    log_requests: bool = True
    log_format: str = "text"

    elo_k_factor: float = 32.0
    elo_initial_rating: float = 1500.0
    ucb_exploration_constant: float = 1.414
    ucb_unexplored_weight: float = 1000.0
    pairing_ucb_weight: float = 0.3
    pairing_similarity_weight: float = 0.4
    pairing_random_weight: float = 0.3
    pairing_rating_threshold: float = 200.0
    recent_comparison_limit: int = 5

    auth_enabled: bool = False
    secret_key: str | None = field(default=None, repr=False)
    access_token_expire_minutes: int = 30
    cors_origins: tuple[str, ...] = ()
    bcrypt_rounds: int = 12
    password_min_length: int = 12
    login_max_failures: int = 5
    login_max_failures_per_client: int = 20
    login_failure_window: int = 900
    auth_cookie: bool = False
    # Anyone may create an ordinary account once a superuser exists (else superusers only).
    open_signup: bool = False

    rate_limit_enabled: bool = False
    rate_limit_requests: int = 100
    rate_limit_window: int = 60
    rate_limit_auth_requests: int = 10
    rate_limit_auth_window: int = 60
    rate_limit_fail_mode: str = "open"
    # Every Redis key starts with this (idempotency "idem:", login state "auth:", limiter
    # "rl:" follow it), so deployments sharing one Redis database stay apart.
    redis_key_prefix: str = "compere:"
    rate_limit_key_prefix: str = "compere:rl:"
    rate_limit_redis_timeout: float = 0.25
    trusted_proxies: tuple[str, ...] = ()

    max_body_size: int = 1024 * 1024
    db_pool_min: int = 1
    db_pool_max: int = 10
    db_pool_timeout: float = 5.0
    db_statement_timeout_ms: int = 10_000
    # PostgreSQL: keep the vote's statements prepared per connection (off behind a
    # pooler in transaction mode, which does not keep a client on one server session).
    db_prepared_statements: bool = True
    migrate_on_start: bool = True
    # /health/ready answers from a per-worker cache this young, so probes cannot load the database.
    ready_cache_seconds: float = 1.0

    idempotency_ttl: int = 24 * 3600
    idempotency_lock_ttl: int = 60
    metrics_enabled: bool = False
    # Who may read /metrics without a token: loopback by default.
    metrics_allowed_ips: tuple[IPNetwork, ...] = LOOPBACK
    ranking_strategy: str = "active"
    bayes_prior_sigma: float = 1.5
    pair_exploration: float = 0.1
    pair_token_ttl: int = 3600
    # Webhooks (docs/webhooks.md): outbound requests refuse private addresses unless allowed.
    webhook_allow_private: bool = False
    webhook_timeout: float = 10.0
    webhook_poll_interval: float = 1.0
    webhook_retry_base: float = 10.0
    webhook_retry_max_delay: float = 3600.0
    webhook_retry_window: float = 24 * 3600.0
    webhook_batch_size: int = 100
    webhook_concurrency: int = 10
    webhook_leaderboard_top_k: int = 10
    webhook_leaderboard_interval: float = 10.0

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")


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


class _Reader:
    """Reads typed values from a mapping, naming the variable in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def _get(self, name: str, default: T, parse: Callable[[str], T], allowed: str) -> T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, TypeError):
            raise SettingsError(f"{name}={raw!r} is invalid: expected {allowed}") from None

    def text(self, name: str, default: str) -> str:
        return self._get(name, default, str, "text")

    def optional(self, name: str) -> str | None:
        raw = self.env.get(name, "").strip()
        return raw or None

    def boolean(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)

        return self._get(name, default, parse, "true or false")

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not low <= value <= high:  # also rejects nan
                raise ValueError(raw)
            return value

        return self._get(name, default, parse, f"a number from {low:g} to {high:g}")

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if not low <= value <= high:
                raise ValueError(raw)
            return value

        return self._get(name, default, parse, f"an integer from {low} to {high}")

    def choice(self, name: str, default: str, options: tuple[str, ...], *, upper: bool = False) -> str:
        def parse(raw: str) -> str:
            value = raw.upper() if upper else raw.lower()
            if value not in options:
                raise ValueError(raw)
            return value

        return self._get(name, default, parse, "one of " + ", ".join(options))


def _database_url(value: str) -> str:
    if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return value
    parts = urlsplit(value)
    if parts.scheme in ("postgresql", "postgres") and parts.path.strip("/"):
        return value
    raise ValueError(value)


def _redis_url(value: str) -> str:
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(value)
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
    for item in items:
        if item.lower() != "unix":
            ipaddress.ip_network(item, strict=True)  # ValueError for a host name or stray bits
    return items


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Build the settings from ``environ`` (default ``os.environ``) over a ``.env`` file.

    Real environment variables win over the file. Raises :class:`SettingsError`.
    """
    base = read_dotenv(dotenv if dotenv is not None else Path(".env"))
    env: dict[str, str] = {**base, **(os.environ if environ is None else environ)}
    r = _Reader(env)
    key_rule = "up to 64 printable characters, no spaces"
    redis_key_prefix = r._get("REDIS_KEY_PREFIX", "compere:", _key_prefix, key_rule)

    def database(name: str) -> str:
        return r._get(
            name,
            "sqlite:///./compere.db",
            _database_url,
            "sqlite:///PATH or postgresql://USER@HOST/DB",
        )

    settings = Settings(
        database_url=database("DATABASE_URL"),
        redis_url=r._get("REDIS_URL", None, _redis_url, "redis://HOST:PORT/DB"),
        environment=r.choice("ENVIRONMENT", "development", ENVIRONMENTS),
        log_level=r.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
        log_requests=r.boolean("LOG_REQUESTS", True),
        log_format=r.choice("LOG_FORMAT", "text", ("text", "json")),
        elo_k_factor=r.number("ELO_K_FACTOR", 32.0, low=0.1, high=400),
        elo_initial_rating=r.number("ELO_INITIAL_RATING", 1500.0, low=0, high=100_000),
        ucb_exploration_constant=r.number("UCB_EXPLORATION_CONSTANT", 1.414, low=0, high=100),
        ucb_unexplored_weight=r.number("UCB_UNEXPLORED_WEIGHT", 1000.0, low=0, high=1e9),
        pairing_ucb_weight=r.number("PAIRING_UCB_WEIGHT", 0.3, low=0, high=1),
        pairing_similarity_weight=r.number("PAIRING_SIMILARITY_WEIGHT", 0.4, low=0, high=1),
        pairing_random_weight=r.number("PAIRING_RANDOM_WEIGHT", 0.3, low=0, high=1),
        pairing_rating_threshold=r.number("PAIRING_RATING_THRESHOLD", 200.0, low=1, high=10_000),
        recent_comparison_limit=r.integer("RECENT_COMPARISON_LIMIT", 5, low=0, high=1000),
        auth_enabled=r.boolean("AUTH_ENABLED", False),
        secret_key=r.optional("SECRET_KEY"),
        access_token_expire_minutes=r.integer("ACCESS_TOKEN_EXPIRE_MINUTES", 30, low=1, high=60 * 24 * 30),
        cors_origins=r._get(
            "CORS_ORIGINS",
            (),
            _origins,
            "comma-separated origins like https://app.example.com",
        ),
        # bcrypt below 10 rounds is too cheap to slow down an offline guess; above 16
        # one login takes seconds.
        bcrypt_rounds=r.integer("BCRYPT_ROUNDS", 12, low=10, high=16),
        # bcrypt reads at most 72 bytes, so a longer minimum could never be met safely.
        password_min_length=r.integer("PASSWORD_MIN_LENGTH", 12, low=8, high=64),
        login_max_failures=r.integer("LOGIN_MAX_FAILURES", 5, low=1, high=1000),
        login_max_failures_per_client=r.integer("LOGIN_MAX_FAILURES_PER_CLIENT", 20, low=1, high=100_000),
        login_failure_window=r.integer("LOGIN_FAILURE_WINDOW", 900, low=1, high=86_400),
        auth_cookie=r.boolean("AUTH_COOKIE", False),
        open_signup=r.boolean("OPEN_SIGNUP", False),
        rate_limit_enabled=r.boolean("RATE_LIMIT_ENABLED", False),
        rate_limit_requests=r.integer("RATE_LIMIT_REQUESTS", 100, low=1, high=10_000_000),
        rate_limit_window=r.integer("RATE_LIMIT_WINDOW", 60, low=1, high=86_400),
        rate_limit_auth_requests=r.integer("RATE_LIMIT_AUTH_REQUESTS", 10, low=1, high=10_000_000),
        rate_limit_auth_window=r.integer("RATE_LIMIT_AUTH_WINDOW", 60, low=1, high=86_400),
        rate_limit_fail_mode=r.choice("RATE_LIMIT_FAIL_MODE", "open", ("open", "closed")),
        redis_key_prefix=redis_key_prefix,
        # RATE_LIMIT_KEY_PREFIX, when set, still names the limiter's prefix on its own.
        rate_limit_key_prefix=r._get(
            "RATE_LIMIT_KEY_PREFIX", f"{redis_key_prefix}rl:", _key_prefix, key_rule
        ),
        rate_limit_redis_timeout=r.number("RATE_LIMIT_REDIS_TIMEOUT", 0.25, low=0.01, high=10),
        trusted_proxies=r._get(
            "TRUSTED_PROXIES",
            (),
            _trusted_proxies,
            "IP addresses or CIDR networks separated by commas, or unix",
        ),
        max_body_size=r.integer("MAX_BODY_SIZE", 1024 * 1024, low=1024, high=1024**3),
        db_pool_min=r.integer("DB_POOL_MIN", 1, low=0, high=1000),
        db_pool_max=r.integer("DB_POOL_MAX", 10, low=1, high=1000),
        db_pool_timeout=r.number("DB_POOL_TIMEOUT", 5.0, low=0.01, high=300),
        db_statement_timeout_ms=r.integer("DB_STATEMENT_TIMEOUT_MS", 10_000, low=0, high=3_600_000),
        db_prepared_statements=r.boolean("DB_PREPARED_STATEMENTS", True),
        migrate_on_start=r.boolean("MIGRATE_ON_START", True),
        ready_cache_seconds=r.number("READY_CACHE_SECONDS", 1.0, low=0, high=60),
        metrics_enabled=r.boolean("METRICS_ENABLED", False),
        metrics_allowed_ips=r._get(
            "METRICS_ALLOWED_IPS",
            LOOPBACK,
            _networks,
            "comma-separated addresses or CIDR blocks like 10.0.0.0/8,::1",
        ),
        ranking_strategy=r.choice("RANKING_STRATEGY", "active", PAIR_STRATEGIES),
        bayes_prior_sigma=r.number("BAYES_PRIOR_SIGMA", 1.5, low=0.1, high=10),
        pair_exploration=r.number("PAIR_EXPLORATION", 0.1, low=0, high=1),
        pair_token_ttl=r.integer("PAIR_TOKEN_TTL", 3600, low=10, high=7 * 86_400),
        idempotency_ttl=r.integer("IDEMPOTENCY_TTL", 24 * 3600, low=60, high=30 * 86_400),
        idempotency_lock_ttl=r.integer("IDEMPOTENCY_LOCK_TTL", 60, low=1, high=3600),
        webhook_allow_private=r.boolean("WEBHOOK_ALLOW_PRIVATE", False),
        webhook_timeout=r.number("WEBHOOK_TIMEOUT", 10.0, low=0.1, high=120),
        webhook_poll_interval=r.number("WEBHOOK_POLL_INTERVAL", 1.0, low=0.01, high=60),
        webhook_retry_base=r.number("WEBHOOK_RETRY_BASE", 10.0, low=0.01, high=3600),
        webhook_retry_max_delay=r.number("WEBHOOK_RETRY_MAX_DELAY", 3600.0, low=0.01, high=86_400),
        webhook_retry_window=r.number("WEBHOOK_RETRY_WINDOW", 24 * 3600.0, low=1, high=30 * 86_400),
        webhook_batch_size=r.integer("WEBHOOK_BATCH_SIZE", 100, low=1, high=1000),
        webhook_concurrency=r.integer("WEBHOOK_CONCURRENCY", 10, low=1, high=1000),
        webhook_leaderboard_top_k=r.integer("WEBHOOK_LEADERBOARD_TOP_K", 10, low=1, high=1000),
        webhook_leaderboard_interval=r.number("WEBHOOK_LEADERBOARD_INTERVAL", 10.0, low=0.01, high=86_400),
    )
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
