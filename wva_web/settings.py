"""Settings of the WVA console, read from the environment.

Every value has a default that lets `make run` and the tests start with
nothing set: SQLite under `var/`, a filesystem Celery broker and the
emulated cluster's kubeconfig.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()

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
]

MIDDLEWARE = [
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
CELERY_TASK_ALWAYS_EAGER = env.bool("WVA_CELERY_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# Control cycle.
WVA_CYCLE_PERIOD_S = env.float("WVA_CYCLE_PERIOD_S", default=30.0)
WVA_CYCLE_SOFT_LIMIT_S = env.float("WVA_CYCLE_SOFT_LIMIT_S", default=60.0)
WVA_CYCLE_HARD_LIMIT_S = env.float("WVA_CYCLE_HARD_LIMIT_S", default=90.0)
# The lock outlives the hard limit so a killed cycle cannot leave two running.
WVA_CYCLE_LOCK_S = env.float("WVA_CYCLE_LOCK_S", default=120.0)
WVA_SCRAPE_TIMEOUT_S = env.float("WVA_SCRAPE_TIMEOUT_S", default=3.0)
WVA_POLICY = env.str("WVA_POLICY", default="wva-v1")
# A pending action older than this many seconds expires.
WVA_ACTION_TTL_S = env.float("WVA_ACTION_TTL_S", default=1800.0)
# Four-eyes mode: no user, superusers included, may approve their own request.
WVA_FOUR_EYES = env.bool("WVA_FOUR_EYES", default=True)
WVA_DRY_RUN = env.bool("WVA_DRY_RUN", default=False)
# Kubeconfig for the actuator; empty means in-cluster configuration.
WVA_KUBECONFIG = env.str(
    "WVA_KUBECONFIG", default=str(VAR_DIR / "emulator" / "kubeconfig")
)
WVA_KUBE_TIMEOUT_S = env.float("WVA_KUBE_TIMEOUT_S", default=5.0)
WVA_INSTANCE = env.str("WVA_INSTANCE", default="console-1")
# Control-cycle safety rules, in seconds of the cycle's clock.
# A replica Pending for longer than this is unschedulable: its scale-up fails
# and the request moves to the next-cheapest variant.
WVA_PENDING_TIMEOUT_S = env.float("WVA_PENDING_TIMEOUT_S", default=240.0)
# Limit scale-ups to the free GPUs of the node inventory and of the budget.
WVA_GPU_LIMITER = env.bool("WVA_GPU_LIMITER", default=True)
# A not-ready replica without valid metrics for this long is not capacity.
WVA_STALE_AFTER_S = env.float("WVA_STALE_AFTER_S", default=300.0)
# Waiting requests with nothing running and no new tokens for this long are stuck.
WVA_STUCK_QUEUE_S = env.float("WVA_STUCK_QUEUE_S", default=300.0)
# After an approver rejects a proposal of the control cycle, the cycle proposes
# no change in the same direction for that variant for this many seconds.
WVA_REJECT_COOLDOWN_S = env.float("WVA_REJECT_COOLDOWN_S", default=600.0)
# After a scale-up fails as unschedulable, its variant takes no scale-up for
# this many seconds; the next-cheapest variant gets the replica.
WVA_UNSCHEDULABLE_COOLDOWN_S = env.float("WVA_UNSCHEDULABLE_COOLDOWN_S", default=600.0)

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
WVA_LEADER_LEASE_S = env.float(
    "WVA_LEADER_LEASE_S", default=max(3 * WVA_CYCLE_PERIOD_S, WVA_CYCLE_LOCK_S)
)
# An approved action still not applied after this many seconds fails with
# apply_timeout, so a lost apply task cannot freeze its model.
WVA_APPLY_DEADLINE_S = env.float("WVA_APPLY_DEADLINE_S", default=600.0)
