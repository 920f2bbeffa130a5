"""``manage.py newtask db:cleanup --app shop``: write a task module from a template."""

from __future__ import annotations

import keyword
import string
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskkit.conf import settings

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "taskkit" / "task.py-tpl"


def module_parts(name: str) -> list[str]:
    """``db:cleanup`` -> ``["db", "cleanup"]``; every part must be a Python module name."""
    parts = name.split(":")
    for part in parts:
        if not part.isidentifier() or keyword.iskeyword(part) or not part.isascii():
            raise CommandError(
                f"{name!r}: {part!r} is not a valid module name. Use letters, digits and '_' "
                "with ':' between parts, for example db:cleanup."
            )
    return parts


class Command(BaseCommand):
    help = "Create a new task module in an app's tasks package."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Task name, for example db:cleanup.")
        parser.add_argument("--app", required=True, help="Label of the app to put it in.")
        parser.add_argument("--description", default="", help="One line saying what it does.")

    def handle(self, *args: Any, **options: Any) -> None:
        parts = module_parts(options["name"])
        try:
            app = apps.get_app_config(options["app"])
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        package = Path(app.path) / settings.TASKS_MODULE
        if package.with_suffix(".py").exists():
            raise CommandError(
                f"{app.label} keeps its tasks in {package.with_suffix('.py')}; "
                "turn it into a package to add task modules."
            )
        target = package.joinpath(*parts).with_suffix(".py")
        if target.exists():
            raise CommandError(f"{target} exists already; not overwriting it.")
        directory = package
        for part in [None, *parts[:-1]]:  # the package itself, then each sub-package
            directory = directory / part if part else directory
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "__init__.py").touch(exist_ok=True)
        description = options["description"] or f"Describe what {options['name']} does."
        source = string.Template(TEMPLATE.read_text()).substitute(
            name=options["name"], description=repr(description)
        )
        target.write_text(source)
        self.stdout.write(f"Created {target} (task {options['name']!r}).")
