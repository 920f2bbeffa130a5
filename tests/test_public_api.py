"""The public API is what ``taskkit.__all__`` says; changing it is a deliberate act."""

import taskkit

PUBLIC = {
    "BrokerUnavailable",
    "InvalidPayload",
    "InvalidTaskDefinition",
    "Lock",
    "NotChainable",
    "PayloadNotJSON",
    "ResultNotSerializable",
    "RetryPolicy",
    "RunCancelled",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunTimeout",
    "Scope",
    "Source",
    "Task",
    "TaskContext",
    "TaskEvent",
    "TaskExited",
    "TaskMeta",
    "TaskNotFound",
    "TaskNotImplemented",
    "TaskNotPeriodic",
    "TaskkitError",
    "Track",
    "__version__",
    "all_tasks",
    "aenqueue",
    "aenqueue_at",
    "aenqueue_in",
    "aenqueue_many",
    "arun_task",
    "enqueue",
    "enqueue_at",
    "enqueue_in",
    "enqueue_many",
    "enqueue_recurrent",
    "get_run",
    "get_task",
    "remove_failed",
    "retry_failed",
    "run_task",
    "stop_recurrent",
    "sync_periodic",
    "task",
}


def test_all_is_pinned() -> None:
    assert set(taskkit.__all__) == PUBLIC


def test_every_public_name_exists_and_belongs_to_taskkit() -> None:
    for name in taskkit.__all__:
        value = getattr(taskkit, name)
        if name != "__version__":
            assert value.__module__.startswith("taskkit"), name


def test_every_public_error_derives_from_taskkit_error() -> None:
    errors = [
        value
        for value in (getattr(taskkit, n) for n in taskkit.__all__)
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    assert len(errors) == 15
    assert all(issubclass(e, taskkit.TaskkitError) for e in errors)
