"""Settings for Federation Core.

Everything that differs between the embedded default (`make run`: SQLite, a file-system
broker, no external service) and production (PostgreSQL, Redis) comes from the environment:
`DATABASE_URL`, `CELERY_BROKER_URL`, `FCORE_SECRET_KEY`, `FCORE_DEBUG`, `FCORE_ALLOWED_HOSTS`.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the templates, static files and example bundles are. A checkout keeps them at its
# top (templates/, static/, docs/examples/); the wheel carries them inside this package as
# fcore/assets/ (pyproject.toml), and then BASE_DIR is site-packages.
_ASSETS = Path(__file__).resolve().parent / "assets"
FCORE_INSTALLED = _ASSETS.is_dir()
FCORE_TEMPLATES_DIR = _ASSETS / "templates" if FCORE_INSTALLED else BASE_DIR / "templates"
FCORE_STATIC_DIR = _ASSETS / "static" if FCORE_INSTALLED else BASE_DIR / "static"
FCORE_EXAMPLES_DIR = _ASSETS / "examples" if FCORE_INSTALLED else BASE_DIR / "docs" / "examples"


def _var_dir() -> Path:
    """FCORE_VAR_DIR: everything FC writes (the embedded database and broker, generated
    keys, beat's schedule, collected static files, proof reports). A checkout defaults to
    its own var/; an installed copy has no such place and refuses to guess (never
    site-packages, never wherever it was started from)."""
    if os.environ.get("FCORE_VAR_DIR"):
        return Path(os.environ["FCORE_VAR_DIR"]).resolve()
    if FCORE_INSTALLED:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(VAR_DIR_REQUIRED)
    return BASE_DIR / "var"


VAR_DIR_REQUIRED = ("FCORE_VAR_DIR is not set: an installed Federation Core writes its "
                    "files only there (e.g. FCORE_VAR_DIR=/var/lib/fcore)")
VAR_DIR = _var_dir()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_list(name: str, default: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def _env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def _secret_from_file(name: str) -> str:
    """Read a generated secret from var/, creating it once (the embedded default)."""
    path = VAR_DIR / name
    if not path.exists():
        import secrets

        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _secret_env(name: str) -> str:
    """A secret from the environment variable `name`, or from the file named by `name`_FILE
    (a mounted secret). Django's error reports hide settings named *SECRET*."""
    path = os.environ.get(f"{name}_FILE", "")
    if not path:
        return os.environ.get(name, "")
    from django.core.exceptions import ImproperlyConfigured

    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}_FILE {path}: {exc.strerror}") from None


def _signing_key_file() -> str:
    """var/signing_key: a base64 Ed25519 private key (raw 32 bytes), created once."""
    path = VAR_DIR / "signing_key"
    if not path.exists():
        import base64

        path.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
        path.chmod(0o600)
    return str(path)


DEBUG = _env_bool("FCORE_DEBUG", False)
SECRET_KEY = os.environ.get("FCORE_SECRET_KEY") or _secret_from_file("secret_key")
# Master key from which API client secrets are derived: a database dump alone cannot
# recover them (fcore.clients).
FCORE_CLIENT_KEY = os.environ.get("FCORE_CLIENT_KEY") or _secret_from_file("client_key")
# Fernet key(s) that encrypt secrets the server must use again, such as webhook signing
# secrets (fcore.secret_box): comma-separated, the first encrypts, all decrypt (rotation).
# Unset: derived from SECRET_KEY by HKDF (the embedded default); production requires it.
FCORE_SECRET_ENCRYPTION_KEY = os.environ.get("FCORE_SECRET_ENCRYPTION_KEY", "")
ALLOWED_HOSTS = os.environ.get("FCORE_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [
    o for o in os.environ.get("FCORE_CSRF_TRUSTED_ORIGINS", "").split(",") if o
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "fcore",
    "audit",
    "runs",
    "gates",
    "csp",
    "axes",
]

MIDDLEWARE = [
    "fcore.observability.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # last: locks out repeated failed console/admin logins (django-axes)
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "fcore.interfaces.urls"
WSGI_APPLICATION = "fcore.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [FCORE_TEMPLATES_DIR],
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


def _prepared_statements() -> dict:
    """Django's PostgreSQL options for prepared statements: parameters bound on the server
    (`server_side_binding`), and psycopg's `prepare_threshold`, so a statement run five
    times on a connection is prepared there (the engine's named statements, and the ORM's
    repeated queries). FCORE_DB_PREPARED_STATEMENTS=0 turns both off (client-side binding,
    never prepared), for a pooler in transaction mode that does not keep prepared
    statements (PgBouncer before 1.21, or without `max_prepared_statements`)."""
    if not _env_bool("FCORE_DB_PREPARED_STATEMENTS", True):
        return {"prepare_threshold": None}
    return {"server_side_binding": True, "prepare_threshold": 5}


DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'fcore.sqlite3'}"
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["CONN_MAX_AGE"] = 0
    _db["OPTIONS"] = {
        # BEGIN IMMEDIATE: a transaction takes the write lock when it starts, so two
        # writers serialise instead of failing with "database is locked" half-way.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _db["TEST"] = {"NAME": os.environ.get("FCORE_TEST_SQLITE_NAME") or None}
else:
    _db["TEST"] = {"NAME": os.environ.get("FCORE_TEST_DB_NAME", "test_fcore")}
    _db.setdefault("OPTIONS", {}).update(_prepared_statements())
    if _env_bool("FCORE_DB_POOL", False):
        # The web server's threads share a pool of FCORE_DB_POOL_SIZE connections per
        # process (psycopg_pool, Django's `pool` option) instead of holding one persistent
        # connection each: `fc web` turns it on (docs/operations.md, "Worker model").
        # No health check query at each checkout (Django's CONN_HEALTH_CHECKS would make
        # the pool run one): the pool drops a broken connection when it is given back.
        _db["CONN_MAX_AGE"], _db["CONN_HEALTH_CHECKS"] = 0, False
        _db["OPTIONS"]["pool"] = {
            "min_size": 1, "max_size": int(os.environ.get("FCORE_DB_POOL_SIZE", "16")),
            "timeout": 10}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sign-in (fcore.oidc, docs/security.md "Signing in"): local passwords, the organisation's
# OpenID Connect provider (mozilla-django-oidc), or both. FCORE_LOCAL_PASSWORDS=0 leaves
# only the provider: the login pages show its button alone and refuse a password.
FCORE_LOCAL_PASSWORDS = _env_bool("FCORE_LOCAL_PASSWORDS", True)
FCORE_OIDC_ISSUER = os.environ.get("FCORE_OIDC_ISSUER", "").rstrip("/")
FCORE_OIDC_ENABLED = bool(FCORE_OIDC_ISSUER)
FCORE_OIDC_PROVIDER_NAME = os.environ.get("FCORE_OIDC_PROVIDER_NAME", "")  # on the button
FCORE_OIDC_GROUPS_CLAIM = os.environ.get("FCORE_OIDC_GROUPS_CLAIM", "groups")
FCORE_OIDC_GROUP_MAP = os.environ.get("FCORE_OIDC_GROUP_MAP", "{}")  # JSON, fcore.oidc
FCORE_OIDC_STAFF_VALUES = _env_list("FCORE_OIDC_STAFF_VALUES", "")
OIDC_RP_CLIENT_ID = os.environ.get("FCORE_OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = _secret_env("FCORE_OIDC_CLIENT_SECRET")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("FCORE_OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("FCORE_OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("FCORE_OIDC_USERINFO_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("FCORE_OIDC_JWKS_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = os.environ.get("FCORE_OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("FCORE_OIDC_SCOPES", "openid email profile groups")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = float(os.environ.get("FCORE_OIDC_TIMEOUT_S", "10"))
LOGIN_REDIRECT_URL_FAILURE = "/console/login/?provider=failed"
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend"]
if FCORE_OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("fcore.oidc.ProviderBackend")
if FCORE_LOCAL_PASSWORDS:
    AUTHENTICATION_BACKENDS.append("django.contrib.auth.backends.ModelBackend")
elif not FCORE_OIDC_ENABLED:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("FCORE_LOCAL_PASSWORDS=0 needs an OIDC provider "
                               "(FCORE_OIDC_ISSUER): nobody could sign in")
# Five failed sign-ins for one username from one address lock it for 15 minutes (429).
AXES_FAILURE_LIMIT = int(os.environ.get("FCORE_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# The sign-in lockout reads the client address as the API does (fcore.proxies).
AXES_CLIENT_IP_CALLABLE = "fcore.proxies.client_ip"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/console/login/"
LOGIN_REDIRECT_URL = "/console/"
LOGOUT_REDIRECT_URL = "/console/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [FCORE_STATIC_DIR]
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve from static/ even before collectstatic

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content security policy (django-csp): only this origin's scripts and stylesheets, nothing
# inline (no <script>, <style> or style attribute). Its one exception (/api/docs/) and the
# CSRF failure page that replaces Django's: fcore/interfaces/csp.py.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
CSRF_FAILURE_VIEW = "fcore.interfaces.csp.csrf_failure"  # Django's own page has an inline <style>


def _trusted_proxies() -> list[str]:
    """FCORE_TRUSTED_PROXIES: comma-separated addresses or CIDR networks of the proxies in
    front of the web processes (fcore.proxies); a wrong entry stops the start."""
    import ipaddress

    from django.core.exceptions import ImproperlyConfigured

    if os.environ.get("FCORE_PROXY_COUNT"):
        raise ImproperlyConfigured("FCORE_PROXY_COUNT is gone: list the proxies' addresses "
                                   "in FCORE_TRUSTED_PROXIES instead")
    entries = _env_list("FCORE_TRUSTED_PROXIES", "")
    try:
        return [str(ipaddress.ip_network(entry, strict=False)) for entry in entries]
    except ValueError as exc:
        raise ImproperlyConfigured(f"FCORE_TRUSTED_PROXIES: {exc}") from None


FCORE_TRUSTED_PROXIES = _trusted_proxies()
# Caches hold throttling counters; with several web processes point them at Redis (the
# deploy check fcore.W001 warns when they are per process).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("FCORE_CACHE_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": os.environ["FCORE_CACHE_URL"]}}
FCORE_AUTH_FAILURE_LIMIT = int(os.environ.get("FCORE_AUTH_FAILURE_LIMIT", "30"))
FCORE_AUTH_FAILURE_WINDOW_S = 300

# Production (FCORE_ENV=production): HTTPS only, secure cookies, HSTS; secrets from the
# environment. `python manage.py check --deploy` is clean with these.
PRODUCTION = os.environ.get("FCORE_ENV", "") == "production"
if PRODUCTION:
    _missing = [name for name in ("FCORE_SECRET_KEY", "FCORE_CLIENT_KEY",
                                  "FCORE_SECRET_ENCRYPTION_KEY") if not os.environ.get(name)]
    if _missing:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"production needs {', '.join(_missing)}")
    DEBUG = False
    SECURE_SSL_REDIRECT = _env_bool("FCORE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "fcore.interfaces.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["fcore.interfaces.api.auth.HasTenantScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["fcore.jsonlimits.JSONParser"],
    "EXCEPTION_HANDLER": "fcore.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["fcore.interfaces.api.auth.ActorRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"actor": os.environ.get("FCORE_API_RATE", "6000/min")},
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Federation Core API",
    "DESCRIPTION": "Governed workflow runs, approval gates and a tamper-evident audit trail.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # A PATCH body here is a whole input, not a partial update: its required fields stay so.
    "COMPONENT_SPLIT_PATCH": False,
    # Swagger UI is served from the installed sidecar package, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "runs.models.RunStatus",
        "StepStatusEnum": "runs.models.StepStatus",
        "GateStatusEnum": "gates.models.GateStatus",
    },
    # The /api/fc alias is served but not described (each operation once): its routes are
    # dropped by this hook. Every operation names one of these tags (tests/api/test_schema.py).
    "PREPROCESSING_HOOKS": ["fcore.interfaces.api.schema.exclude_alias"],
    "TAGS": [
        {"name": "runs", "description": "Create, list, read and steer workflow runs."},
        {"name": "steps", "description": "External executors report the steps they ran."},
        {"name": "gates", "description": "Approval gates: request, vote, break-glass override "
                                         "and its review."},
        {"name": "workflows", "description": "The tenant's workflow definitions."},
        {"name": "policies", "description": "The policies that decide every step; dry runs."},
        {"name": "audit", "description": "The tamper-evident audit trail, its verification "
                                         "and the checkpoint signing keys."},
        {"name": "evidence", "description": "Receipts and evidence packs to check a run "
                                            "offline."},
        {"name": "tasks", "description": "Work handed to machine executors: claims and "
                                         "leases."},
        {"name": "schedules", "description": "Runs started on a schedule."},
        {"name": "clients", "description": "API clients and their keys."},
        {"name": "ops", "description": "Health, readiness and figures for operators."},
    ],
}

# The durable engine (runs.engine). Step types `python:<dotted.path>` may name only these
# handlers; `http` steps may only POST to these origins (no port: any port) and paths.
FCORE_STEP_HANDLERS = _env_list(
    "FCORE_STEP_HANDLERS", "runs.examples.echo,runs.examples.flaky,runs.examples.wait")
FCORE_HTTP_ALLOWED_URLS = _env_list("FCORE_HTTP_ALLOWED_URLS", "http://127.0.0.1,http://localhost")
# A running internal step holds a lease, renewed by its worker every third of it; the
# sweeper re-delivers a step whose lease ran out (its worker died or its task was lost).
FCORE_STEP_LEASE_S = float(os.environ.get("FCORE_STEP_LEASE_S", "30"))
FCORE_STEP_MAX_REDELIVERIES = int(os.environ.get("FCORE_STEP_MAX_REDELIVERIES", "5"))
FCORE_STEP_CHAIN_MAX = int(os.environ.get("FCORE_STEP_CHAIN_MAX", "100"))
FCORE_SWEEP_INTERVAL_S = float(os.environ.get("FCORE_SWEEP_INTERVAL_S", "10"))
# An http step without timeout_s waits at most this long for its answer.
FCORE_HTTP_TIMEOUT_S = float(os.environ.get("FCORE_HTTP_TIMEOUT_S", "30"))

# Celery. The embedded default is kombu's file-system transport under var/broker, so
# `make run` needs no external service; production and CI set CELERY_BROKER_URL=redis://…
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_TASK_ALWAYS_EAGER = _env_bool("FCORE_CELERY_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Signed checkpoints (audit.checkpoints): how often, and the Ed25519 key that signs them.
# The private key is standard base64 of its raw 32 bytes, from FCORE_SIGNING_KEY or the
# file FCORE_SIGNING_KEY_FILE (default var/signing_key, created once); never the database.
# Production creates no key: every machine must sign with the one configured key, or each
# would register its own and retire the others' (the system check fcore.E002 stops it).
FCORE_CHECKPOINT_INTERVAL_S = int(os.environ.get("FCORE_CHECKPOINT_INTERVAL_S", "60"))
# A background verification (audit.verifications) still running after this long is given
# up (its worker died) and the next request starts a new one.
FCORE_AUDIT_VERIFY_STALE_S = int(os.environ.get("FCORE_AUDIT_VERIFY_STALE_S", "3600"))
FCORE_SIGNING_KEY = os.environ.get("FCORE_SIGNING_KEY", "")
FCORE_SIGNING_KEY_FILE = os.environ.get("FCORE_SIGNING_KEY_FILE") or (
    "" if FCORE_SIGNING_KEY or PRODUCTION else _signing_key_file())
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "gates-expire-due": {"task": "runs.tasks.expire_due_gates", "schedule": 15.0},
    "runs-sweep": {"task": "runs.tasks.sweep_runs",
                   "schedule": FCORE_SWEEP_INTERVAL_S},
    "gates-notify-sweep": {"task": "gates.notify.sweep", "schedule": 60.0},
}
CELERY_BEAT_SCHEDULE["audit-seal-checkpoints"] = {
    "task": "audit.tasks.seal_checkpoints", "schedule": float(FCORE_CHECKPOINT_INTERVAL_S)}
# Schedules (runs.beat, docs/workflows.md): how often beat looks for due slots, and how far
# back a due slot still runs (older ones missed while beat was down are recorded skipped).
FCORE_SCHEDULE_INTERVAL_S = float(os.environ.get("FCORE_SCHEDULE_INTERVAL_S", "30"))
FCORE_SCHEDULE_CATCHUP_S = int(os.environ.get("FCORE_SCHEDULE_CATCHUP_S", "120"))
CELERY_BEAT_SCHEDULE["schedules-start-due"] = {
    "task": "runs.tasks.start_due_schedules", "schedule": FCORE_SCHEDULE_INTERVAL_S}

# Federation Core's own settings.
FCORE_TOKEN_MAX_LIFETIME_S = 3600
FCORE_TOKEN_LEEWAY_S = 30
FCORE_POLICY_TIME_LIMIT_MS = int(os.environ.get("FCORE_POLICY_TIME_LIMIT_MS", "50"))
# Workflow language (runs.expressions, DESIGN §11): the time one step's expressions may
# take, and the most items a `map` step may fan out over (beyond: the step fails).
FCORE_EXPRESSION_TIME_LIMIT_MS = int(os.environ.get("FCORE_EXPRESSION_TIME_LIMIT_MS", "50"))
FCORE_MAP_MAX_ITEMS = int(os.environ.get("FCORE_MAP_MAX_ITEMS", "1000"))
# How many levels of child runs (`type: workflow` steps) may stand below a run.
FCORE_SUBWORKFLOW_MAX_DEPTH = int(os.environ.get("FCORE_SUBWORKFLOW_MAX_DEPTH", "5"))
# How deeply any JSON the server parses or stores may nest (fcore.jsonlimits): far inside
# Python's recursion limit, so every reader of the audit trail can walk what was accepted.
FCORE_JSON_MAX_DEPTH = int(os.environ.get("FCORE_JSON_MAX_DEPTH", "64"))
if not 1 <= FCORE_JSON_MAX_DEPTH <= 100:  # audit.jcs.STORED_MAX_DEPTH leaves room for 100
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("FCORE_JSON_MAX_DEPTH must be from 1 to 100")


# Gate notifications (gates.notify). Email goes through Django's backend: the console
# backend prints it (the demo); production sets FCORE_EMAIL_BACKEND to the SMTP backend and
# the FCORE_EMAIL_* server settings below (docs/operations.md).
EMAIL_BACKEND = os.environ.get("FCORE_EMAIL_BACKEND",
                               "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("FCORE_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("FCORE_EMAIL_PORT", "25"))
EMAIL_USE_TLS = _env_bool("FCORE_EMAIL_USE_TLS", False)  # STARTTLS, usually port 587
EMAIL_USE_SSL = _env_bool("FCORE_EMAIL_USE_SSL", False)  # implicit TLS, usually port 465
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("FCORE_EMAIL_USE_TLS (STARTTLS) and FCORE_EMAIL_USE_SSL "
                               "(implicit TLS) exclude each other: set one")
EMAIL_HOST_USER = os.environ.get("FCORE_EMAIL_HOST_USER", "")
# FCORE_EMAIL_HOST_PASSWORD, or the file FCORE_EMAIL_HOST_PASSWORD_FILE (a mounted secret)
EMAIL_HOST_PASSWORD = _secret_env("FCORE_EMAIL_HOST_PASSWORD")
# A send runs under its notification's row lock: never wait on a server for ever.
EMAIL_TIMEOUT = float(os.environ.get("FCORE_EMAIL_TIMEOUT_S", "30"))
DEFAULT_FROM_EMAIL = os.environ.get("FCORE_FROM_EMAIL", "Federation Core <fc@example.invalid>")
FCORE_PUBLIC_URL = os.environ.get("FCORE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
FCORE_GATE_LINK_MAX_AGE_S = int(os.environ.get("FCORE_GATE_LINK_MAX_AGE_S", 24 * 3600))
FCORE_EMAIL_MAX_ATTEMPTS = 3
# Webhooks are POSTed only to these hosts (exact host names, no wildcards).
FCORE_WEBHOOK_ALLOWED_HOSTS = [
    h.strip().lower() for h in
    os.environ.get("FCORE_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()
]
FCORE_WEBHOOK_TIMEOUT_S = 5.0
FCORE_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("FCORE_WEBHOOK_MAX_ATTEMPTS", 6))
FCORE_WEBHOOK_BACKOFF_S = 10  # the wait after attempt n is BACKOFF_S * 2**(n-1) …
FCORE_WEBHOOK_BACKOFF_MAX_S = 3600  # … at most this

FCORE_METRICS_TOKEN = os.environ.get("FCORE_METRICS_TOKEN", "")

# JSON lines on stderr, each with the request id (fcore.observability).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "fcore.observability.RequestIdFilter"}},
    "formatters": {"json": {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
    }},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                             "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("FCORE_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# Waiting reads and claims (`?wait_s=…`, fcore.wakeups): Redis pub/sub at this
# URL, by default the Celery broker's when it is Redis; empty: stamp files under VAR_DIR.
FCORE_WAKEUP_URL = os.environ.get(
    "FCORE_WAKEUP_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "")
# The web server's threads per worker process (gunicorn gthread; docs/operations.md).
FCORE_WEB_THREADS = int(os.environ.get("FCORE_WEB_THREADS", "128"))
# The append-only audit log of a tenant is named `<FCORE_LOG_ORIGIN>/<tenant slug>`: the
# origin line of its C2SP checkpoints and the key name of their signatures. Set it once
# (a schema-less URL of this deployment); changing it renames every log (audit.log).
FCORE_LOG_ORIGIN = os.environ.get("FCORE_LOG_ORIGIN", "fcore.invalid/audit")
# Health, readiness and metrics (fcore.interfaces.health, fcore.metrics; docs/operations.md
# "Health, readiness and metrics"). `/readyz` answers 503 when a part is past its limit:
# beat's heartbeat task runs every FCORE_HEARTBEAT_INTERVAL_S and is stale after
# FCORE_READY_BEAT_MAX_AGE_S; an audit change not under a checkpoint after
# FCORE_READY_CHECKPOINT_MAX_AGE_S (default: 3 checkpoint intervals + 60 s) fails it; so
# does a webhook delivery or email still undelivered FCORE_READY_BACKLOG_MAX_AGE_S after it
# was queued, once there are more than FCORE_READY_BACKLOG_MAX such.
FCORE_HEARTBEAT_INTERVAL_S = float(os.environ.get("FCORE_HEARTBEAT_INTERVAL_S", "15"))
FCORE_READY_BEAT_MAX_AGE_S = float(os.environ.get("FCORE_READY_BEAT_MAX_AGE_S", "120"))
FCORE_READY_CHECKPOINT_MAX_AGE_S = float(os.environ.get(
    "FCORE_READY_CHECKPOINT_MAX_AGE_S", str(3 * FCORE_CHECKPOINT_INTERVAL_S + 60)))
FCORE_READY_BACKLOG_MAX_AGE_S = float(os.environ.get("FCORE_READY_BACKLOG_MAX_AGE_S", "900"))
FCORE_READY_BACKLOG_MAX = int(os.environ.get("FCORE_READY_BACKLOG_MAX", "0"))
FCORE_READY_TIMEOUT_S = float(os.environ.get("FCORE_READY_TIMEOUT_S", "3"))
CELERY_BEAT_SCHEDULE["fcore-heartbeat"] = {
    "task": "fcore.tasks.heartbeat", "schedule": FCORE_HEARTBEAT_INTERVAL_S}
# Counters and histograms kept as events happen, by every web and worker process, in
# prometheus_client's multiprocess mode: one file per process in this directory (set
# before prometheus_client is first imported; clear it when the machine's FC processes
# are all stopped, e.g. systemd ExecStartPre). `/metrics` adds them up.
FCORE_METRICS_DIR = Path(os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics"))).resolve()
FCORE_METRICS_DIR.mkdir(parents=True, exist_ok=True)
# A worker on a machine (or container) of its own, without a web process to scrape, serves
# its machine's figures on this port (plain HTTP, no token: keep it on a private address).
FCORE_WORKER_METRICS_PORT = int(os.environ.get("FCORE_WORKER_METRICS_PORT", "0"))
FCORE_WORKER_METRICS_HOST = os.environ.get("FCORE_WORKER_METRICS_HOST", "127.0.0.1")
# outermost: the request figures time everything below it (fcore.metrics)
MIDDLEWARE.insert(0, "fcore.metrics.HttpMetricsMiddleware")
if PRODUCTION:  # probes over plain HTTP, like /healthz
    SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^readyz$"]
