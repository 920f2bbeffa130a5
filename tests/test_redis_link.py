"""Commands in flight on one Redis connection: replies read in the order sent, an error
answer kept to its own command, a broken connection failing what is still unread (on the
scratch Redis database, ``tests.conftest``)."""

from __future__ import annotations

import pytest
import redis

from taskkit.queues.brokers.redis_link import Link


def test_replies_come_in_the_order_the_commands_were_sent(scratch_redis: redis.Redis) -> None:
    with Link(scratch_redis) as link:
        pushed = link.send("RPUSH", "l", "a", "b", "c")
        first = link.send("LRANGE", "l", 0, -1)
        popped = link.send("RPOP", "l")
        second = link.send("LRANGE", "l", 0, -1)
        assert second.get() == [b"a", b"b"]  # reads the three before it on the way
        assert (pushed.get(), first.get(), popped.get()) == (3, [b"a", b"b", b"c"], b"c")


def test_an_error_answer_belongs_to_its_command_only(scratch_redis: redis.Redis) -> None:
    with Link(scratch_redis) as link:
        link.send("SET", "s", "text")
        wrong = link.send("LRANGE", "s", 0, -1)  # not a list
        after = link.send("GET", "s")
        assert after.get() == b"text"
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            wrong.get()


def test_leaving_it_reads_what_is_unread_and_gives_the_connection_back(
    scratch_redis: redis.Redis,
) -> None:
    pool = scratch_redis.connection_pool
    with Link(scratch_redis) as link:
        link.send("SET", "k", "v")
        reply = link.send("INCR", "n")
        connection = link.connection
    assert reply.get() == 1  # read on the way out: the command ran
    assert scratch_redis.get("k") == b"v"
    assert connection in pool._available_connections


def test_a_broken_connection_fails_every_reply_still_unread(scratch_redis: redis.Redis) -> None:
    link = Link(scratch_redis)
    first = link.send("PING")
    second = link.send("PING")
    link.connection._sock.close()  # the connection breaks with both replies unread
    with pytest.raises(redis.ConnectionError):
        first.get()
    with pytest.raises(redis.ConnectionError):
        second.get()
    assert link.connection is None  # dropped, not given back in that state
    link.close()
