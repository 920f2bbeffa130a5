"""Settings of the soak (``bench/soak.py``): the test settings plus the soak's own tasks.

The database, broker and counting Redis come from the environment the soak sets
(``TASKKIT_TEST_DATABASE=postgres``, ``TASKKIT_TEST_PG_NAME``,
``TASKKIT_TEST_BROKER``, ``TASKKIT_SOAK_COUNTS``).
"""

from typing import Any, cast

from bench.soak_tasks import DELAYED, NORMAL, PERIODIC_MINUTE, PERIODIC_SECOND, PROBE
from tests import settings as _base
from tests.settings import *  # noqa: F403

_HANDLER = "bench.soak_tasks.record"

TASKKIT = {
    **_base.TASKKIT,
    "TASKS": {
        **cast(dict[str, Any], _base.TASKKIT["TASKS"]),
        **{name: {"handler": _HANDLER} for name in (NORMAL, DELAYED, PROBE)},
        PERIODIC_SECOND: {"handler": _HANDLER, "frequency": 1},
        PERIODIC_MINUTE: {"handler": _HANDLER},
    },
    "SCHEDULE": {"* * * * *": [PERIODIC_MINUTE]},
}
