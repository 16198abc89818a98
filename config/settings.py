"""Settings for the routing engine.

Every value comes from the environment (or a `.env` file next to manage.py), with a
default that works on a fresh checkout: SQLite in the project directory, DEBUG off.
See `.env.example` for the full list.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # First: its templates (ops/templates/admin/) override the admin's own, and app
    # templates are looked up in this order.
    "ops",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "axes",
    "tenants",
    "routing",
    "rating",
    "blocklists",
    "outcomes",
    "versions",
    "evapi_bridge",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy header (CONTENT_SECURITY_POLICY below; config/middleware.py).
    "config.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # A NUL in the path, a query parameter or a form field is a 400 naming it, never a
    # PostgreSQL 500 (config/middleware.py).
    "config.middleware.RefuseNulMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: turns a lockout into its answer (see AXES_* below).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # None outside the apps: an installed package carries only its apps' templates.
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

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Long-lived connections: the routing endpoint is on the call-setup path, and a new
# PostgreSQL connection per request costs more than the decision itself.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if "postgresql" in DATABASES["default"]["ENGINE"]:
    # A database that hangs (rather than refuses) must not hold a process forever.
    # libpq parameters, passed through by psycopg; a value in DATABASE_URL's query
    # string wins. connect_timeout: seconds for a new connection (libpq's minimum is
    # 2). Keepalives find a dead idle connection; tcp_user_timeout (ms) errors out a
    # socket whose sent bytes go unacknowledged (a partition, a dead host).
    # statement_timeout (ms, server side) stops runaway statements; 0 is none (e.g.
    # for `migrate` on a huge table). See docs/operations.md#a-database-that-hangs.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=2))
    _options.setdefault("keepalives", 1)
    _options.setdefault("keepalives_idle", env.int("DB_KEEPALIVES_IDLE", default=5))
    _options.setdefault("keepalives_interval", env.int("DB_KEEPALIVES_INTERVAL", default=2))
    _options.setdefault("keepalives_count", env.int("DB_KEEPALIVES_COUNT", default=3))
    _options.setdefault("tcp_user_timeout", env.int("DB_TCP_USER_TIMEOUT_MS", default=5000))
    _statement_timeout = env.int("DB_STATEMENT_TIMEOUT_MS", default=10000)
    if _statement_timeout < 0:
        raise ImproperlyConfigured("DB_STATEMENT_TIMEOUT_MS must be 0 (none) or more.")
    if "options" not in _options:
        _options["options"] = f"-c statement_timeout={_statement_timeout}"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web workers, bridges) share the file: wait for a writer
    # instead of failing at once with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)

# Shared by every process (gunicorn workers, both pools): the login throttle's
# counters live here, so a per-process LocMemCache would multiply the limit by the
# number of workers. The database by default (`manage.py createcachetable` after
# migrate); CACHE_URL=redis://host:6379/0 uses Django's RedisCache (redis-py) instead.
CACHES = {"default": env.cache("CACHE_URL", default="dbcache://routing_cache")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "tenants.User"

# django-axes first: it refuses a locked-out (user name, address) before the
# password is hashed, so a locked-out flood costs no PBKDF2.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# The admin's date formats: times with their zone (ops/formats/en/formats.py).
FORMAT_MODULE_PATH = ["ops.formats"]

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Security (production values unless DEBUG) -------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Kamailio and load balancers reach the engine over plain HTTP on an internal network.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/kamailio/", r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preloading HSTS commits the whole domain (not just this service) to HTTPS in every
# browser, for months: the operator's decision, so the deploy check is not nagged.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Scripts only from our own static files: no inline script, no eval, anywhere but the
# Swagger UI page, whose init script drf-spectacular renders inline (the middleware
# allows it there alone). Inline styles are allowed: the ops pages and the Swagger
# page carry <style> blocks, and select2 sets style attributes.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Logins: lockout and throttling ----------------------------------------------------
# Reverse proxies in front of gunicorn that append to X-Forwarded-For. 0 (the default)
# trusts no header and uses the TCP peer: a client cannot pick its own address to
# dodge the lockout or the throttle. Behind one proxy that sets the header, 1.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
# A (user name, client address) pair is locked out after AXES_FAILURE_LIMIT failed
# logins, on the admin and the API alike, for AXES_COOLOFF_MINUTES (each failure
# during the lockout starts it again). Locking the pair, not the address, keeps
# operators behind one NAT apart, and an attacker cannot lock a user out from elsewhere.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "api.authentication.client_address"
AXES_LOCKOUT_CALLABLE = "api.login.lockout_response"
# Failed logins are logged (logger "axes") with the user name and address; axes
# always masks the password.
AXES_SENSITIVE_PARAMETERS: list[str] = []
AXES_VERBOSE = False  # the failures are still logged; no banner on every manage.py
# Password guesses per client address per minute on the API's login.
LOGIN_THROTTLE_RATE = env.str("LOGIN_THROTTLE_RATE", default="10/min")
# Lifetime of a user's API token (`POST /api/v1/auth/login`); it is not extended by use.
USER_TOKEN_TTL = timedelta(hours=env.float("USER_TOKEN_TTL_HOURS", default=24))

# --- REST framework -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "api.authentication.UserTokenAuthentication",
    ],
    "DEFAULT_THROTTLE_RATES": {"login": LOGIN_THROTTLE_RATE},
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # DRF's three, refusing a NUL anywhere in a body with a 400 naming the field, and
    # bounding JSON bodies (api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "api.parsers.JSONParser",
        "api.parsers.FormParser",
        "api.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kamailio routing engine API",
    "DESCRIPTION": "rtjson routing decisions for Kamailio and the tenant-scoped route tables.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Routing defaults ----------------------------------------------------------------
# tm timers (milliseconds) put into every rtjson route whose trunk does not set its own.
ROUTING_FR_TIMER = env.int("ROUTING_FR_TIMER", default=5000)
ROUTING_FR_INV_TIMER = env.int("ROUTING_FR_INV_TIMER", default=30000)
# Percent of calls a half-open trunk (unhealthy, cool-down over) gets to probe whether it
# recovered; the rest skip it (docs/outcomes.md, "Trunk health").
ROUTING_HEALTH_PROBE_PERCENT = env.int("ROUTING_HEALTH_PROBE_PERCENT", default=10)
if not 0 <= ROUTING_HEALTH_PROBE_PERCENT <= 100:
    raise ImproperlyConfigured("ROUTING_HEALTH_PROBE_PERCENT must be 0 to 100.")
# Which route table implementation answers decisions ("database" reads every decision
# from the database; see routing/tables.py).
ROUTING_TABLE = env.str("ROUTING_TABLE", default="database")
# What prices least-cost routes (a dotted path to a callable returning a rate source:
# vendors' decks and customers' sell rates in force); empty: least-cost routes get no
# vendor. See docs/rates.md.
ROUTING_RATE_SOURCE = env.str(
    "ROUTING_RATE_SOURCE",
    default="rating.lookup.rate_source"
    if ROUTING_TABLE == "compiled"
    else "rating.lookup.database_rate_source",
)
# What screens calls against blocklists before routing (a dotted path to a callable
# returning a screen); empty: nothing is blocked. See docs/blocklists.md.
ROUTING_SCREEN_SOURCE = env.str(
    "ROUTING_SCREEN_SOURCE",
    default="blocklists.lookup.compiled_source"
    if ROUTING_TABLE == "compiled"
    else "blocklists.lookup.database_source",
)
# Sell decks and vendor decks in different currencies cannot be compared by least-cost
# routing: importing such a mix is refused unless this is on.
RATING_ALLOW_MIXED_CURRENCIES = env.bool("RATING_ALLOW_MIXED_CURRENCIES", default=False)

# Every routing decision is answered within this many milliseconds of its arrival,
# over HTTP and EVAPI: when the database does not answer in time, with 503 "Routing
# Database Unavailable". The shipped Kamailio configs give the engine 1000 ms
# (ENGINE_TIMEOUT_MS); 300 leaves Kamailio time to relay the 503 (or an SBC to try
# another engine) long before its own timer fires. See docs/operations.md.
ROUTING_DECISION_DEADLINE_MS = env.int("ROUTING_DECISION_DEADLINE_MS", default=300)
if ROUTING_DECISION_DEADLINE_MS < 50:
    raise ImproperlyConfigured(
        "ROUTING_DECISION_DEADLINE_MS must be at least 50 (and below Kamailio's "
        "ENGINE_TIMEOUT_MS, 1000 in the shipped configs)."
    )

# --- Versions of staged plans (docs/versions.md) ------------------------------------
# Published versions kept per plan; older ones (and the rows only they had) go.
ROUTING_VERSIONS_KEEP = env.int("ROUTING_VERSIONS_KEEP", default=50)
if ROUTING_VERSIONS_KEEP < 2:
    raise ImproperlyConfigured("ROUTING_VERSIONS_KEEP must be at least 2 (one to roll back to).")
# The share of real decisions recorded (for the impact preview of a publish and the
# decision lookup), chosen by the decision id, and how long they are kept.
ROUTING_DECISION_SAMPLE_PERCENT = env.float("ROUTING_DECISION_SAMPLE_PERCENT", default=5.0)
if not 0 <= ROUTING_DECISION_SAMPLE_PERCENT <= 100:
    raise ImproperlyConfigured("ROUTING_DECISION_SAMPLE_PERCENT must be 0 to 100.")
ROUTING_DECISION_RETENTION_HOURS = env.int("ROUTING_DECISION_RETENTION_HOURS", default=72)
if ROUTING_DECISION_RETENTION_HOURS < 1:
    raise ImproperlyConfigured("ROUTING_DECISION_RETENTION_HOURS must be at least 1.")
# Where the transports' decisions are recorded: a dotted path to a callable
# (request, decision, transport), or empty for none. A setting, so routing never
# imports versions.
ROUTING_DECISION_LOG = env.str("ROUTING_DECISION_LOG", default="versions.decisions.record")

# Seconds each process may keep a Kamailio token it looked up: a revoked token stops
# working everywhere within this time. 0 looks the token up on every request.
KAMAILIO_TOKEN_CACHE_SECONDS = env.float("KAMAILIO_TOKEN_CACHE_SECONDS", default=1.0)

# --- Call outcomes (docs/outcomes.md) ---------------------------------------------------
# Days of per-minute quality buckets kept; older ones are pruned (prune_outcomes, and
# by each process's flusher about once an hour).
OUTCOMES_RETENTION_DAYS = env.int("OUTCOMES_RETENTION_DAYS", default=30)
if OUTCOMES_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("OUTCOMES_RETENTION_DAYS must be at least 1.")
# Seconds between two writes of a process's aggregated outcome events (0: no background
# flusher; the tests flush by hand).
OUTCOMES_FLUSH_SECONDS = env.float("OUTCOMES_FLUSH_SECONDS", default=0.5)
# Trunks with their own labels in the per-trunk /metrics series (routing_trunk_*; the
# busiest first, the rest added up under trunk="other"): bounds the series a scrape
# makes, whatever the number of trunks (docs/traffic.md).
OUTCOMES_METRICS_MAX_TRUNKS = env.int("OUTCOMES_METRICS_MAX_TRUNKS", default=200)
if OUTCOMES_METRICS_MAX_TRUNKS < 0:
    raise ImproperlyConfigured("OUTCOMES_METRICS_MAX_TRUNKS cannot be negative.")

# --- EVAPI bridge ----------------------------------------------------------------------
EVAPI_CONNECT = env.list("EVAPI_CONNECT", default=["127.0.0.1:8448"])
# Tenant (slug) for events that carry no source IP (the minimal EVAPI tutorial event).
EVAPI_DEFAULT_TENANT = env.str("EVAPI_DEFAULT_TENANT", default="")
EVAPI_MAX_FRAME = env.int("EVAPI_MAX_FRAME", default=65536)
# Answers by nosip (docs/evapi.md): Kamailio's SIP UDP address per EVAPI_CONNECT entry
# (same order), the largest answer sent that way, and the key Kamailio's NOSIP_KEY checks.
EVAPI_NOSIP = env.list("EVAPI_NOSIP", default=[])
EVAPI_NOSIP_MAX_BYTES = env.int("EVAPI_NOSIP_MAX_BYTES", default=1472)
EVAPI_NOSIP_KEY = env.str("EVAPI_NOSIP_KEY", default="")

# --- Metrics -------------------------------------------------------------------------
# Bearer token required by /metrics; empty means the endpoint answers only to
# requests from METRICS_ALLOWED_NETWORKS.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "routing": {"level": LOG_LEVEL},
        "tenants": {"level": LOG_LEVEL},
        "evapi_bridge": {"level": LOG_LEVEL},
        "axes": {"level": LOG_LEVEL},
    },
}
