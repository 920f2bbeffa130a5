"""A run that is a step of a Celery canvas: its previous result, and what comes after it.

Celery puts the previous step's result before a chained message's arguments;
a taskkit message carries only keyword arguments, so a single positional
argument beside them is that result. What follows the step (the rest of the
chain, linked callbacks, the chord it belongs to) travels in the request, and
Celery sends it when the task body returns. A run that did not finish now (it
was skipped, waits for its lock, or its retry is scheduled) must not let Celery
go on with a result it does not have: it ends with :class:`~celery.exceptions.Ignore`
(skipped) or Celery's ``Retry`` (see :mod:`.run`), after which Celery sends
nothing, and its row keeps the continuation, so the run sent again later goes on
instead.
"""

from __future__ import annotations

from typing import Any

from celery import Task as CeleryTask

#: The request attributes that say what Celery sends after a step, and the
#: ``apply_async`` options that send them again with the step.
CONTINUATION = {
    "chain": "chain",
    "callbacks": "link",
    "errbacks": "link_error",
    "chord": "chord",
    "group": "group_id",
    "group_index": "group_index",
    "root_id": "root_id",
    "parent_id": "parent_id",
}
#: Of those, the ones that make Celery send something after the step succeeds.
GOES_ON = ("chain", "callbacks", "chord")


def split_previous(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The message's own positional arguments, and the previous result (a 1-tuple, or empty)."""
    if len(args) == 1 and "payload" in kwargs and isinstance(kwargs.get("context"), dict):
        return (), args
    return args, ()


def continuation(ctask: CeleryTask[Any, Any], previous: tuple[Any, ...]) -> dict[str, Any] | None:
    """What a stored run needs to be sent again as this step: the previous result and
    the options of what follows it; ``None`` for a run that is no step of a canvas."""
    request = ctask.request
    if not previous and not any(getattr(request, name, None) for name in GOES_ON):
        return None
    options = {
        option: value
        for name, option in CONTINUATION.items()
        if (value := getattr(request, name, None)) is not None
    }
    return {"args": list(previous), "options": options}
