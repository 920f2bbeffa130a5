"""taskkit's tables. ``TaskRun`` records runs: their payload, status, result and failure.

Unlike django-celery-results, the payload is stored as real JSON, so a failed run
can be retried with exactly what it was given.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.utils import timezone


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


#: A run in one of these states will not change any more.
FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


def storable(value: Any) -> Any:
    """``value`` as any database takes it: in its text (in JSON too), lone surrogates and NUL
    escaped."""
    if isinstance(value, str):
        return value.encode(errors="backslashreplace").decode().replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


class TaskRunQuerySet(models.QuerySet["TaskRun"]):
    """Runs by state, named once: ``TaskRun.objects.scheduled()``, ``.failed()``…"""

    def named(self, name: str) -> TaskRunQuerySet:
        """The runs of task ``name``. Outside text (a form, a query, a command line) is looked
        up as rows store it (:func:`storable`): text no database holds (NUL) finds none,
        where PostgreSQL would refuse the query."""
        return self.filter(name=storable(name))

    def on_queue(self, queue: str) -> TaskRunQuerySet:
        """The runs of ``queue``, looked up as :meth:`named` looks up a name."""
        return self.filter(queue=storable(queue))

    def scheduled(self) -> TaskRunQuerySet:
        """Delayed runs and retries waiting to be due (the scheduler promotes them)."""
        return self.filter(status=RunStatus.SCHEDULED)

    def queued(self) -> TaskRunQuerySet:
        """Runs sent (or about to be: an unsent outbox row) and not started yet."""
        return self.filter(status=RunStatus.QUEUED)

    def running(self) -> TaskRunQuerySet:
        return self.filter(status=RunStatus.RUNNING)

    def succeeded(self) -> TaskRunQuerySet:
        return self.filter(status=RunStatus.SUCCEEDED)

    def failed(self) -> TaskRunQuerySet:
        return self.filter(status=RunStatus.FAILED)

    def cancelled(self) -> TaskRunQuerySet:
        return self.filter(status=RunStatus.CANCELLED)

    def finished(self) -> TaskRunQuerySet:
        """Runs that will not change any more: succeeded, failed or cancelled."""
        return self.filter(status__in=FINISHED)

    def delayed_or_running(self) -> TaskRunQuerySet:
        """Scheduled or running: the runs of the table that ``find`` shows beside the queues."""
        return self.filter(status__in=(RunStatus.SCHEDULED, RunStatus.RUNNING))


class TaskRun(models.Model):
    """One run of a task: queued, delayed, running or finished."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    #: ``name`` and ``status`` lead the composite indexes below, which serve lookups by
    #: either alone: an index of their own would only cost every row written.
    name = models.CharField(max_length=200)
    queue = models.CharField(max_length=200, default="default")
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    attempt = models.PositiveIntegerField(default=1)
    #: How many times this attempt of an idempotent task was started again because the
    #: worker running it was lost (its process killed); see ``delivery.MAX_STARTS``.
    restarts = models.PositiveIntegerField(
        "restarts after a lost worker",
        default=0,
        db_default=0,
        help_text="Times this attempt started again after the worker running it was lost.",
    )
    source = models.CharField(max_length=16, default="worker")
    created_at = models.DateTimeField(default=timezone.now)
    #: When a delayed run or a retry is due; the scheduler promotes it then.
    scheduled_for = models.DateTimeField(null=True, blank=True)
    #: When the row was handed to the publisher; empty on a queued row = not sent (outbox).
    sent_at = models.DateTimeField(null=True, blank=True)
    #: The token of the promotion that claimed the row, so concurrent schedulers tell claims apart.
    claimed_by = models.CharField(max_length=64, blank=True)
    #: The Celery message priority the run is sent with (empty: the broker's default).
    priority = models.PositiveSmallIntegerField(null=True, blank=True)
    #: For ``scope="all"`` runs: the id the enqueue returned, shared by every worker's run.
    group_id = models.UUIDField(null=True, blank=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    progress_done = models.PositiveIntegerField(null=True, blank=True)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    #: Every failed attempt of this run: ``[{"attempt", "error", "finished_at"}, …]``.
    history = models.JSONField(default=list, blank=True)
    #: A step of a Celery canvas that failed or waited for its lock: the previous step's
    #: result and what follows it (``{"args": […], "options": {"chain": …}}``), so the
    #: step sent again goes on with the canvas.
    canvas = models.JSONField(null=True, blank=True)

    objects = TaskRunQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        indexes = (
            models.Index(fields=("status", "scheduled_for"), name="taskkit_run_due"),
            models.Index(fields=("name", "status"), name="taskkit_run_name_status"),
            models.Index(fields=("status", "sent_at"), name="taskkit_run_outbox"),
        )

    def __str__(self) -> str:
        return f"{self.name} [{self.status}] {self.id}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def as_dict(self) -> dict[str, Any]:
        """The run as plain JSON values."""
        return {
            "id": str(self.id),
            "name": self.name,
            "queue": self.queue,
            "payload": self.payload,
            "status": self.status,
            "attempt": self.attempt,
            "result": self.result,
            "error": self.error,
        }


class TaskLock(models.Model):
    """A held lock (``queue_lock``, ``job_lock``, ``single_instance``) and who holds it.

    The primary key is the lock's key, so taking a lock is one ``INSERT`` that
    fails for everyone but one holder. A lock past ``expires_at`` counts as free.
    """

    key = models.CharField(max_length=255, primary_key=True)
    owner = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.key} held by {self.owner} until {self.expires_at:%Y-%m-%d %H:%M:%S}"


class SchedulerLease(models.Model):
    """Which scheduler process leads: only the holder of an unexpired lease sends work."""

    name = models.CharField(max_length=100, primary_key=True)
    #: Empty once its holder released it: nobody leads until another takes it.
    holder = models.CharField(max_length=100)
    expires_at = models.DateTimeField()
    #: How many holders the lease has had, the first one counted: it grows each time a
    #: scheduler takes the lease from another (or after a release), never on a renewal.
    term = models.PositiveBigIntegerField(default=1, db_default=1)

    def __str__(self) -> str:
        return f"{self.name}: {self.holder} until {self.expires_at:%H:%M:%S}"


class KnownQueue(models.Model):
    """A queue an enqueue sent a run to by name (``queue=…``), so every process knows it.

    AMQP cannot list queues; ``taskqueue details`` walks these with the queues
    of the settings and the tasks' meta.
    """

    name = models.CharField(max_length=200, primary_key=True)
    added_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Cancellation(models.Model):
    """Runs a worker must skip: one run, or a rule over a queue's messages.

    Deleting from a queue the broker cannot edit (AMQP) records one; workers
    check them before every run, so a deleted run never runs, even after a
    worker restart (Celery's revoke list lives in memory only).
    """

    #: One run; or, when empty, the rule below.
    run_id = models.UUIDField(null=True, blank=True, db_index=True)
    queue = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=200, blank=True)
    #: SHA-256 of the canonical payload; empty: any payload.
    payload_key = models.CharField(max_length=64, blank=True)
    #: Only messages queued before this moment (the deletion's).
    before = models.DateTimeField(default=timezone.now)
    #: How many more runs to skip; empty: all that match.
    remaining = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    #: Kept until then: longer than any message waits in a healthy queue.
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        if self.run_id:
            return f"run {self.run_id}"
        return f"{self.name or 'any task'} in {self.queue or 'any queue'} before {self.before}"


class Dashboard(models.Model):
    """No table: it carries the permissions of the admin pages and the HTTP API.

    ``taskkit.view_dashboard`` lets staff see queues, tasks and runs;
    ``taskkit.manage_tasks`` lets them enqueue, retry, delete and purge.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = (
            ("view_dashboard", "Can view the task dashboard"),
            ("manage_tasks", "Can enqueue, retry, delete and purge tasks"),
        )
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"

    def __str__(self) -> str:
        return "taskkit dashboard"


#: How long the row of a lost worker is kept, so the workers lost lately can be listed.
LOST_KEPT = timedelta(days=1)


class WorkerHeartbeatQuerySet(models.QuerySet["WorkerHeartbeat"]):
    """Heartbeats as the sweep judges them, named once for every reader.

    ``cutoff`` is the time before which a heartbeat is too old: now minus
    ``WORKER_LOST_AFTER``.
    """

    def unswept(self) -> WorkerHeartbeatQuerySet:
        """Rows the sweep has not found lost: live workers, and lost ones not swept yet."""
        return self.filter(lost_at__isnull=True)

    def alive(self, cutoff: datetime) -> WorkerHeartbeatQuerySet:
        return self.unswept().filter(seen_at__gte=cutoff)

    def missing(self, cutoff: datetime) -> WorkerHeartbeatQuerySet:
        """Not seen since ``cutoff``: the next sweep finds them lost."""
        return self.unswept().filter(seen_at__lt=cutoff)

    def lost(self) -> WorkerHeartbeatQuerySet:
        """Workers the sweep found lost, kept for :data:`LOST_KEPT`."""
        return self.filter(lost_at__isnull=False)


class WorkerHeartbeat(models.Model):
    """A worker's last sign of life, so the runs of a worker that died outright are failed.

    Written by the worker's main process every quarter of ``WORKER_LOST_AFTER``
    (see :mod:`taskkit.bridge.work.heartbeat`), with what the worker is and how
    many runs it holds, so workers are listed without asking them; read by the
    leader Beat's sweep, which marks a lost worker's row ``lost_at`` and
    deletes it :data:`LOST_KEPT` later.
    """

    #: The Celery node name, as in ``TaskRun.worker``.
    name = models.CharField(max_length=255, primary_key=True)
    #: When this worker process started (by the worker's clock, as its runs' ``started_at``).
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    #: Which process writes the row (host, pid, a random token): another process under
    #: the same node name never refreshes it while it is fresh.
    process = models.CharField(max_length=255, blank=True, default="")
    #: The queues its consumer consumes (a list of names): when it started, and those a
    #: ``*`` worker took up since.
    queues = models.JSONField(default=list, db_default=[], blank=True)
    #: The size of its pool: how many runs it works at once (0: not told, an older worker).
    concurrency = models.PositiveIntegerField(default=0, db_default=0)
    #: Its pool's kind (``prefork``, ``threads``, ``solo``…).
    pool = models.CharField(max_length=100, blank=True, default="", db_default="")
    #: Runs in progress at its last heartbeat.
    active = models.PositiveIntegerField(default=0, db_default=0)
    #: Runs taken from the broker but not started (prefetched) at its last heartbeat.
    reserved = models.PositiveIntegerField(default=0, db_default=0)
    #: Of those, how many per queue: ``{"default": 7}``.
    reserved_queues = models.JSONField(default=dict, db_default={}, blank=True)
    celery_version = models.CharField(max_length=32, blank=True, default="", db_default="")
    taskkit_version = models.CharField(max_length=32, blank=True, default="", db_default="")
    #: When the sweep found the worker lost (empty: not found lost).
    lost_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = WorkerHeartbeatQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} seen {self.seen_at:%Y-%m-%d %H:%M:%S}"

    @property
    def host(self) -> str:
        """The host of the process that writes the row (from ``process``)."""
        return self.process.split(":")[0]

    @property
    def pid(self) -> int | None:
        """The pid of the process that writes the row (``None``: not told)."""
        parts = self.process.split(":")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
