"""Settings of the WVA console, read from the environment.

Every value has a default that lets `make run` and the tests start with
nothing set: SQLite under `var/`, a filesystem Celery broker and the
emulated cluster's kubeconfig.
"""

import ipaddress
import math
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()


def _env_value(name: str, parse: Callable[[str], float], bound: str) -> float | None:
    """Parse a variable's text, None when it is unset or empty.

    django-environ reads "nan" or "abc" as an empty string, and "1e3" as 13,
    because it drops characters before parsing. Python's own parser is used
    instead, and a value it rejects or that is not finite fails here with
    the variable's name, its text and `bound`, the range it must lie in.
    """
    raw = env.str(name, default="").strip()
    if not raw:
        return None
    try:
        value = float(parse(raw))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"invalid {name} {raw!r}: set it to {bound}")
    return value


def _checked(name: str, value: float, ok: bool, bound: str) -> float:
    """Return `value`, or raise ImproperlyConfigured naming it unless `ok`."""
    if not ok:
        text = env.str(name, default="").strip()
        raise ImproperlyConfigured(f"invalid {name} {text!r}: set it to {bound}")
    return value


def env_seconds(name: str, default: float, *, positive: bool = False) -> float:
    """Read a duration in seconds, above 0 when `positive`, else 0 or more."""
    bound = "a number of seconds " + ("above 0" if positive else "0 or more")
    value = _env_value(name, float, bound)
    if value is None:
        return default
    return _checked(name, value, value > 0.0 if positive else value >= 0.0, bound)


def env_count(name: str, default: int, low: int, high: int) -> int:
    """Read a whole number from `low` to `high`."""
    bound = f"a whole number from {low} to {high}"
    value = _env_value(name, int, bound)
    if value is None:
        return default
    return int(_checked(name, value, low <= value <= high, bound))


def env_number(name: str, default: float, low: float, high: float) -> float:
    """Read a finite number from `low` to `high`."""
    bound = f"a number from {low:g} to {high:g}"
    value = _env_value(name, float, bound)
    if value is None:
        return default
    return _checked(name, value, low <= value <= high, bound)


def check_prometheus_url(url: str) -> None:
    """Reject a URL that the Prometheus source cannot or must not query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on an invalid port
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"invalid WVA_PROMETHEUS_URL {url!r}: {exc}"
        ) from None
    if parts.scheme not in ("http", "https") or not host:
        raise ImproperlyConfigured(
            f"invalid WVA_PROMETHEUS_URL {url!r}: use http:// or https:// with a "
            "host, e.g. http://prometheus-k8s.monitoring:9090"
        )
    if parts.username or parts.password:
        # Error messages and stored samples name the URL, so it carries no secret.
        raise ImproperlyConfigured(
            "invalid WVA_PROMETHEUS_URL: it contains a user name or password; "
            "use a URL without credentials"
        )
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if address.is_link_local:
        # 169.254.169.254 and fe80::/10 serve cloud instance metadata.
        raise ImproperlyConfigured(
            f"invalid WVA_PROMETHEUS_URL {url!r}: {host} is a link-local "
            "address, not a Prometheus server"
        )


DEBUG = env.bool("WVA_DEBUG", default=False)
# NOTE: the default key is for a console on loopback only; set WVA_SECRET_KEY
# for any shared deployment.
SECRET_KEY = env.str("WVA_SECRET_KEY", default="wva-console-local-only-key")
ALLOWED_HOSTS = env.list(
    "WVA_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"]
)
CSRF_TRUSTED_ORIGINS = env.list("WVA_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "wva_web.catalog",
    "wva_web.control",
    "wva_web.dashboard",
    "wva_web.api",
    "wva_web.simulate",
]

MIDDLEWARE = [
    # Before any middleware that reads the Host header.
    "wva_web.middleware.MetricsHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "wva_web.middleware.ConsoleLoginRequiredMiddleware",
]

ROOT_URLCONF = "wva_web.urls"
WSGI_APPLICATION = "wva_web.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'wva.sqlite3'}"
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Celery worker, beat and web share one SQLite file, so wait up to 20 s
    # for a lock. Each transaction takes the write lock when it begins, so
    # two writers queue instead of one failing with "database is locked"
    # when it upgrades a read lock.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["timeout"] = 20
    options["transaction_mode"] = "IMMEDIATE"
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Name of the database the tests create; CI sets a name of its own so that a
# second test run on the same server cannot drop the database under it.
if env.str("WVA_TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": env.str("WVA_TEST_DATABASE_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve static files from the app and project folders without collectstatic.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "wva_web.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "wva_web.api.pagination.ConsolePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "WVA console API",
    "DESCRIPTION": "Catalogue, metric samples, control cycles and scale actions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Serve the Redoc and Swagger UI scripts from static files, not a CDN.
    "SWAGGERUI_DIST": "SIDECAR",
    "SWAGGERUI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: Redis when REDIS_URL is set, else a broker on the local disk.
REDIS_URL = env.str("REDIS_URL", default="")
BROKER_DIR = VAR_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
else:
    for sub in ("out", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Broadcast (pidbox) messages, which otherwise land in the working folder.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Comparisons run on a worker of their own (`compare` in the Procfile,
# wva-compare-worker in deploy/kubernetes); other tasks use the default queue.
CELERY_TASK_ROUTES = {"wva.run_comparison": {"queue": "comparisons"}}
# Retry the broker connection at start-up and after a loss, without a limit,
# so a worker started before Redis, or one whose Redis restarts, waits for it.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A running task keeps going when the broker connection drops. Cancelling a
# cycle would leave the cycle lock held until WVA_CYCLE_LOCK_S runs out, and
# no cycle could run in the meantime.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_ALWAYS_EAGER = env.bool("WVA_CELERY_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# Control cycle.
WVA_CYCLE_PERIOD_S = env_seconds("WVA_CYCLE_PERIOD_S", 30.0, positive=True)
WVA_CYCLE_SOFT_LIMIT_S = env_seconds("WVA_CYCLE_SOFT_LIMIT_S", 60.0, positive=True)
WVA_CYCLE_HARD_LIMIT_S = env_seconds("WVA_CYCLE_HARD_LIMIT_S", 90.0, positive=True)
# The lock outlives the hard limit so a killed cycle cannot leave two running.
WVA_CYCLE_LOCK_S = env_seconds("WVA_CYCLE_LOCK_S", 120.0, positive=True)
# Time limits of any Celery task that sets none of its own.
CELERY_TASK_SOFT_TIME_LIMIT = WVA_CYCLE_SOFT_LIMIT_S
CELERY_TASK_TIME_LIMIT = WVA_CYCLE_HARD_LIMIT_S
WVA_SCRAPE_TIMEOUT_S = env_seconds("WVA_SCRAPE_TIMEOUT_S", 3.0, positive=True)
# Source of the cycle's replica metrics: "scrape" reads each pod's endpoint,
# and "prometheus" runs PromQL queries against WVA_PROMETHEUS_URL (see
# docs/prometheus.md). Both are checked below, at start-up.
WVA_METRICS_SOURCE = env.str("WVA_METRICS_SOURCE", default="scrape")
WVA_PROMETHEUS_URL = env.str("WVA_PROMETHEUS_URL", default="")
WVA_PROMETHEUS_TIMEOUT_S = env_number("WVA_PROMETHEUS_TIMEOUT_S", 5.0, 0.1, 60.0)
if WVA_METRICS_SOURCE not in ("scrape", "prometheus"):
    raise ImproperlyConfigured(
        f"invalid WVA_METRICS_SOURCE {WVA_METRICS_SOURCE!r}: set it to scrape or "
        "prometheus"
    )
if WVA_METRICS_SOURCE == "prometheus":
    check_prometheus_url(WVA_PROMETHEUS_URL)
# Policy of models that name none: wva, wva-v1 or hpa.
WVA_POLICY = env.str("WVA_POLICY", default="wva")
if WVA_POLICY not in ("wva", "wva-v1", "hpa"):
    raise ImproperlyConfigured(
        f"invalid WVA_POLICY {WVA_POLICY!r}: set it to wva, wva-v1 or hpa"
    )
# Seconds a new replica needs to serve: the `wva` demand forecast horizon.
WVA_STARTUP_DELAY_S = env_seconds("WVA_STARTUP_DELAY_S", 120.0)
if WVA_STARTUP_DELAY_S > 3600.0:
    raise ImproperlyConfigured(
        f"invalid WVA_STARTUP_DELAY_S {WVA_STARTUP_DELAY_S:g}: "
        "set it to a number of seconds from 0 to 3600"
    )
# A pending action older than this many seconds expires.
WVA_ACTION_TTL_S = env_seconds("WVA_ACTION_TTL_S", 1800.0, positive=True)
# Four-eyes mode: no user, superusers included, may approve their own request.
WVA_FOUR_EYES = env.bool("WVA_FOUR_EYES", default=True)
WVA_DRY_RUN = env.bool("WVA_DRY_RUN", default=False)
# Kubeconfig for the actuator; empty means in-cluster configuration.
WVA_KUBECONFIG = env.str(
    "WVA_KUBECONFIG", default=str(VAR_DIR / "emulator" / "kubeconfig")
)
WVA_KUBE_TIMEOUT_S = env_seconds("WVA_KUBE_TIMEOUT_S", 5.0, positive=True)
WVA_INSTANCE = env.str("WVA_INSTANCE", default="console-1")
# Control-cycle safety rules, in seconds of the cycle's clock.
# A replica Pending for longer than this is unschedulable: its scale-up fails
# and the request moves to the next-cheapest variant.
WVA_PENDING_TIMEOUT_S = env_seconds("WVA_PENDING_TIMEOUT_S", 240.0, positive=True)
# Limit scale-ups to the free GPUs of the node inventory and of the budget.
WVA_GPU_LIMITER = env.bool("WVA_GPU_LIMITER", default=True)
# A not-ready replica without valid metrics for this long is not capacity.
WVA_STALE_AFTER_S = env_seconds("WVA_STALE_AFTER_S", 300.0, positive=True)
# Waiting requests with nothing running and no new tokens for this long are stuck.
WVA_STUCK_QUEUE_S = env_seconds("WVA_STUCK_QUEUE_S", 300.0, positive=True)
# After an approver rejects a proposal of the control cycle, the cycle proposes
# no change in the same direction for that variant for this many seconds.
WVA_REJECT_COOLDOWN_S = env_seconds("WVA_REJECT_COOLDOWN_S", 600.0)
# After a scale-up fails as unschedulable, its variant takes no scale-up for
# this many seconds; the next-cheapest variant gets the replica.
WVA_UNSCHEDULABLE_COOLDOWN_S = env_seconds("WVA_UNSCHEDULABLE_COOLDOWN_S", 600.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env.str("WVA_LOG_LEVEL", default="INFO"),
    },
}

# Leader election between console instances acting on one cluster, through a
# coordination.k8s.io Lease named wva-console-leader.
WVA_LEADER_ELECTION = env.bool("WVA_LEADER_ELECTION", default=True)
WVA_LEADER_NAMESPACE = env.str("WVA_LEADER_NAMESPACE", default="llm")
# Lease duration in seconds; at least the cycle lock so a slow cycle keeps it.
WVA_LEADER_LEASE_S = env_seconds(
    "WVA_LEADER_LEASE_S", max(3 * WVA_CYCLE_PERIOD_S, WVA_CYCLE_LOCK_S), positive=True
)
# An approved action still not applied after this many seconds fails with
# apply_timeout, so a lost apply task cannot freeze its model.
WVA_APPLY_DEADLINE_S = env_seconds("WVA_APPLY_DEADLINE_S", 600.0, positive=True)

# Limits of policy comparison runs (`wva_web.simulate.conf` reads these).
WVA_COMPARE_MAX_RUNNING = env_count("WVA_COMPARE_MAX_RUNNING", 1, 1, 64)
WVA_COMPARE_MAX_QUEUED = env_count("WVA_COMPARE_MAX_QUEUED", 4, 0, 1000)
WVA_COMPARE_MAX_SCALE = env_number("WVA_COMPARE_MAX_SCALE", 10.0, 0.001, 1000.0)
WVA_COMPARE_MAX_DURATION_S = env_number(
    "WVA_COMPARE_MAX_DURATION_S", 3600.0, 60.0, 86400.0
)
WVA_COMPARE_TIME_LIMIT_S = env_number("WVA_COMPARE_TIME_LIMIT_S", 1800.0, 1.0, 86400.0)
WVA_COMPARE_MAX_PLOT_BYTES = env_count(
    "WVA_COMPARE_MAX_PLOT_BYTES", 5_000_000, 0, 1_000_000_000
)
