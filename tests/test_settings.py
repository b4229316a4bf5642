"""Settings: parsing, one clear line per bad value, production refusals, .env files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from compere.client.aio import Strategy as ClientStrategy
from compere.domain.bayes import DEFAULT_PRIOR, Prior
from compere.domain.selection import STRATEGIES, Candidate
from compere.http.schemas import PairQuery
from compere.infra.ratelimit import RateLimitPolicy
from compere.settings import Settings, SettingsError, load_settings, redact_url, variable_of, variables

NO_DOTENV = Path("/nonexistent/.env")
SAFE_PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "pW4x-Lq9_Zr2mT7vKc1nB8sHy3dFj6Ga",  # random, for these tests only
    "AUTH_ENABLED": "true",
    "CORS_ORIGINS": "https://app.example.com,https://admin.example.com",
    "DATABASE_URL": "postgresql://compere@db.internal/compere",
    "RATE_LIMIT_ENABLED": "true",
    "REDIS_URL": "redis://cache.internal:6379/0",
}


def test_defaults_match_the_spec():
    s = load_settings({}, dotenv=NO_DOTENV)
    assert s.database_url == "sqlite:///./compere.db"
    assert (s.elo_k_factor, s.elo_initial_rating) == (32.0, 1500.0)
    assert (s.ucb_exploration_constant, s.recent_comparison_limit) == (1.414, 5)
    assert (s.pairing_ucb_weight, s.pairing_similarity_weight, s.pairing_random_weight) == (0.3, 0.4, 0.3)
    assert s.pairing_rating_threshold == 200.0
    assert (s.access_token_expire_minutes, s.rate_limit_requests, s.rate_limit_window) == (30, 100, 60)
    assert s.environment == "development" and not s.auth_enabled and s.log_requests
    assert (s.bcrypt_rounds, s.password_min_length) == (12, 12)
    assert (s.login_max_failures, s.login_max_failures_per_client, s.login_failure_window) == (5, 20, 900)
    assert not s.auth_cookie


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ELO_K_FACTOR", "fast"),
        ("ELO_K_FACTOR", "-3"),
        ("ELO_K_FACTOR", "nan"),
        ("ENVIRONMENT", "prod"),
        ("LOG_LEVEL", "loud"),
        ("AUTH_ENABLED", "maybe"),
        ("RATE_LIMIT_REQUESTS", "0"),
        ("RATE_LIMIT_WINDOW", "1.5"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "-1"),
        ("DATABASE_URL", "mysql://x/y"),
        ("DATABASE_URL", "sqlite:///"),
        ("REDIS_URL", "http://cache"),
        ("CORS_ORIGINS", "not an origin"),
        ("PAIRING_UCB_WEIGHT", "2"),
        ("RECENT_COMPARISON_LIMIT", "five"),
        ("BCRYPT_ROUNDS", "9"),
        ("BCRYPT_ROUNDS", "4"),
        ("BCRYPT_ROUNDS", "17"),
        ("PASSWORD_MIN_LENGTH", "4"),
        ("PASSWORD_MIN_LENGTH", "80"),
        ("LOGIN_MAX_FAILURES", "0"),
        ("LOGIN_MAX_FAILURES_PER_CLIENT", "0"),
        ("LOGIN_FAILURE_WINDOW", "0"),
        ("AUTH_COOKIE", "sometimes"),
        ("SECRET_KEY", "too-short"),
    ],
)
def test_a_bad_value_names_the_variable(name, value):
    with pytest.raises(SettingsError) as err:
        load_settings({name: value}, dotenv=NO_DOTENV)
    message = str(err.value)
    assert name in message and "\n" not in message


def test_safe_production_settings_load():
    s = load_settings(SAFE_PRODUCTION, dotenv=NO_DOTENV)
    assert s.is_production and s.cors_origins == ("https://app.example.com", "https://admin.example.com")


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"AUTH_ENABLED": "false"}, "AUTH_ENABLED"),
        ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
        ({"CORS_ORIGINS": ""}, "CORS_ORIGINS"),
        ({"DATABASE_URL": "sqlite:///./compere.db"}, "DATABASE_URL"),
        ({"RATE_LIMIT_ENABLED": "false"}, "RATE_LIMIT_ENABLED"),
        ({"REDIS_URL": ""}, "REDIS_URL"),
    ],
)
def test_production_refuses_unsafe_settings(change, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings({**SAFE_PRODUCTION, **change}, dotenv=NO_DOTENV)


def test_auth_needs_a_secret_key_in_every_environment():
    with pytest.raises(SettingsError, match="SECRET_KEY") as err:
        load_settings({"AUTH_ENABLED": "true"}, dotenv=NO_DOTENV)
    assert "\n" not in str(err.value)
    s = load_settings({"AUTH_ENABLED": "true", "SECRET_KEY": "d" * 32}, dotenv=NO_DOTENV)
    assert s.auth_enabled and s.secret_key == "d" * 32
    assert "d" * 32 not in repr(s)  # the key never shows in a settings dump


@pytest.mark.parametrize("example", ["xK8vJ2mN7pQ9rS3tW6yZ1aB4cD5eF8gH", "your-very-long-secure-secret-key"])
def test_production_refuses_the_published_example_keys(example):
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings({**SAFE_PRODUCTION, "SECRET_KEY": example}, dotenv=NO_DOTENV)


@pytest.mark.parametrize(
    "key",
    [
        "k" * 32,  # long enough, and one letter
        "ab" * 20,
        "password" * 4,
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "XK8VJ2MN7PQ9RS3TW6YZ1AB4CD5EF8GH",  # the published example in capitals
        "xK8vJ2mN7pQ9rS3tW6yZ1aB4cD5eF8gH!",  # ...with one character added
        "prod-your-very-long-secure-secret-key",
    ],
)
def test_production_refuses_a_predictable_or_published_secret_key(key):
    with pytest.raises(SettingsError, match="SECRET_KEY") as err:
        load_settings({**SAFE_PRODUCTION, "SECRET_KEY": key}, dotenv=NO_DOTENV)
    assert key not in str(err.value)


def test_production_accepts_keys_from_the_usual_generators():
    import secrets

    for _ in range(200):
        for key in (secrets.token_hex(16), secrets.token_urlsafe(32), secrets.token_urlsafe(24)):
            assert load_settings({**SAFE_PRODUCTION, "SECRET_KEY": key}, dotenv=NO_DOTENV).secret_key == key


def test_production_lists_every_problem_one_per_line():
    with pytest.raises(SettingsError) as err:
        load_settings({"ENVIRONMENT": "production"}, dotenv=NO_DOTENV)
    lines = str(err.value).splitlines()
    assert len(lines) == 6
    for variable in (
        "SECRET_KEY",
        "AUTH_ENABLED",
        "CORS_ORIGINS",
        "DATABASE_URL",
        "RATE_LIMIT_ENABLED",
        "REDIS_URL",
    ):
        assert sum(variable in line for line in lines) == 1


def test_dotenv_is_read_and_the_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        '# comment\nELO_K_FACTOR=16\nexport LOG_LEVEL="debug"\nCORS_ORIGINS=http://localhost:3000 # dev\n'
    )
    s = load_settings({"ELO_K_FACTOR": "24"}, dotenv=dotenv)
    assert s.elo_k_factor == 24.0
    assert s.log_level == "DEBUG"
    assert s.cors_origins == ("http://localhost:3000",)


def test_redact_url_hides_the_password():
    assert redact_url("postgresql://app:s3cret@db/compere") == "postgresql://app:***@db/compere"
    assert redact_url("postgresql://app@db/compere") == "postgresql://app@db/compere"


def test_the_cli_stops_with_one_line_naming_the_variable(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "compere", "migrate"],
        env={"ELO_K_FACTOR": "fast", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "compere: configuration error: ELO_K_FACTOR='fast' is invalid: expected a number from 0.1 to 400"
    ]


def test_the_cli_refuses_unsafe_production_without_showing_the_database_password(tmp_path):
    env = {
        "ENVIRONMENT": "production",
        "DATABASE_URL": "postgresql://compere:Hunter2-Db-Secret@db.internal/compere",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "compere", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("compere: configuration error: ") for line in lines)
    assert "Hunter2-Db-Secret" not in result.stderr + result.stdout


def test_the_cli_migrates_a_fresh_sqlite_database(tmp_path):
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }
    first = subprocess.run(
        [sys.executable, "-m", "compere", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0, first.stderr
    assert "0001_entities_comparisons.sql" in first.stdout
    again = subprocess.run(
        [sys.executable, "-m", "compere", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "up to date" in again.stdout


# --- one declaration per setting -------------------------------------------------------


def test_every_setting_is_declared_once_with_its_variable_check_and_meaning():
    read = [f for f in dataclasses.fields(Settings) if f.init]
    assert [v.name for v in variables()] == [f.name.upper() for f in read]
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    for setting in read:
        variable = variable_of(setting.name)
        assert variable.doc and variable.expected, variable.name
        assert f"`{variable.name}`" in readme, f"{variable.name} is missing from the README's table"
        # A blank variable gives what a Settings made without it has: the declared default.
        blank = load_settings({variable.name: " "}, dotenv=NO_DOTENV)
        assert getattr(blank, setting.name) == getattr(Settings(), setting.name), variable.name


def test_the_prior_spread_and_the_strategies_have_one_source():
    assert Settings().bayes_prior_sigma == DEFAULT_PRIOR.sigma0 == Candidate(1).sigma
    assert Settings().ranking_strategy == STRATEGIES[0]
    assert variable_of("ranking_strategy").expected == "one of " + ", ".join(STRATEGIES)
    assert get_args(ClientStrategy) == STRATEGIES
    assert get_args(PairQuery.model_fields["strategy"].annotation) == (ClientStrategy, type(None))


def test_derived_objects_are_built_once_when_the_settings_load():
    s = load_settings(
        {
            "BAYES_PRIOR_SIGMA": "2.5",
            "UCB_EXPLORATION_CONSTANT": "2",
            "PAIRING_RATING_THRESHOLD": "50",
            "RATE_LIMIT_REQUESTS": "7",
            "RATE_LIMIT_AUTH_WINDOW": "300",
            "TRUSTED_PROXIES": "10.0.0.0/8 unix",
        },
        dotenv=NO_DOTENV,
    )
    assert s.prior == Prior(0.0, 2.5) and s.prior is s.prior
    assert (s.ucb.exploration, s.ucb.rating_threshold, s.ucb.ucb_weight) == (2.0, 50.0, 0.3)
    assert s.rate_limit == RateLimitPolicy("default", 7, 60)
    assert s.auth_rate_limit == RateLimitPolicy("auth", 10, 300)
    assert s.proxies.unix and [str(n) for n in s.proxies.networks] == ["10.0.0.0/8"]
    # Made directly (as tests do), a Settings derives the same way; copies re-derive.
    assert Settings(bayes_prior_sigma=0.5).prior == Prior(0.0, 0.5)
    assert dataclasses.replace(s, bayes_prior_sigma=1.0).prior == Prior(0.0, 1.0)
    # Derived values never show in a settings dump and do not count in equality.
    assert "Prior(" not in repr(s) and s == dataclasses.replace(s)


def test_loading_settings_imports_no_metrics_registry():
    # gunicorn's master loads the settings before PROMETHEUS_MULTIPROC_DIR is chosen;
    # prometheus_client fixes its storage when imported, so the master must not import it.
    code = "import sys, compere.settings; print('prometheus_client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
