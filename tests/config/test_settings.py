"""Settings come from the environment; each pool mode yields the DATABASES entry it promises;
malformed values stop startup naming the variable."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.db.connection import PoolSettings, build_database
from tests.conftest import run_python

URL = "postgresql://app:secret@db.internal:6432/agents"


def test_pool_mode_uses_djangos_psycopg_pool_with_the_seed_sizes():
    db = build_database(
        URL, PoolSettings(mode="pool", pool_size=5, max_overflow=10, pool_timeout=30, pool_recycle=3600)
    )

    # Django's PostgreSQL backend, riding out outages (config.db.backend subclasses it).
    assert db["ENGINE"] == "config.db.backend"
    assert (db["NAME"], db["USER"], db["HOST"], db["PORT"]) == ("agents", "app", "db.internal", 6432)
    assert db["OPTIONS"]["pool"] == {
        "min_size": 5,
        "max_size": 15,
        "timeout": 30,
        "max_lifetime": 3600.0,
        "name": "default",
        "num_workers": 15,
    }
    # A query sent into a host that drops packets fails after DB_OUTAGE_TIMEOUT (1.5 s).
    assert db["OPTIONS"]["tcp_user_timeout"] == 1500 and db["OPTIONS"]["keepalives"] == 1
    assert db["CONN_MAX_AGE"] == 0  # Django refuses a persistent age with its pool
    assert db["CONN_HEALTH_CHECKS"] is True
    assert "statement_timeout=30000" in db["OPTIONS"]["options"]


def test_persistent_mode_keeps_connections_for_conn_max_age():
    db = build_database(URL, PoolSettings(mode="persistent", pool_recycle=1800))
    assert "pool" not in db["OPTIONS"]
    assert db["CONN_MAX_AGE"] == 1800
    assert db["CONN_HEALTH_CHECKS"] is True

    db = build_database(URL, PoolSettings(mode="persistent", conn_max_age=60))
    assert db["CONN_MAX_AGE"] == 60


def test_pgbouncer_mode_avoids_session_state():
    db = build_database(URL, PoolSettings(mode="pgbouncer", conn_max_age=300))
    assert "pool" not in db["OPTIONS"]
    assert db["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert db["OPTIONS"]["prepare_threshold"] is None
    # PgBouncer refuses startup options; the timeout comes from the role default instead.
    assert "options" not in db["OPTIONS"]
    assert db["CONN_MAX_AGE"] == 300


def test_none_mode_opens_a_connection_per_request():
    db = build_database(URL, PoolSettings(mode="none"))
    assert "pool" not in db["OPTIONS"]
    assert db["CONN_MAX_AGE"] == 0


def test_unix_socket_urls_put_the_directory_in_host():
    db = build_database("postgresql://postgres@/agents?host=/tmp/pg", PoolSettings())
    assert db["HOST"] == "/tmp/pg"
    assert "host" not in db["OPTIONS"]


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"mode": "magic"}, "DB_POOL_MODE"),
        ({"pool_size": 0}, "DB_POOL_SIZE"),
        ({"max_overflow": -1}, "DB_MAX_OVERFLOW"),
        ({"pool_timeout": 0}, "DB_POOL_TIMEOUT"),
    ],
)
def test_pool_settings_refuse_impossible_values(settings, variable):
    with pytest.raises(ImproperlyConfigured, match=variable):
        PoolSettings(**settings)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DB_POOL_SIZE": "abc"}, "DB_POOL_SIZE"),
        ({"DB_MAX_OVERFLOW": "-3"}, "DB_MAX_OVERFLOW"),
        ({"DB_POOL_TIMEOUT": "soon"}, "DB_POOL_TIMEOUT"),
        ({"DB_POOL_RECYCLE": "1.5h"}, "DB_POOL_RECYCLE"),
        ({"DB_POOL_MODE": "turbo"}, "DB_POOL_MODE"),
        ({"DB_ECHO_SQL": "maybe"}, "DB_ECHO_SQL"),
        ({"DEBUG": "perhaps"}, "DEBUG"),
        ({"RATE_LIMIT_FREE": "lots"}, "RATE_LIMIT_FREE"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"SECRET_KEY": "", "DEBUG": "false"}, "SECRET_KEY"),
    ],
)
def test_malformed_environment_stops_startup_naming_the_variable(env, variable):
    result = run_python("import django; django.setup()", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1]


def test_echo_sql_logs_statements_without_secrets():
    code = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        'with connection.cursor() as c: c.execute("SELECT %s", [\'' + "a" * 64 + "'])\n"
    )
    result = run_python(code, env={"DB_ECHO_SQL": "true", "LOG_FORMAT": "text"})
    assert result.returncode == 0, result.stderr
    assert "SELECT" in result.stderr
    assert "a" * 64 not in result.stderr
    assert "[REDACTED]" in result.stderr


def test_deploy_check_passes_with_production_settings():
    result = run_python(
        "import sys, django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('check', '--deploy', '--fail-level', 'WARNING')\n",
        env={
            "DEBUG": "false",
            "SECRET_KEY": "a-long-random-production-secret-key-0123456789-ABCDEFGHIJKLMNOP",
            "SECURE_SSL_REDIRECT": "true",
            "ALLOWED_HOSTS": "api.example.com",
        },
    )
    assert result.returncode == 0, result.stderr


# --- identity providers (config/identity_providers.py) ---------------------------------------

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
APP = "6731de76-14a6-49ae-97bc-6eba6914391e"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AZURE_AD_CLIENT_ID": APP}, "AZURE_AD_TENANT_ID"),
        ({"AZURE_AD_TENANT_ID": TENANT}, "AZURE_AD_CLIENT_ID"),
        ({"AZURE_AD_CLIENT_SECRET": "s"}, "AZURE_AD_TENANT_ID"),
        ({"AZURE_AD_TENANT_ID": "contoso", "AZURE_AD_CLIENT_ID": APP}, "AZURE_AD_TENANT_ID"),
        ({"AZURE_AD_TENANT_ID": TENANT, "AZURE_AD_CLIENT_ID": "my app"}, "AZURE_AD_CLIENT_ID"),
        (
            {"AZURE_AD_TENANT_ID": TENANT, "AZURE_AD_CLIENT_ID": APP, "AZURE_AD_ISSUER": "http://idp.example"},
            "AZURE_AD_ISSUER",
        ),
        ({"COGNITO_REGION": "eu-west-1", "COGNITO_USER_POOL_ID": "eu-west-1_Abc"}, "COGNITO_CLIENT_ID"),
        ({"COGNITO_CLIENT_ID": "abc123"}, "COGNITO_REGION"),
        ({"COGNITO_CLIENT_ID": "abc123", "COGNITO_REGION": "eu-west-1"}, "COGNITO_USER_POOL_ID"),
        ({"COGNITO_CLIENT_ID": "abc", "COGNITO_REGION": "Ireland", "COGNITO_USER_POOL_ID": "x_1"}, "COGNITO_REGION"),
        (
            {"COGNITO_CLIENT_ID": "abc", "COGNITO_REGION": "eu-west-1", "COGNITO_USER_POOL_ID": "us-east-1_Abc"},
            "COGNITO_USER_POOL_ID",
        ),
        ({"COGNITO_CLIENT_ID": "abc", "COGNITO_ISSUER": "ftp://cognito.example/pool"}, "COGNITO_ISSUER"),
        ({"OIDC_CLIENT_ID": "agent-platform"}, "OIDC_ISSUER"),
        ({"OIDC_ISSUER": "https://sso.example"}, "OIDC_CLIENT_ID"),
        ({"OIDC_ISSUER": "sso.example", "OIDC_CLIENT_ID": "c"}, "OIDC_ISSUER"),
        ({"OIDC_AUTO_PROVISION": "sometimes"}, "OIDC_AUTO_PROVISION"),
        ({"OIDC_SYNC_SECONDS": "5m"}, "OIDC_SYNC_SECONDS"),
        ({"OIDC_SYNC_SECONDS": "0"}, "OIDC_SYNC_SECONDS"),
        ({"OIDC_RATE_LIMIT_TIER": "gold"}, "OIDC_RATE_LIMIT_TIER"),
    ],
)
def test_a_half_given_or_malformed_identity_provider_stops_startup_naming_the_variable(env, variable):
    result = run_python("import django; django.setup()", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1]


def test_two_providers_with_one_issuer_stop_startup():
    env = {"OIDC_ISSUER": "https://login.example/pool", "OIDC_CLIENT_ID": "c", "COGNITO_CLIENT_ID": "abc"}
    result = run_python("import django; django.setup()", env={**env, "COGNITO_ISSUER": "https://login.example/pool"})
    assert result.returncode != 0 and "share the issuer" in result.stderr.strip().splitlines()[-1]


def test_configured_providers_reach_the_running_settings():
    env = {
        "AZURE_AD_TENANT_ID": TENANT.upper(),
        "AZURE_AD_CLIENT_ID": APP,
        "COGNITO_REGION": "eu-west-1",
        "COGNITO_USER_POOL_ID": "eu-west-1_AbC123",
        "COGNITO_CLIENT_ID": "1example23456789",
        "OIDC_AUTO_PROVISION": "false",
        "OIDC_SYNC_SECONDS": "60",
    }
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "print([(p.key, p.issuer, p.audiences, p.offers_sign_in) for p in settings.IDENTITY_PROVIDERS])\n"
        "print(settings.OIDC_AUTO_PROVISION, settings.OIDC_SYNC_SECONDS, settings.OIDC_RATE_LIMIT_TIER)\n"
    )
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    providers, options = result.stdout.strip().splitlines()[-2:]
    assert providers == str(
        [
            ("azure_ad", f"https://login.microsoftonline.com/{TENANT}/v2.0", (APP, f"api://{APP}"), False),
            (
                "aws_cognito",
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123",
                ("1example23456789",),
                True,
            ),
        ]
    )
    assert options == "False 60 pro"


def test_provider_overrides_and_the_generic_issuer():
    from config.identity_providers import identity_providers_from

    azure, cognito, generic = identity_providers_from(
        {
            "AZURE_AD_TENANT_ID": TENANT,
            "AZURE_AD_CLIENT_ID": APP,
            "AZURE_AD_AUDIENCE": "https://api.contoso.example",
            "AZURE_AD_CLIENT_SECRET": "secret",
            "AZURE_AD_ISSUER": "https://login.example/tenant/v2.0/",
            "COGNITO_CLIENT_ID": "abc",
            "COGNITO_ISSUER": "http://127.0.0.1:9400",
            "OIDC_ISSUER": "https://sso.example",
            "OIDC_CLIENT_ID": "agents",
            "OIDC_AUDIENCE": "agents-api",
        }
    )
    assert azure.issuer == "https://login.example/tenant/v2.0" and azure.offers_sign_in
    assert azure.audiences == ("https://api.contoso.example", APP, f"api://{APP}")
    assert "secret" not in repr(azure)
    assert cognito.issuer == "http://127.0.0.1:9400" and cognito.audiences == ("abc",)
    assert (generic.label, generic.audiences) == ("OpenID Connect", ("agents-api", "agents"))
    assert generic.discovery_url == "https://sso.example/.well-known/openid-configuration"
    assert identity_providers_from({}) == ()
