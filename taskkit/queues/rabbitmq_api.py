"""The queues of a RabbitMQ virtual host, from RabbitMQ's management API.

AMQP can count a queue it is told the name of, but cannot list queues; the
management plugin's HTTP API can. It is asked only when it is reachable: with
no plugin, a wrong address or refused credentials, taskkit's own registry of
queues stands alone, as it does without this module.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from kombu import Connection

from ..conf import settings
from .brokers.base import BrokerMemory

logger = logging.getLogger("taskkit.queues")

#: Seconds the API may take: ``details()`` waits on it.
TIMEOUT = 1.0
#: Where the plugin listens unless told otherwise.
DEFAULT_PORT = 15672


def api_base(connection: Connection) -> tuple[str, str, str] | None:
    """The API's address without credentials, and the user and password to send.

    From the ``RABBITMQ_MANAGEMENT_URL`` setting; unset, the broker's host on
    port 15672 with the broker's credentials; ``""``: ``None``, never asked.
    """
    setting = settings.RABBITMQ_MANAGEMENT_URL
    if setting == "":
        return None
    if setting is None:
        host = connection.hostname or "localhost"
        return f"http://{host}:{DEFAULT_PORT}", connection.userid or "", connection.password or ""
    parts = urlsplit(setting)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    user = parts.username if parts.username is not None else (connection.userid or "")
    password = parts.password if parts.password is not None else (connection.password or "")
    return base, user, password


def queue_names(connection: Connection) -> set[str]:
    """The durable, shared queues of the connection's virtual host; empty if not reachable.

    Exclusive and auto-deleted queues belong to one connection (Celery's
    reply and event queues, a worker's broadcast queue) and are left out.
    """
    vhost = quote(connection.virtual_host or "/", safe="")
    queues = _get(connection, f"/api/queues/{vhost}?columns=name,auto_delete,exclusive")
    try:
        return {
            str(queue["name"])
            for queue in queues or ()
            if not queue.get("auto_delete") and not queue.get("exclusive")
        }
    except (AttributeError, TypeError, KeyError):
        return set()


def node_memory(connection: Connection) -> BrokerMemory | None:
    """The memory of the cluster's node nearest its limit, and any alarm on; ``None`` if the
    API does not answer. An alarm (memory or disk) blocks every publisher of the cluster."""
    nodes = _get(connection, "/api/nodes?columns=name,mem_used,mem_limit,mem_alarm,disk_free_alarm")
    try:
        found = [
            (int(node["mem_used"]), int(node["mem_limit"]), node) for node in nodes or () if node
        ]
    except (TypeError, KeyError, ValueError):
        return None
    if not found:
        return None
    used, limit, _ = max(found, key=lambda item: item[0] / item[1] if item[1] else 0)
    alarms = [
        f"{kind} alarm on {node.get('name')}"
        for _, _, node in found
        for kind, key in (("memory", "mem_alarm"), ("disk", "disk_free_alarm"))
        if node.get(key)
    ]
    return BrokerMemory(used=used, limit=limit, policy="block publishers", alarm=", ".join(alarms))


def _get(connection: Connection, path: str) -> Any:
    """The API's JSON answer at ``path``; ``None`` if it is not asked or does not answer."""
    found = api_base(connection)
    if found is None:
        return None
    base, user, password = found
    request = urllib.request.Request(
        base + path,
        headers={
            "Authorization": "Basic "
            + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.load(response)
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSError
        # the address only: the credentials never reach a log
        logger.debug("RabbitMQ's management API at %s did not answer: %s", base, exc)
        return None
