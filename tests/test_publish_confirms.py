"""Publisher confirms on RabbitMQ: taskkit turns them on unless the project decided."""

from __future__ import annotations

import pytest

from taskkit import BrokerUnavailable
from taskkit.bridge.send.publish import CONFIRM_TIMEOUT, confirm_publishes, confirming
from tests.integration.conftest import make_app

AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def test_an_amqp_app_gets_publisher_confirms() -> None:
    app = make_app("confirms", AMQP, broker_transport_options={"max_retries": 2})
    confirm_publishes(app)
    assert app.conf.broker_transport_options == {"max_retries": 2, "confirm_publish": True}
    with app.connection_for_write() as connection:  # not connected: the options only
        assert (connection.transport_options or {}).get("confirm_publish") is True
    app.close()


def test_the_projects_choice_and_other_brokers_are_left_alone() -> None:
    chosen = make_app("chosen", AMQP, broker_transport_options={"confirm_publish": False})
    redis = make_app("redis", "redis://127.0.0.1:6379/15")
    for app in (chosen, redis):
        before = dict(app.conf.broker_transport_options or {})
        confirm_publishes(app)
        assert dict(app.conf.broker_transport_options or {}) == before
        app.close()


def test_a_confirmed_publish_waits_a_while_and_is_not_sent_again_after_it() -> None:
    app = make_app("confirms", AMQP, task_publish_retry_policy={"max_retries": 5})
    confirm_publishes(app)
    options = confirming(app)
    assert options["confirm_timeout"] == CONFIRM_TIMEOUT
    policy = options["retry_policy"]
    assert policy["max_retries"] == 5  # the project's policy, for the other errors
    with pytest.raises(BrokerUnavailable, match="did not acknowledge the message within"):
        policy["errback"](TimeoutError("timed out"), 0)
    assert policy["errback"](ConnectionResetError("reset"), 0) is None  # retried as before
    app.close()
    redis = make_app("redis", "redis://127.0.0.1:6379/15")
    confirm_publishes(redis)
    assert confirming(redis) == {}
    redis.close()
