"""Task and queue names: how a module path becomes ``db:migrate``, and which names are valid.

Names end up in URLs (``POST /_tasks/<name>``), Celery task names, broker keys,
file names and shell commands, so they are kept to a safe alphabet.
"""

from __future__ import annotations

import re

NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(?::[A-Za-z0-9_][A-Za-z0-9_.\-]*)*"
_NAME = re.compile(rf"^{NAME_PATTERN}$")
MAX_NAME_LENGTH = 200


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid task name, else raise ``ValueError`` saying why."""
    if not isinstance(name, str):
        raise ValueError(f"a task name is a string, not {type(name).__name__}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"task name is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME.match(name):
        raise ValueError(
            f"{name!r} is not a valid task name: use letters, digits, '_', '.', '-', "
            "with ':' between parts (for example 'db:migrate')"
        )
    return name


QUEUE_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.:@\-]*"
_QUEUE = re.compile(rf"^{QUEUE_PATTERN}$")
MAX_QUEUE_LENGTH = 200
#: Names of the brokers' and Celery's own: a queue so named would mix work with their
#: bookkeeping (kombu's Redis keys, Celery's remote control and events, RabbitMQ's own).
RESERVED_QUEUE_PREFIXES = (
    "_kombu.",
    "celeryev",
    "celery.pidbox",
    "amq.",
    "taskkit.broadcast",
    "taskkit.quarantine",
)
RESERVED_QUEUE_SUFFIXES = (".pidbox",)
RESERVED_QUEUES = frozenset({"unacked", "unacked_index", "unacked_mutex"})


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a valid queue name, else raise ``ValueError`` saying why.

    A queue name is 1 to 200 letters, digits, ``_``, ``.``, ``:``, ``@`` and
    ``-``, starting with a letter, digit or ``_``, and none of the brokers' or
    Celery's own names (``_kombu.*``, ``celeryev*``, ``*.pidbox``, ``amq.*``,
    ``unacked``…).
    """
    if not isinstance(name, str):
        raise ValueError(f"a queue name is a string, not {type(name).__name__}")
    if not name or len(name) > MAX_QUEUE_LENGTH:
        raise ValueError(f"a queue name has 1 to {MAX_QUEUE_LENGTH} characters")
    if not _QUEUE.match(name):
        raise ValueError(
            f"{name!r} is not a valid queue name: use letters, digits, '_', '.', ':', '@' "
            "and '-', starting with a letter, a digit or '_'"
        )
    lowered = name.lower()
    if (
        lowered in RESERVED_QUEUES
        or lowered.startswith(RESERVED_QUEUE_PREFIXES)
        or lowered.endswith(RESERVED_QUEUE_SUFFIXES)
    ):
        raise ValueError(f"{name!r} is a name the broker or Celery keeps for itself")
    return name


def derive_name(module: str, function: str, tasks_module: str, app_name: str | None) -> str:
    """Name a task after where it is defined.

    ``shop.tasks.db.migrate`` becomes ``db:migrate``. A task in the tasks module
    itself (``shop/tasks.py`` or ``shop/tasks/__init__.py``) is named after its
    function, and one outside any tasks module after its dotted path.
    """
    prefix = f"{app_name}.{tasks_module}" if app_name else None
    parts = module.split(".")
    if prefix is None and tasks_module in parts[1:]:
        index = parts.index(tasks_module, 1)
        prefix = ".".join(parts[: index + 1])
    if prefix is None or not (module == prefix or module.startswith(prefix + ".")):
        return f"{module}.{function}"
    rest = module[len(prefix) + 1 :]
    return rest.replace(".", ":") if rest else function
