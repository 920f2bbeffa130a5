"""Settings of the demo project: SQLite in WAL mode by default, PostgreSQL on request.

Environment:
- ``TESTPROJECT_DATABASE_URL``: ``postgres://user@host:port/name`` switches to PostgreSQL.
- ``TESTPROJECT_SQLITE_PATH``: where the SQLite file lives (default: next to manage.py).
- ``TASKKIT_BROKER_URL``: the Celery broker (default: the embedded filesystem broker).
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

from taskkit.embedded import celery_settings

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-secret-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "taskkit",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

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
            ]
        },
    }
]


def _database() -> dict[str, object]:
    url = os.environ.get("TESTPROJECT_DATABASE_URL")
    if url:
        parts = urlsplit(url)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/") or "postgres",
            "USER": parts.username or "postgres",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "127.0.0.1",
            "PORT": str(parts.port or 5432),
        }
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TESTPROJECT_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
        # WAL lets web, worker and Beat read while one writes; IMMEDIATE takes the write
        # lock at BEGIN, so concurrent writers queue instead of failing "database is locked".
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "Europe/Paris"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# The embedded default broker keeps messages as files under var/broker: no server, one
# machine, polling, no acknowledgement. TASKKIT_BROKER_URL switches to Redis or RabbitMQ.
if os.environ.get("TASKKIT_BROKER_URL"):
    CELERY_BROKER_URL = os.environ["TASKKIT_BROKER_URL"]
else:
    globals().update(
        celery_settings(os.environ.get("TESTPROJECT_BROKER_FOLDER", BASE_DIR / "var" / "broker"))
    )
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "taskkit.scheduler:Scheduler"

TASKKIT: dict[str, object] = {}

# One handler, on the root logger: a worker replaces it with Celery's, so each line is
# printed once. A handler on "taskkit" as well would print every taskkit line twice there.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"taskkit": {"level": "INFO"}},
}
