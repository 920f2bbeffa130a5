import time
from typing import Any

from django.db import connection

from taskkit import TaskEvent, task

#: The database connections earlier runs in this process used (kept: ids are reused).
SEEN: list[Any] = []


@task(description="Says whether it runs on a connection an earlier run used", timeout=2)
def run(event: TaskEvent) -> dict[str, Any]:
    connection.ensure_connection()
    raw = connection.connection
    reused = any(raw is seen for seen in SEEN)
    SEEN.append(raw)
    if seconds := float(event.payload.get("seconds", 0)):
        # a query the soft time limit interrupts; SQLite's cannot be, so there it sleeps
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(%s)", [seconds])
        time.sleep(seconds)
    return {"reused": reused}
