"""The one settings module. Every value comes from the environment (or an optional .env file).

Defaults are the production-safe ones. A malformed value stops startup with
ImproperlyConfigured naming the variable. Every variable is listed in .env.example and in
the README's configuration table.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from config.db.connection import PoolSettings, build_database
from config.db.replicas import replica_databases
from config.env import BASE_DIR, env, env_bool, env_choice, env_float, env_int, env_list
from config.identity_providers import identity_providers_from
from config.ratelimit import parse_rate

# Django's generic classes (ModelAdmin[User], QuerySet[Session]) subscriptable at runtime.
django_stubs_ext.monkeypatch()

# --- Core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # First, so its templates (config/templates/admin/pagination.html) override the admin's.
    "config.apps.ProjectConfig",
    "config.apps.PlatformAdminConfig",  # django.contrib.admin with our site (throttled login)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc, pinned, served by whitenoise (no CDN)
    "audit",
    "accounts",
    "apikeys",
    "agent_sessions",
    "idempotency",
]

MIDDLEWARE = [
    "config.observability.middleware.MetricsMiddleware",  # serves /metrics; request metrics by route
    "config.middleware.EdgeMiddleware",  # request context and log, JSON 503s
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.HostileInputMiddleware",
    # Django's own, stepping aside for API and probe requests without a session cookie
    # (config.middleware.serves_staff): they need no session, session user or messages.
    "config.middleware.StaffSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.middleware.StaffAuthenticationMiddleware",
    "config.middleware.StaffMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------

DB_POOL = PoolSettings(
    mode=env_choice("DB_POOL_MODE", "pool", ("pool", "persistent", "pgbouncer", "none")),
    pool_size=env_int("DB_POOL_SIZE", 5, minimum=1),
    max_overflow=env_int("DB_MAX_OVERFLOW", 10, minimum=0),
    pool_timeout=env_float("DB_POOL_TIMEOUT", 30.0, minimum=0.001),
    pool_recycle=env_int("DB_POOL_RECYCLE", 3600, minimum=1),
    conn_max_age=(env_int("DB_CONN_MAX_AGE", 0, minimum=0) if env.str("DB_CONN_MAX_AGE", default="") else None),
    connect_timeout=env_int("DB_CONNECT_TIMEOUT", 5, minimum=1),
    statement_timeout=env_float("DB_STATEMENT_TIMEOUT", 30.0, minimum=0),
    outage_timeout=env_float("DB_OUTAGE_TIMEOUT", 1.5, minimum=0.1),
    echo_sql=env_bool("DB_ECHO_SQL", False),
    prepared_statements=env_bool("DB_PREPARED_STATEMENTS", True),
)

DATABASE_URL = env.str("DATABASE_URL", default="")
if not DATABASE_URL:
    # No server configured: the embedded development PostgreSQL under .pgdata/.
    from config.db import embedded_postgres

    DATABASE_URL = embedded_postgres.ensure_running()

DATABASES = {"default": build_database(DATABASE_URL, DB_POOL)}
if env.str("DB_TEST_NAME", default=""):
    # Lets parallel test runs share one server without sharing a test database.
    DATABASES["default"]["TEST"] = {"NAME": env.str("DB_TEST_NAME")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Read replicas ----------------------------------------------------------------------------

# Streaming standbys for the reads that tolerate lag (config/db/replicas.py); none: all on the primary.
DATABASES |= replica_databases(env_list("DATABASE_REPLICA_URLS", []), DB_POOL)
DATABASE_REPLICAS = [alias for alias in DATABASES if alias != "default"]
DATABASE_ROUTERS = ["config.db.replicas.ReplicaRouter"]
MIDDLEWARE += ["config.middleware.ReplicaStickyMiddleware"]  # steps aside without replicas
# API and probe requests without a session cookie take the chain without what serves only staff
# pages (config.handlers): static files, sessions, CSRF, the session user, messages.
STAFF_ONLY_MIDDLEWARE = [
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.StaffSessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.middleware.StaffAuthenticationMiddleware",
    "config.middleware.StaffMessageMiddleware",
]
# After a mutating request, that user's reads stay on the primary this long (on every host).
REPLICA_STICKY_SECONDS = env_float("REPLICA_STICKY_SECONDS", 5.0, minimum=0)
# A standby further behind than this is skipped until it catches up.
REPLICA_MAX_LAG_SECONDS = env_float("REPLICA_MAX_LAG_SECONDS", 2.0, minimum=0.1)

# --- Identity ---------------------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["accounts.backends.RoleAwareModelBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SILENCED_SYSTEM_CHECKS = [
    # USERNAME_FIELD `email` is unique case-insensitively among live users through a partial
    # unique index (accounts_user_email_live_uniq), which auth.W004 cannot see.
    "auth.W004",
]

# API keys look like sk_<environment>_<random><checksum>.
API_KEY_ENVIRONMENT = env.str("API_KEY_ENVIRONMENT", default="live").strip().lower()
if not re.fullmatch(r"[a-z]{2,8}", API_KEY_ENVIRONMENT):
    raise ImproperlyConfigured(f"API_KEY_ENVIRONMENT={API_KEY_ENVIRONMENT!r} must be 2 to 8 lowercase letters")

# --- Identity providers (Azure AD, Cognito, any OpenID Connect issuer) ------------------------

# API bearer tokens and the admin's sign-in (accounts/oidc/); none configured is fine.
IDENTITY_PROVIDERS = identity_providers_from(os.environ)
# A first token from an unknown user creates them; off, that token is refused (401).
OIDC_AUTO_PROVISION = env_bool("OIDC_AUTO_PROVISION", True)
# Changed claims (email, name, roles, groups) update a user at most this often.
OIDC_SYNC_SECONDS = env_int("OIDC_SYNC_SECONDS", 300, minimum=1)
# The rate-limit tier of token requests, counted per user (all of a user's tokens together).
OIDC_RATE_LIMIT_TIER = env_choice("OIDC_RATE_LIMIT_TIER", "pro", ("free", "pro", "enterprise"))

# --- Limits and lifecycle ---------------------------------------------------------------------

SESSION_MAX_MESSAGES = env_int("SESSION_MAX_MESSAGES", 10_000, minimum=1)
SESSION_EXPIRY_HOURS = env_float("SESSION_EXPIRY_HOURS", 24.0, minimum=0.001)
MESSAGE_MAX_CONTENT_CHARS = env_int("MESSAGE_MAX_CONTENT_CHARS", 100_000, minimum=1)
AUDIT_LOG_RETENTION_DAYS = env_int("AUDIT_LOG_RETENTION_DAYS", 90, minimum=1)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 4 * 1_048_576, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
# The session store (issue 16): an item's JSON text at most this many bytes (UTF-8); idempotency
# keys kept at least this long before prune_idempotency_keys removes them.
MESSAGE_MAX_ITEM_BYTES = env_int("MESSAGE_MAX_ITEM_BYTES", 512 * 1024, minimum=1024)
IDEMPOTENCY_KEY_TTL_HOURS = env_float("IDEMPOTENCY_KEY_TTL_HOURS", 24.0, minimum=1.0)
# A bare hello view at /_bench/hello, the floor `make bench` measures every endpoint against.
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", False)

# --- Rate limits and cache --------------------------------------------------------------------

RATE_LIMITS = {
    "free": env.str("RATE_LIMIT_FREE", default="100/hour"),
    "pro": env.str("RATE_LIMIT_PRO", default="1000/hour"),
    "enterprise": env.str("RATE_LIMIT_ENTERPRISE", default="none"),
}
AUTH_FAILURE_RATE = env.str("AUTH_FAILURE_RATE", default="30/min")
ADMIN_LOGIN_RATE = env.str("ADMIN_LOGIN_RATE", default="10/min")
for _name, _value in [
    *((f"RATE_LIMIT_{tier.upper()}", rate) for tier, rate in RATE_LIMITS.items()),
    ("AUTH_FAILURE_RATE", AUTH_FAILURE_RATE),
    ("ADMIN_LOGIN_RATE", ADMIN_LOGIN_RATE),
]:
    parse_rate(_value, name=_name)  # fail at startup, naming the variable

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "agent-platform",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "config.db.cache.AtomicDatabaseCache",
            "LOCATION": "django_cache",
            "KEY_PREFIX": "agent-platform",
            "OPTIONS": {"MAX_ENTRIES": 100_000, "CULL_FREQUENCY": 4},
        }
    }

# --- HTTP security ----------------------------------------------------------------------------

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health(/|$)"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True

# --- Static files -----------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Hashed, compressed, cache-forever files after `collectstatic` (make run does it). The test
# suite serves straight from the apps (STATIC_MANIFEST=false) so it needs no collectstatic.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Without a collectstatic run (tests, first start) whitenoise serves from the finders.
WHITENOISE_USE_FINDERS = True
WHITENOISE_MANIFEST_STRICT = False

# --- Internationalisation ---------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- REST framework ---------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apikeys.authentication.APIKeyAuthentication",
        "accounts.oidc.authentication.IdentityTokenAuthentication",
        "accounts.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.permissions.HasScopeForMethod"],
    "DEFAULT_THROTTLE_CLASSES": ["apikeys.throttling.TierRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["config.api.parsers.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.api.negotiation.RememberedContentNegotiation",
    "DEFAULT_RENDERER_CLASSES": [
        "config.api.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["config.api.filters.FilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.WindowCountPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Agent platform API",
    "DESCRIPTION": "Users, API keys, agent conversation sessions and their messages, audit trail.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api.schema.document_empty_query_values",
    ],
    "ENUM_NAME_OVERRIDES": {
        "SessionStatusEnum": "agent_sessions.models.Session.Status",
        "MessageRoleEnum": "agent_sessions.models.Message.Role",
        "AuditActionEnum": "audit.models.AuditLog.Action",
        "ProviderEnum": "accounts.models.User.Provider",
        "RoleEnum": "accounts.roles.Role",
        "ScopeEnum": "config.api.permissions.Scope",
        "RateLimitTierEnum": "apikeys.models.APIKey.Tier",
    },
}

# --- API docs (offline) ------------------------------------------------------------------------

# /api/docs/ (Swagger UI) and /api/redoc/ load their scripts from drf-spectacular-sidecar's
# pinned copy in our static files, never a CDN: the pages work without internet, and staff
# open them with their session cookie, so no third-party script runs there.
SPECTACULAR_SETTINGS |= {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge (it would fetch from validator.swagger.io). The key typed into
    # "Authorize" is not persisted (persistAuthorization stays off: no raw key in localStorage).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- Logging ----------------------------------------------------------------------------------

LOG_FORMAT = env_choice("LOG_FORMAT", "text" if DEBUG else "json", ("json", "text"))
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_context": {"()": "config.logging.RequestContextFilter"},
        "redact_secrets": {"()": "config.logging.SecretRedactingFilter"},
    },
    "formatters": {
        "json": {"()": "config.logging.JSONFormatter"},
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_context", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {
            "level": "DEBUG" if DB_POOL.echo_sql else "WARNING",
            "handlers": ["console"],
            "propagate": False,
        },
        # Django logs every 4xx as a warning with the path; our request log already has it.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "ERROR"},
        "psycopg.pool": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
    },
}

# --- Observability (config/observability/) -----------------------------------------------------

# Off: no /metrics and no request metrics (the counters at the pool, authentication and the
# append service still count, unseen).
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
# GET /metrics (Prometheus) answers these addresses (CIDR allowed; empty: none) and any request
# with `Authorization: Bearer <METRICS_TOKEN>` when that is set; anyone else gets 404.
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
try:
    METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network(value, strict=False) for value in METRICS_ALLOWED_IPS]
except ValueError as _exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {_exc}") from None
