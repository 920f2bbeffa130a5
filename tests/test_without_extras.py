"""taskkit with none of its extras: ``pip install django-taskkit`` and the embedded broker.

The Redis extra brings ``redis`` and ``packaging`` (kombu's Redis transport needs
both). A project without them once failed at ``manage.py check``: the app
imported kombu's Redis transport at start, and the queue views the ``redis``
package. Here the demo project runs with both made unimportable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .test_testproject import PROJECT, demo_env

#: Made unimportable (as if not installed) in the subprocesses.
ABSENT = ("redis", "packaging")

#: The modules that need the Redis extra, imported only when a Redis broker is used.
NEED_REDIS = {
    "taskkit.redis_transport",
    "taskkit.queues.brokers.redis",
    "taskkit.queues.brokers.redis_link",
}

PRELUDE = f"import sys; sys.modules.update(dict.fromkeys({ABSENT!r}))\n"


def python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + code],
        cwd=PROJECT,
        env={**demo_env(tmp_path), "DJANGO_SETTINGS_MODULE": "testproject.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def manage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"import runpy; sys.argv = ['manage.py', *{list(args)!r}]\n"
    return python(code + "runpy.run_path('manage.py', run_name='__main__')", tmp_path)


def test_the_demo_runs_without_the_redis_extra(tmp_path: Path) -> None:
    for args in (["check"], ["migrate", "-v", "0"]):
        done = manage(tmp_path, *args)
        assert done.returncode == 0, done.stderr
    ran = manage(tmp_path, "runtask", "cms:ping", "--json")
    assert json.loads(ran.stdout) == "pong", ran.stderr
    sent = manage(tmp_path, "runtask", "cms:ping", "--enqueue", "--json")
    run_id = json.loads(sent.stdout)["id"]
    listed = manage(tmp_path, "taskqueue", "list", "default", "--json")
    assert run_id in listed.stdout, listed.stderr


def test_only_the_redis_modules_need_the_redis_extra(tmp_path: Path) -> None:
    done = python(
        "import django, importlib, pkgutil, taskkit\n"
        "django.setup()\n"
        "for module in pkgutil.walk_packages(taskkit.__path__, 'taskkit.'):\n"
        "    try:\n"
        "        importlib.import_module(module.name)\n"
        "    except ImportError:\n"
        "        print(module.name)\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == NEED_REDIS
