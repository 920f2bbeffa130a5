"""Settings for taskkit's own test suite.

``TASKKIT_TEST_DATABASE=postgres`` runs the suite on the local PostgreSQL.
"""

import ast
import os
import tempfile
from pathlib import Path
from typing import Any

import django

SECRET_KEY = "tests-only-secret-key"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",  # the admin's CSS, for the browser tests
    "django_celery_beat",
    "taskkit",
    "tests.apps.nested",
    "tests.apps.single",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

DATABASES: dict[str, dict[str, Any]]
if os.environ.get("TASKKIT_TEST_DATABASE") == "postgres":
    # The test database is the database itself, named once per run: the worker
    # subprocesses of the integration tests inherit the variable and connect to it.
    _PG_NAME = os.environ.setdefault("TASKKIT_TEST_PG_NAME", f"taskkit_test_{os.getpid()}")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _PG_NAME,
            "TEST": {"NAME": _PG_NAME},
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": os.environ.get("TASKKIT_TEST_PG_PORT", "5432"),  # a proxy's, in fault tests
        }
    }
else:
    # A file, not :memory:, so the worker subprocesses of the integration tests share it.
    # The subprocesses inherit the variable, and with it the same file.
    _SQLITE = os.environ.setdefault(
        "TASKKIT_TEST_SQLITE", str(Path(tempfile.gettempdir()) / f"taskkit-test-{os.getpid()}.db")
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _SQLITE,
            "TEST": {"NAME": _SQLITE},
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

# The broker of the process; integration tests make a Celery app per broker instead.
CELERY_BROKER_URL = os.environ.get("TASKKIT_TEST_BROKER", "memory://")
# Worker subprocesses of the integration tests get the rest of their broker's settings here.
for _key, _value in ast.literal_eval(os.environ.get("TASKKIT_TEST_BROKER_SETTINGS", "{}")).items():
    globals()[f"CELERY_{_key.upper()}"] = _value
# The chord tests' worker: a chord needs a result backend (Celery's Redis one there).
if os.environ.get("TASKKIT_TEST_RESULT_BACKEND"):
    CELERY_RESULT_BACKEND = os.environ["TASKKIT_TEST_RESULT_BACKEND"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "taskkit.scheduler:Scheduler"
# The bench's draining workers keep their database connections across tasks, as a
# production worker should: Celery's Django fixup closes them around every task otherwise.
if os.environ.get("TASKKIT_TEST_DB_REUSE_MAX"):
    CELERY_DB_REUSE_MAX = int(os.environ["TASKKIT_TEST_DB_REUSE_MAX"])

# django.tasks (the backport on Django 5.2) on taskkit; QUEUES empty: any queue. "celery"
# names a queue only there (a '*' worker consumes it); "dummy" declares a task that is
# sent to Celery with .using(backend="default").
_DJANGO_TASKS = "django_tasks" if django.VERSION < (6, 0) else "django.tasks"
TASKS = {
    "default": {"BACKEND": "taskkit.backends.CeleryBackend", "QUEUES": []},
    "celery": {"BACKEND": "taskkit.backends.CeleryBackend", "QUEUES": ["default", "djc-star"]},
    "dummy": {"BACKEND": f"{_DJANGO_TASKS}.backends.dummy.DummyBackend", "QUEUES": []},
}

TASKKIT = {
    "OUTBOX_AFTER": 1.0,  # the outbox test waits for the scheduler's resend
    "TASKS": {
        # A settings entry wins over the discovered task of the same name.
        "echo:shout": {"handler": "tests.apps.nested.handlers.shout_louder"},
        # A task registered by settings only, with a plain function as handler.
        "plain:hello": {"handler": "tests.apps.nested.handlers.hello", "queue": "plain"},
    },
}

if os.environ.get("TASKKIT_TEST_HANG_AT_EXIT"):  # the exit deadline's test: an exit that hangs
    import atexit
    import time

    atexit.register(time.sleep, float(os.environ["TASKKIT_TEST_HANG_AT_EXIT"]))
if os.environ.get("TASKKIT_TEST_WORKER_LOST_AFTER"):  # the worker-kill tests' subprocesses
    TASKKIT["WORKER_LOST_AFTER"] = float(os.environ["TASKKIT_TEST_WORKER_LOST_AFTER"])
if os.environ.get("TASKKIT_TEST_TRACK"):  # the fault tests' subprocesses: another track level
    TASKKIT["TRACK"] = os.environ["TASKKIT_TEST_TRACK"]

if os.environ.get("TASKKIT_TEST_PERIODIC"):  # the Beat tests' subprocesses: periodic tasks on
    TASKKIT["TASKS"]["periodic:second"] = {  # type: ignore[index]
        "handler": "tests.apps.nested.handlers.hello",
        "frequency": 1,
    }
    TASKKIT["SCHEDULE"] = {"* * * * *": ["echo:payload"]}
