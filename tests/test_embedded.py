"""The embedded broker tells a message put back from a first delivery, as Redis and
RabbitMQ do: the worker counts the restarts of a run that kills its process."""

from __future__ import annotations

from pathlib import Path

from tests.test_quarantine import embedded_broker


def test_a_message_put_back_is_delivered_again_as_redelivered(tmp_path: Path) -> None:
    with embedded_broker(tmp_path) as connection:
        queue = connection.SimpleQueue("put-back")
        try:
            queue.put({"n": 1})
            first = queue.get(timeout=1)
            assert not first.delivery_info.get("redelivered")
            first.reject(requeue=True)  # what Celery does when a pool process dies
            again = queue.get(timeout=1)
            assert again.delivery_info.get("redelivered") is True
            assert again.payload == {"n": 1}
            again.ack()
        finally:
            queue.close()
