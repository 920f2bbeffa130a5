"""taskkit's settings, read live from ``settings.TASKKIT``.

Nothing is cached, so ``override_settings`` works in tests, and every default
lives here, next to the line that reads it. :mod:`taskkit.checks` reports values
of the wrong type; this module only reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings

#: Every key ``settings.TASKKIT`` may hold, with its default.
DEFAULTS: Mapping[str, Any] = {
    "TASKS_MODULE": "tasks",
    "TASKS": {},
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    "TRACK": "runs",
    "LOCK_CACHE": None,
    "OUTBOX_AFTER": 10.0,
    "WORKER_LOST_AFTER": 60.0,
    "SCHEDULE": {},
    "API_TOKEN": None,
    "RABBITMQ_MANAGEMENT_URL": None,
    "HEALTH_PUBLIC": False,
    "METRICS_PUBLIC": False,
}


class Settings:
    """Attribute access to ``settings.TASKKIT`` with taskkit's defaults filled in."""

    @property
    def raw(self) -> Mapping[str, Any]:
        """The ``TASKKIT`` setting as the project wrote it (``{}`` when absent)."""
        value = getattr(django_settings, "TASKKIT", {})
        return value if isinstance(value, Mapping) else {}

    def _get(self, key: str) -> Any:
        return self.raw.get(key, DEFAULTS[key])

    @property
    def TASKS_MODULE(self) -> str:  # noqa: N802 - settings are upper case
        """Name of the module or package discovered in every installed app."""
        return str(self._get("TASKS_MODULE"))

    @property
    def TASKS(self) -> Mapping[str, Mapping[str, Any]]:  # noqa: N802
        """Tasks registered by dotted path; an entry wins over a discovered task."""
        value = self._get("TASKS")
        return value if isinstance(value, Mapping) else {}

    @property
    def MAX_PAYLOAD_BYTES(self) -> int:  # noqa: N802
        """Largest payload accepted, measured as compact JSON in UTF-8."""
        return int(self._get("MAX_PAYLOAD_BYTES"))

    @property
    def TRACK(self) -> str:  # noqa: N802
        """How much of a run is recorded when the task's meta does not say: all, runs, failures."""
        return str(self._get("TRACK"))

    @property
    def LOCK_CACHE(self) -> str | None:  # noqa: N802
        """A cache alias whose atomic ``add`` holds locks; ``None``: the database."""
        value = self._get("LOCK_CACHE")
        return str(value) if value else None

    @property
    def OUTBOX_AFTER(self) -> float:  # noqa: N802
        """Seconds a committed ``track="all"`` row may stay unsent before the scheduler sends it."""
        return float(self._get("OUTBOX_AFTER"))

    @property
    def WORKER_LOST_AFTER(self) -> float:  # noqa: N802
        """Seconds without a heartbeat after which a worker's ``running`` runs are lost."""
        return float(self._get("WORKER_LOST_AFTER"))

    @property
    def SCHEDULE(self) -> Mapping[str, str | list[str]]:  # noqa: N802
        """Nitro's ``scheduledTasks``: a cron expression -> a task name or a list of names."""
        value = self._get("SCHEDULE")
        return value if isinstance(value, Mapping) else {}

    @property
    def API_TOKEN(self) -> str | None:  # noqa: N802
        """The bearer token the HTTP API takes besides a staff session (``None``: sessions only)."""
        value = self._get("API_TOKEN")
        return value if isinstance(value, str) and value else None

    @property
    def RABBITMQ_MANAGEMENT_URL(self) -> str | None:  # noqa: N802
        """RabbitMQ's management API (``None``: the broker's host, port 15672; ``""``: off)."""
        value = self._get("RABBITMQ_MANAGEMENT_URL")
        return value if isinstance(value, str) else None

    @property
    def HEALTH_PUBLIC(self) -> bool:  # noqa: N802
        """Whether the HTTP API's health check answers callers without credentials too."""
        return self._get("HEALTH_PUBLIC") is True

    @property
    def METRICS_PUBLIC(self) -> bool:  # noqa: N802
        """Whether the HTTP API's Prometheus metrics answer callers without credentials too."""
        return self._get("METRICS_PUBLIC") is True


settings = Settings()
