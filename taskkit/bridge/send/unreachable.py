"""Telling a broker that cannot be reached (or refuses us) from any other error.

kombu raises its ``OperationalError`` for most connection failures, but some
transports let their own through: each lists them in ``connection_errors``,
and py-amqp raises ``AccessRefused`` (AMQP's reply code 403, a channel error by
its class) for a wrong password or a virtual host the user may not use.
"""

from __future__ import annotations

from celery import current_app
from kombu.exceptions import OperationalError

#: AMQP's reply code for a login or a permission the broker refused.
ACCESS_REFUSED = 403


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the project's broker cannot be reached or refused the connection.

    Asked only once something has failed, so a working enqueue pays nothing for it.
    """
    if isinstance(exc, OperationalError) or getattr(exc, "reply_code", None) == ACCESS_REFUSED:
        return True
    connection = current_app.connection_for_write()
    try:
        return isinstance(exc, connection.connection_errors)
    finally:
        connection.release()
