"""RabbitMQ connections cut again and again while 2,000 runs are enqueued: none is lost.

The publisher reaches a private vhost through a proxy that resets every live
connection several times during the enqueues, and refuses new ones for a while
once. A ledger keeps every run id whose enqueue returned; a worker on the vhost
runs the queue, every run counting itself (``echo:count``). Each enqueue that
returned must run (at least once: a run whose confirmation was cut off is sent
again, and may run twice); the others raised ``BrokerUnavailable``.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import taskkit
from tests.integration.conftest import Broker, current, make_app, start_worker, stop

from .conftest import counted, forget
from .proxy import Proxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.reliability]
RUNS = 2_000
CUTS = (200, 500, 800, 1100, 1400, 1700)  # after how many enqueues the connections are cut
DOWN_AT = 1100  # that cut also refuses new connections for a while: enqueues raise
DOWN_FOR = 1.5  # seconds, longer than Celery's publish retries (0.6 s)
TIMEOUT = 40


def test_cut_connections_while_enqueueing_lose_nothing(
    rabbitmq_vhost: str, rabbitmq_proxy: Proxy
) -> None:
    key = f"counts:{uuid.uuid4()}"
    app = make_app(
        "reliability-cut", f"amqp://guest:guest@127.0.0.1:{rabbitmq_proxy.port}/{rabbitmq_vhost}"
    )
    direct = f"amqp://guest:guest@127.0.0.1:5672/{rabbitmq_vhost}"
    worker = start_worker(Broker("rabbitmq", direct, {}, app), "cut")
    sent: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()
    cuts: list[int] = []

    def cutter() -> None:
        for at in CUTS:
            while len(sent) + len(errors) < at:
                if done.wait(0.001):
                    return
            if at == DOWN_AT:
                rabbitmq_proxy.down()
            cuts.append(rabbitmq_proxy.cut())
            if at == DOWN_AT:
                time.sleep(DOWN_FOR)
                rabbitmq_proxy.up()

    thread = threading.Thread(target=cutter, daemon=True)
    started = time.monotonic()
    try:
        with current(app):
            thread.start()
            for i in range(RUNS):
                try:
                    sent.append(taskkit.enqueue("echo:count", {"key": key, "i": i}).id)
                except Exception as exc:  # anything but BrokerUnavailable fails below
                    errors.append(exc)
            done.set()
            thread.join(10)
        enqueueing = time.monotonic() - started
        ran = counted(key, len(sent), TIMEOUT)
    finally:
        stop(worker)
        forget(key)
        app.close()
    lost = set(sent) - set(ran)
    figures = (
        f"enqueued {len(sent)}, raised {len(errors)}, ran {len(set(ran))}, lost {len(lost)}, "
        f"duplicated {len(ran) - len(set(ran))}; cuts {cuts} (connections reset each), "
        f"enqueues took {enqueueing:.1f} s"
    )
    print(figures)
    assert len(cuts) == len(CUTS), f"not every cut happened: {figures}"
    assert errors, f"the refused connections were not seen: the test proves less: {figures}"
    assert all(isinstance(exc, taskkit.BrokerUnavailable) for exc in errors), {
        type(exc).__name__ for exc in errors
    }
    assert not lost, f"{len(lost)} enqueues returned but never ran: {figures}"
