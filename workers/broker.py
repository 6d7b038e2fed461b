"""The broker, read the same way whichever it is (Redis or RabbitMQ): through kombu.

Queue depths come from a passive ``queue_declare`` (RabbitMQ's message count; on Redis,
kombu adds up the queue's priority lists), never from the broker's storage layout, so the
metrics, readiness and tests read what the workers consume.
"""

from __future__ import annotations

from typing import Any

from kombu import Connection

from breaker.connection import celery_ssl, celery_transport_options, celery_url
from workers.settings import Settings

# kombu's Redis transport keeps one list per priority step: 0 to 9, every level its own.
PRIORITY_STEPS = list(range(10))


def transport_options(s: Settings) -> dict[str, Any]:
    """kombu transport options for this broker (the Redis transport's; none for AMQP)."""
    if not s.broker_is_redis:
        return {}
    return {
        "visibility_timeout": s.visibility_timeout,
        # kombu scans for messages of vanished workers every interval x throttle seconds
        # (100 s by default); tie it to the visibility timeout instead.
        "unacked_restore_interval": max(1, min(10, s.visibility_timeout // 5)),
        "unacked_restore_throttle": 1,
        "priority_steps": PRIORITY_STEPS,
        **({"global_keyprefix": s.broker_keys} if s.broker_keys else {}),
    }


def connection(s: Settings, timeout: float = 5.0) -> Connection:
    """A kombu connection to the broker the workers use (not yet connected)."""
    options = {**transport_options(s), **celery_transport_options(s.broker)}
    return Connection(celery_url(s.broker), transport_options=options, connect_timeout=timeout,
                      ssl=celery_ssl(s.broker) or False)


def queue_depths(s: Settings, queues: list[str], timeout: float = 5.0) -> dict[str, int]:
    """Messages waiting in each queue (taken but unacknowledged ones not counted). A queue
    the broker does not know yet counts 0.

    Raises:
      the transport's connection errors when the broker does not answer.
    """
    depths: dict[str, int] = {}
    with connection(s, timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        channel = conn.channel()
        try:
            for queue in queues:
                depths[queue] = waiting(channel, queue, s.broker_is_redis, conn.channel_errors)
                if depths[queue] < 0:
                    depths[queue] = 0  # never declared
                    channel = _fresh(conn, channel)  # AMQP closes a channel on NOT_FOUND
        finally:
            _close(channel)
    return depths


def waiting(channel: Any, queue: str, redis_broker: bool, channel_errors: tuple[type[BaseException], ...]) -> int:
    """Messages waiting in ``queue`` on an open kombu channel; -1 when the broker does not
    know the queue (AMQP's NOT_FOUND, after which the channel is closed).

    On Redis, kombu's own size (LLEN of each priority list, with the transport's key
    prefix) rather than a passive declare: kombu checks a Redis queue's existence with an
    EXISTS that its ``global_keyprefix`` does not prefix, so with a broker key prefix every
    queue would look missing, and an empty one has no key at all anyway."""
    if redis_broker:
        return int(channel._size(queue))
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except channel_errors:
        return -1


def purge(s: Settings, queues: list[str]) -> None:
    """Drops every message waiting in ``queues`` (tests, drills)."""
    with connection(s) as conn:
        channel = conn.channel()
        try:
            for queue in queues:
                try:
                    channel.queue_purge(queue)
                except conn.channel_errors:
                    channel = _fresh(conn, channel)
        finally:
            _close(channel)


def _fresh(conn: Connection, channel: Any) -> Any:
    _close(channel)
    return conn.channel()


def _close(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # noqa: BLE001 - closing a channel the broker already closed
        pass
