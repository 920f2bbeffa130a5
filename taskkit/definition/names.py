"""Task names: how a module path becomes ``db:migrate``, and which names are valid.

Names end up in URLs (``POST /_tasks/<name>``), Celery task names and shell
commands, so they are kept to a safe alphabet.
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
