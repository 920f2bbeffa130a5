"""The layout the design page describes: the bridge's two sides, and data flowing down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "taskkit"


def imported(path: Path) -> set[str]:
    """The taskkit modules ``path`` imports, as absolute dotted names (lazy imports too)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found |= {target} | {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("taskkit")}


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize(
    ("side", "other"),
    [("bridge/send", "taskkit.bridge.work"), ("bridge/work", "taskkit.bridge.send")],
)
def test_the_two_sides_of_the_bridge_never_import_each_other(side: str, other: str) -> None:
    crossing = {
        str(path.relative_to(PACKAGE)): sorted(n for n in imported(path) if n.startswith(other))
        for path in modules(side)
    }
    assert {path: names for path, names in crossing.items() if names} == {}


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("bridge", ("taskkit.queues", "taskkit.scheduling", "taskkit.admin", "taskkit.api")),
        ("scheduling", ("taskkit.queues", "taskkit.admin", "taskkit.api")),
        ("registry", ("taskkit.bridge", "taskkit.queues", "taskkit.scheduling")),
        ("runner", ("taskkit.bridge", "taskkit.queues", "taskkit.scheduling")),
    ],
)
def test_a_layer_imports_none_above_it(lower: str, upper: tuple[str, ...]) -> None:
    upward = {
        str(path.relative_to(PACKAGE)): sorted(n for n in imported(path) if n.startswith(upper))
        for path in modules(lower)
    }
    assert {path: names for path, names in upward.items() if names} == {}


def test_the_definition_layers_one_upward_import_is_lazy() -> None:
    """``Task.enqueue*``/``run_inline`` import the bridge and the runner inside the method."""
    tree = ast.parse((PACKAGE / "definition" / "task.py").read_text())
    top = {
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module in ("bridge", "runner")
    }
    inside = {
        node.module
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom)
    }
    assert top == set()
    assert {"bridge", "runner"} <= inside


@pytest.mark.parametrize("module", ["events.py", "signals.py"])
def test_the_run_events_import_no_layer_and_no_model(module: str) -> None:
    """The bridge and the scheduler call them; receivers import the signals before the models."""
    assert imported(PACKAGE / module) <= {"taskkit", "taskkit.signals"}


def test_every_install_line_names_the_distribution() -> None:
    """``taskkit`` on PyPI is another project: the docs, the README and the errors that say
    what to install all name the distribution ``pyproject.toml`` builds."""
    import re
    import tomllib

    root = PACKAGE.parent
    name = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    assert name == "django-taskkit"
    texts = [root / "README.md", *(root / "docs").rglob("*.rst"), *PACKAGE.rglob("*.py")]
    wrong = []
    for path in texts:
        for found in re.finditer(r"(?:pip install|install) \"?([\w-]*taskkit)\b", path.read_text()):
            if found.group(1) != name:
                wrong.append(f"{path.relative_to(root)}: {found.group(0)}")
        wrong += [
            f"{path.relative_to(root)}: {extra}"
            for extra in re.findall(r"(?<![\w-])taskkit\[\w+\]", path.read_text())
        ]
    assert not wrong


def test_the_package_data_takes_every_file_that_is_not_python() -> None:
    """A wheel holds the templates and static files the admin needs (it once held none)."""
    import tomllib

    root = PACKAGE.parent
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["taskkit"]
    taken = {path for pattern in patterns for path in PACKAGE.glob(pattern) if path.is_file()}
    data = {
        path
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert data - taken == set()
    assert any(path.suffix == ".html" for path in data)  # the check sees the templates


def test_the_screenshots_the_docs_show_are_made_by_the_browser_tests() -> None:
    """``make screenshots`` refreshes each picture from a browser test of that page."""
    import re

    root = PACKAGE.parent
    shown = set()
    for path in [root / "README.md", *(root / "docs").rglob("*.rst")]:
        shown |= set(re.findall(r"_static/screenshots/([\w-]+)\.png", path.read_text()))
    kept = {path.stem for path in (root / "docs" / "_static" / "screenshots").glob("*.png")}
    taken = set()
    for path in (root / "tests" / "browser").glob("test_*.py"):
        taken |= set(re.findall(r'screenshot\(page, "([\w-]+)"\)', path.read_text()))
    assert {"dashboard", "queue"} <= shown
    assert shown == kept  # every picture shown is kept, and none kept is unused
    assert kept <= taken
