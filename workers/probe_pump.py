"""Probe-only HALF_OPEN: a worker takes a job from a paused model queue only when it holds a
probe permit, and a probe's life is bounded by what the worker enforces.

While a model's breaker is HALF_OPEN its queue stays paused on every worker. The consumption
bootstep (workers.consumption) runs a :class:`ProbePump` instead: it asks the breaker for a
permit first, then takes one message from the paused queue and re-sends it, under the same
task id, to the model's probe queue (``<model>.probe``, consumed by every model worker and
never paused) with the permit's ticket in a message header. If the queue is empty, the
permit is given back at once (recorded as IGNORED: the record script deletes the permit and
counts nothing toward the verdict). So the fleet takes exactly
``permitted_calls_in_half_open`` jobs off the queue per HALF_OPEN epoch, cluster-wide (the
permits are handed out by one atomic script call), and the rest of the backlog waits.

A probe's message carries a hard time limit shorter than ``max_wait_in_half_open``: a probe
stuck in C code (deaf to SIGALRM) is killed by the pool before the breaker would reclaim
its permit, so no new probe can join a hung one. The worker's main process then records
the timeout on the probe's own permit (workers.request), never through a new admission.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from kombu import Queue

from breaker import BreakerPolicy, CallNotPermitted, Outcome, State, Ticket
from workers import runtime
from workers.broker import waiting
from workers.models import spec_for
from workers.settings import settings

log = logging.getLogger(__name__)

#: The message header that carries a pre-granted probe's ticket (JSON).
PROBE_HEADER = "fusebox_probe"

#: Seconds a worker waits before asking again for a permit in a HALF_OPEN epoch whose
#: permits were all out.
REFUSED_RETRY = 1.0


def probe_queue(model: str) -> str:
    """The queue pumped probes travel on: consumed by every worker of the model, never paused."""
    return f"{model}.probe"


def probe_time_limits(policy: BreakerPolicy, hard_time_limit: float) -> tuple[float, float]:
    """(hard, soft) time limits for a probe task, in seconds.

    The hard limit ends a probe before ``max_wait_in_half_open`` reclaims its permit, with a
    margin for the message's trip to a worker and the timeout's record: a tenth of the
    wait, at least a second. It is never longer than the worker's own hard limit, and never
    shorter than ``call_timeout`` (the policy guarantees the wait is longer than that).

    Parameters:
      policy: the breaker's effective policy.
      hard_time_limit: the worker's hard limit for model tasks.
    """
    margin = max(1.0, policy.max_wait_in_half_open / 10)
    hard = min(float(hard_time_limit), policy.max_wait_in_half_open - margin)
    hard = max(hard, min(policy.call_timeout + 0.5, policy.max_wait_in_half_open - 0.1))
    soft = max(hard - 1.0, hard * 0.9)
    return math.floor(hard * 10) / 10, math.floor(soft * 10) / 10


def ticket_from(headers: Any) -> Ticket | None:
    """The pre-granted probe ticket a message carries, or None.

    Parameters:
      headers: a task's ``request`` (Celery puts custom headers on it as attributes) or a
        mapping of message headers.
    """
    raw = headers.get(PROBE_HEADER) if isinstance(headers, dict) else getattr(headers, PROBE_HEADER, None)
    if not raw:
        return None
    try:
        return Ticket.model_validate_json(raw)
    except ValueError:
        log.warning("ignoring an unreadable probe ticket: %r", raw)
        return None


def give_back(model: str, ticket: Ticket) -> None:
    """Frees a probe permit without counting anything (IGNORED deletes the permit)."""
    try:
        runtime.breakers().get(model).record(ticket, Outcome.IGNORED, 0.0, wait=True)
    except Exception:  # noqa: BLE001 - at worst the permit lapses after max_wait_in_half_open
        log.warning("could not give back a probe permit of %s", model, exc_info=True)


class ProbePump:
    """Moves jobs from a paused model queue to its probe queue, one per probe permit.

    Runs on the worker's consumer loop (workers.consumption), so it keeps its own broker
    connection rather than sharing the consumer's.

    Parameters:
      app: the Celery app.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._conn: Any = None
        # model -> (epoch, monotonic time) of the last refusal: every permit is out, ask
        # again in that epoch only after REFUSED_RETRY (each refusal is counted in the
        # breaker's totals; a permit given back or reclaimed is taken a moment later).
        self._refused: dict[str, tuple[int, float]] = {}

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._conn = None

    def _channel(self) -> Any:
        if self._conn is None:
            self._conn = self.app.connection_for_write()
        return self._conn.default_channel

    def queued(self, model: str) -> int:
        """Messages waiting in the model's queue (cheap: asked before taking a permit, so
        that an empty queue costs no permit and no record)."""
        # A passive declare on both brokers (kombu's Redis transport adds up the queue's
        # priority lists; a plain LLEN would miss every job sent with a priority).
        try:
            channel = self._channel()
            count = waiting(channel, model, settings().broker_is_redis, self._conn.channel_errors)
        except Exception:  # noqa: BLE001 - unknown: try a permit, give it back if empty
            self.close()
            return 1
        if count < 0:  # never declared: nothing waits, no permit to take
            self.close()  # AMQP closed the channel
            return 0
        return count

    def pump(self, model: str) -> int:
        """Takes as many probe permits as the breaker hands out and moves one queued job per
        permit; returns how many jobs were moved."""
        breaker = runtime.breakers().get(model)
        view = runtime.breakers().known_view(model)
        refused = self._refused.get(model)
        if (view is not None and refused is not None and refused[0] == view.epoch
                and time.monotonic() - refused[1] < REFUSED_RETRY):
            return 0
        moved = 0
        for _ in range(breaker.policy.permitted_calls_in_half_open):
            if not self.queued(model):
                break
            try:
                ticket = breaker.admit()
            except CallNotPermitted:
                if view is not None:
                    self._refused[model] = (view.epoch, time.monotonic())
                break  # every permit is out
            if ticket.state != State.HALF_OPEN or ticket.permit is None or ticket.local:
                break  # closed (or decided locally) meanwhile: consumption resumes instead
            if not self._move_one(model, ticket, breaker.policy):
                give_back(model, ticket)
                break
            moved += 1
        return moved

    def _move_one(self, model: str, ticket: Ticket, policy: BreakerPolicy) -> bool:
        try:
            message = Queue(model).bind(self._channel()).get(no_ack=False, accept=["json"])
        except Exception:  # noqa: BLE001 - broker hiccup: nothing taken, the permit goes back
            log.warning("could not take a probe job from %s", model, exc_info=True)
            self.close()
            return False
        if message is None:
            return False
        try:
            headers = message.headers
            args, kwargs, _embed = message.decode()
            hard, soft = probe_time_limits(policy, settings().hard_time_limit)
            self.app.send_task(
                spec_for(model).task, args=args, kwargs=kwargs, task_id=headers["id"], queue=probe_queue(model),
                headers={PROBE_HEADER: ticket.model_dump_json()}, time_limit=hard, soft_time_limit=soft,
            )
        except Exception:  # noqa: BLE001 - the job goes back to its queue, the permit back to the pool
            log.warning("could not hand a %s job to a probe; requeued", model, exc_info=True)
            message.requeue()
            return False
        message.ack()
        log.info("probe %s[%s] (permit %s, hard limit %.1fs)", model, headers["id"], ticket.permit, hard)
        return True
