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
from urllib.parse import quote, urlsplit, urlunsplit

from kombu import Connection

from ..conf import settings

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
    found = api_base(connection)
    if found is None:
        return set()
    base, user, password = found
    vhost = connection.virtual_host or "/"
    request = urllib.request.Request(
        f"{base}/api/queues/{quote(vhost, safe='')}?columns=name,auto_delete,exclusive",
        headers={
            "Authorization": "Basic "
            + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            queues = json.load(response)
        return {
            str(queue["name"])
            for queue in queues
            if not queue.get("auto_delete") and not queue.get("exclusive")
        }
    except (OSError, ValueError, TypeError, KeyError) as exc:  # URLError and timeouts are OSError
        # the address only: the credentials never reach a log
        logger.debug("RabbitMQ's management API at %s did not answer: %s", base, exc)
        return set()
