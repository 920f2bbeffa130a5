"""System checks: every bad setting or broken task is reported with an id.

======== ==========================================================
id       meaning
======== ==========================================================
E001     ``settings.TASKKIT`` is not a dict, or has an unknown key
E002     two tasks in different modules have one name
E003     a tasks module raised while being imported
E004     one module defines several tasks without their own names
E005     a ``TASKKIT["TASKS"]`` entry is malformed
E006     a ``TASKKIT["SCHEDULE"]`` entry has a bad cron or names no task
E007     the Celery app chooses or accepts pickle
E010     ``TASKKIT["TASKS_MODULE"]`` is not a module name
E011     ``TASKKIT["TASKS"]`` is not a dict
E012     ``TASKKIT["MAX_PAYLOAD_BYTES"]`` is not a positive integer
E013     ``TASKKIT["TRACK"]`` is not ``all``, ``runs`` or ``failures``
E014     ``TASKKIT["OUTBOX_AFTER"]`` is not positive seconds
E015     ``TASKKIT["WORKER_LOST_AFTER"]`` is not positive seconds
E016     ``TASKKIT["LOCK_CACHE"]`` names no cache of ``CACHES``
E017     ``TASKKIT["API_TOKEN"]`` is not a string of 32 characters or more
E018     ``TASKKIT["RABBITMQ_MANAGEMENT_URL"]`` is not an http(s) URL, ``''`` or None
E019     ``TASKKIT["HEALTH_PUBLIC"]`` is not ``True`` or ``False``
E020     ``TASKKIT["METRICS_PUBLIC"]`` is not ``True`` or ``False``
E030     a ``django.tasks`` backend's ``QUEUES`` names a queue against the queue rule
E031     a Celery ``task_routes`` or ``task_queues`` queue is against the queue rule
E032     a ``CeleryBackend`` is in ``settings.TASKS`` but ``taskkit`` is not installed
W001     a ``TASKKIT["TASKS"]`` handler cannot be imported
W002     an idempotent task may outlast Redis' ``visibility_timeout``
W003     with ``DEBUG`` off: the broker is reached over the network without TLS
W004     with ``DEBUG`` off: the broker is the embedded (development) one
======== ==========================================================

E030 and E032 are the ``CeleryBackend``'s own ``check()``, which Django's ``django.tasks``
check runs: E032 must be found where this module, registered by taskkit's app, is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from celery import current_app
from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning, register

from . import registry
from .bridge.work.register import celery_time_limit
from .conf import DEFAULTS, settings
from .definition import Track
from .definition.cron import normalize_cron
from .definition.names import validate_queue_name
from .registry.discovery import module_path

TAG = "taskkit"
#: The shortest bearer token the HTTP API takes: guessing it must be hopeless.
MIN_TOKEN = 32


def _positive_seconds(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 < value < math.inf


def _http_url_or_off(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and (value == "" or urlsplit(value).scheme in {"http", "https"})
    )


#: One check per setting, each with its own id so that it can be silenced alone:
#: (key, id, whether a value is good, the error (``{value}`` is the value), a hint).
SETTING_CHECKS: tuple[tuple[str, str, Callable[[Any], bool], str, str | None], ...] = (
    (
        "TASKS_MODULE",
        "taskkit.E010",
        lambda value: isinstance(value, str) and value.isidentifier(),
        "TASKKIT['TASKS_MODULE'] must be a module name.",
        "The name of the package discovered in each app, 'tasks' by default.",
    ),
    (
        "TASKS",
        "taskkit.E011",
        lambda value: isinstance(value, Mapping),
        "TASKKIT['TASKS'] must be a dict.",
        "Map task names to {'handler': 'dotted.path', ...}.",
    ),
    (
        "MAX_PAYLOAD_BYTES",
        "taskkit.E012",
        lambda value: not isinstance(value, bool) and isinstance(value, int) and value > 0,
        "TASKKIT['MAX_PAYLOAD_BYTES'] must be a positive integer.",
        None,
    ),
    (
        "TRACK",
        "taskkit.E013",
        lambda value: value in {level.value for level in Track},
        "TASKKIT['TRACK'] must be 'all', 'runs' or 'failures'.",
        None,
    ),
    (
        "OUTBOX_AFTER",
        "taskkit.E014",
        _positive_seconds,
        "TASKKIT['OUTBOX_AFTER'] must be positive seconds.",
        None,
    ),
    (
        "WORKER_LOST_AFTER",
        "taskkit.E015",
        _positive_seconds,
        "TASKKIT['WORKER_LOST_AFTER'] must be positive seconds.",
        None,
    ),
    (
        "LOCK_CACHE",
        "taskkit.E016",
        lambda value: value is None or value in getattr(django_settings, "CACHES", {}),
        "TASKKIT['LOCK_CACHE'] names no cache in CACHES: {value!r}.",
        "Name a cache of settings.CACHES, or leave it unset to keep locks in the database.",
    ),
    (
        "API_TOKEN",
        "taskkit.E017",
        lambda value: value is None or (isinstance(value, str) and len(value) >= MIN_TOKEN),
        f"TASKKIT['API_TOKEN'] must be a string of at least {MIN_TOKEN} characters.",
        "Generate one: python -c 'import secrets; print(secrets.token_urlsafe())'",
    ),
    (
        "RABBITMQ_MANAGEMENT_URL",
        "taskkit.E018",
        _http_url_or_off,
        "TASKKIT['RABBITMQ_MANAGEMENT_URL'] must be an http(s) URL, '' or None.",
        None,
    ),
    (
        "HEALTH_PUBLIC",
        "taskkit.E019",
        lambda value: isinstance(value, bool),
        "TASKKIT['HEALTH_PUBLIC'] must be True or False.",
        None,
    ),
    (
        "METRICS_PUBLIC",
        "taskkit.E020",
        lambda value: isinstance(value, bool),
        "TASKKIT['METRICS_PUBLIC'] must be True or False.",
        None,
    ),
)


def _settings_errors() -> list[CheckMessage]:
    raw = getattr(django_settings, "TASKKIT", {})
    if not isinstance(raw, Mapping):
        return [Error("settings.TASKKIT must be a dict.", id="taskkit.E001")]
    errors: list[CheckMessage] = [
        Error(
            f"settings.TASKKIT has an unknown key {key!r}.",
            hint="Known keys: " + ", ".join(sorted(DEFAULTS)),
            id="taskkit.E001",
        )
        for key in sorted(set(raw) - set(DEFAULTS))
    ]
    for key, check_id, good, message, hint in SETTING_CHECKS:
        value = raw.get(key, DEFAULTS.get(key))
        if not good(value):
            errors.append(Error(message.format(value=value), hint=hint, id=check_id))
    return errors


def _registry_errors() -> list[CheckMessage]:
    current = registry.current()
    messages: list[CheckMessage] = []
    for conflict in current.conflicts:
        if len(set(conflict.modules)) == 1:
            messages.append(
                Error(
                    f"Module {conflict.modules[0]!r} ({module_path(conflict.modules[0])}) defines "
                    f"{len(conflict.modules)} tasks named {conflict.name!r}.",
                    hint="Give each task in the module its own name: @task(name='…').",
                    id="taskkit.E004",
                )
            )
            continue
        files = ", ".join(f"{m} ({module_path(m)})" for m in dict.fromkeys(conflict.modules))
        messages.append(
            Error(
                f"Task name {conflict.name!r} is defined more than once: {files}.",
                hint="Rename all but one of them with @task(name='…').",
                id="taskkit.E002",
            )
        )
    for problem in current.import_problems:
        messages.append(
            Error(
                f"Tasks module {problem.module!r} ({problem.path}) could not be imported: "
                f"{problem.error}",
                hint=problem.traceback.rstrip().rsplit("\n", 3)[-1],
                id="taskkit.E003",
            )
        )
    for bad in current.settings_problems:
        messages.append(Error(bad.error, id="taskkit.E005"))
    messages.extend(_schedule_errors(current))
    for task in current:
        if task.handler is None:
            messages.append(
                Warning(
                    f"Task {task.name!r} from TASKKIT['TASKS'] has no handler: "
                    f"{task.missing_reason}",
                    hint="Running it raises TaskNotImplemented until the dotted path imports.",
                    id="taskkit.W001",
                )
            )
    return messages


def _schedule_errors(current: registry.TaskRegistry) -> list[CheckMessage]:
    schedule = settings.raw.get("SCHEDULE", {})
    if not isinstance(schedule, Mapping):
        return [
            Error("TASKKIT['SCHEDULE'] must be a dict of cron -> task names.", id="taskkit.E006")
        ]
    errors: list[CheckMessage] = []
    for cron, names in schedule.items():
        try:
            normalize_cron(cron)
        except ValueError as exc:
            errors.append(Error(f"TASKKIT['SCHEDULE'][{cron!r}]: {exc}", id="taskkit.E006"))
        listed = [names] if isinstance(names, str) else names
        if not isinstance(listed, list | tuple):
            errors.append(
                Error(
                    f"TASKKIT['SCHEDULE'][{cron!r}] must be a task name or a list of names.",
                    id="taskkit.E006",
                )
            )
            continue
        for name in listed:
            if name not in current:
                errors.append(
                    Error(
                        f"TASKKIT['SCHEDULE'][{cron!r}] names no task: {name!r}.", id="taskkit.E006"
                    )
                )
    return errors


#: Content types whose loading runs code: a message on the broker would run it on workers.
UNSAFE_CONTENT = frozenset({"pickle", "application/x-python-serialize"})
#: The Celery settings that choose or accept serialisers.
SERIALIZER_SETTINGS = (
    "task_serializer",
    "result_serializer",
    "accept_content",
    "result_accept_content",
)


def _serializer_errors() -> list[CheckMessage]:
    """taskkit sends JSON only; a Celery app that accepts pickle lets the broker run code."""
    errors: list[CheckMessage] = []
    for key in SERIALIZER_SETTINGS:
        value = current_app.conf.get(key)
        values = [value] if isinstance(value, str) else list(value or ())
        unsafe = sorted(UNSAFE_CONTENT & {str(item) for item in values})
        if unsafe:
            errors.append(
                Error(
                    f"Celery's {key} allows {', '.join(unsafe)}: anyone who can write to the "
                    "broker could run code on every worker.",
                    hint=f"taskkit's messages are JSON: set CELERY_{key.upper()} to JSON only.",
                    id="taskkit.E007",
                )
            )
    return errors


#: kombu's Redis default: an unacknowledged message goes back to its queue after this long.
REDIS_VISIBILITY_TIMEOUT = 3600.0
#: Hosts that do not leave the machine.
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _celery_queue_errors() -> list[CheckMessage]:
    """The queues Celery's settings name (default, queues, routes) follow the queue rule."""
    conf = current_app.conf
    named = [("task_default_queue", conf.task_default_queue)]
    named += [("task_queues", getattr(queue, "name", queue)) for queue in conf.task_queues or ()]
    routes = conf.task_routes
    if isinstance(routes, Mapping):
        named += [
            (f"task_routes[{pattern!r}]", route["queue"])
            for pattern, route in routes.items()
            if isinstance(route, Mapping) and isinstance(route.get("queue"), str)
        ]
    errors: list[CheckMessage] = []
    for where, name in named:
        try:
            validate_queue_name(name)
        except ValueError as exc:
            errors.append(
                Error(
                    f"Celery's {where}: {exc}.",
                    hint="Rename the queue (see 'Queue names' in taskkit's docs).",
                    id="taskkit.E031",
                )
            )
    return errors


def _broker_urls() -> list[str]:
    """The broker URLs the project's Celery app sends to (a failover list gives several)."""
    conf = current_app.conf
    url = conf.broker_write_url or conf.broker_url or ""
    return [part for part in str(url).split(";") if part.strip()] if isinstance(url, str) else []


def _redelivery_warnings() -> list[CheckMessage]:
    """An ``acks_late`` run that outlives Redis' visibility timeout is handed out twice."""
    urls = _broker_urls()
    if not urls or not all(urlsplit(url).scheme in ("redis", "rediss") for url in urls):
        return []
    options = current_app.conf.broker_transport_options or {}
    visibility = float(options.get("visibility_timeout", REDIS_VISIBILITY_TIMEOUT))
    warnings: list[CheckMessage] = []
    for task in registry.current():
        timeout = task.meta.timeout
        if not task.meta.idempotent:
            continue
        limit = celery_time_limit(timeout.total_seconds()) if timeout else None
        if limit is None or limit >= visibility:
            warnings.append(
                Warning(
                    f"Task {task.name!r} is idempotent (acknowledged when done) and may run "
                    + (f"for up to {limit:.0f} s" if limit else "without a time limit")
                    + f", but Redis gives an unacknowledged message to another worker after "
                    f"{visibility:.0f} s (visibility_timeout): it would run twice at once.",
                    hint="Give the task a timeout, or set CELERY_BROKER_TRANSPORT_OPTIONS"
                    "['visibility_timeout'] above the longest run of an idempotent task.",
                    id="taskkit.W002",
                )
            )
    return warnings


def _production_broker_warnings() -> list[CheckMessage]:
    """With ``DEBUG`` off: a development broker, or broker traffic in clear over a network."""
    if django_settings.DEBUG:
        return []
    conf = current_app.conf
    warnings: list[CheckMessage] = []
    if conf.broker_transport == "taskkit.embedded:Transport" or any(
        urlsplit(url).scheme == "filesystem" for url in _broker_urls()
    ):
        warnings.append(
            Warning(
                "The broker is the embedded one (files in the project folder): it polls, "
                "does not acknowledge, and serves one machine only.",
                hint="Use Redis or RabbitMQ in production (see 'Workers and brokers').",
                id="taskkit.W004",
            )
        )
    for url in _broker_urls():
        parts = urlsplit(url)
        plain = parts.scheme in ("redis", "amqp", "pyamqp") and not conf.broker_use_ssl
        if plain and (parts.hostname or "localhost") not in LOOPBACK:
            warnings.append(
                Warning(
                    f"The broker at {parts.hostname} is reached without TLS: payloads and "
                    "the broker's password cross the network in clear.",
                    hint="Use rediss:// or amqps:// (or CELERY_BROKER_USE_SSL), or silence "
                    "taskkit.W003 if that network is private.",
                    id="taskkit.W003",
                )
            )
    return warnings


@register(TAG)
def check_taskkit(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Report malformed settings, unsafe serialisers and every problem found in the registry."""
    return (
        _settings_errors()
        + _serializer_errors()
        + _celery_queue_errors()
        + _registry_errors()
        + _redelivery_warnings()
        + _production_broker_warnings()
    )
