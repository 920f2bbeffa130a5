"""Every exception class of the package is defined in ``taskkit.exceptions``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import taskkit
from taskkit import exceptions


def test_every_exception_class_lives_in_taskkit_exceptions() -> None:
    elsewhere = []
    for module in pkgutil.walk_packages(taskkit.__path__, "taskkit."):
        if ".migrations." in module.name:
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == loaded.__name__
                and value.__module__ != exceptions.__name__
            ):
                elsewhere.append(f"{module.name}.{name}")
    assert elsewhere == []


def test_each_derives_from_taskkit_error() -> None:
    classes = [
        value
        for value in vars(exceptions).values()
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert len(classes) > 10
    assert all(issubclass(cls, exceptions.TaskkitError) for cls in classes)
