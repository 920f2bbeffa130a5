from typing import Any

from taskkit import TaskEvent, task


@task
def run(event: TaskEvent) -> dict[str, Any]:
    """Returns the provided payload.

    The rest of the docstring is not part of the description.
    """
    return dict(event.payload)
