"""The task request of model tasks: a hard time limit answers from the fallback.

A model stuck inside C code never returns to Python, so neither the per-call timeout nor
Celery's soft limit can stop it; the pool kills the process at the hard limit. Celery would
then store a bare TimeLimitExceeded for the caller. Here the worker's main process instead
records the timeout on the call's own ticket (a probe's permit, from its message; a CLOSED
call's epoch, as the main process saw it when the call began) and re-sends the job to the model's fallback
under the same task id, then acknowledges the message; if the re-send fails (broker down),
the message is rejected back to the queue rather than lost.
"""

from __future__ import annotations

import logging

from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import TimeLimitExceeded
from celery.worker import state as worker_state
from celery.worker.request import Request

from breaker import Outcome, Ticket
from workers import probe_pump
from workers import runtime
from workers.models import FALLBACK_QUEUE, spec_for

log = logging.getLogger(__name__)


class GuardedRequest(Request):
    """A model task's request: a hard time limit is recorded on the job's own ticket and the job answered by the fallback."""
    def _hard_timeout_of_a_model(self, exc: BaseException) -> bool:
        return (
            isinstance(exc, TimeLimitExceeded)
            and getattr(self.task, "fusebox_model", None) is not None
            and not worker_state.should_terminate
        )

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        # The pool reports a hard timeout twice: as this failure (which would store a
        # TimeLimitExceeded for the caller before the fallback answers) and to on_timeout.
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if self._hard_timeout_of_a_model(exc):
            return
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        super().on_accepted(pid, time_accepted)
        model = getattr(self.task, "fusebox_model", None)
        # The breaker's epoch as the call begins (no round trip: the pushed state). A CLOSED
        # call's ticket is that epoch's; a hard timeout is recorded on it (below).
        self._fusebox_view = runtime.breakers().known_view(model) if model is not None else None

    def _own_ticket(self, model: str) -> Ticket | None:
        """The call's own ticket: a probe's permit travels in its message; a call admitted in
        CLOSED, DISABLED or METRICS_ONLY holds no permit, so its ticket is the epoch it ran
        in, as long as the breaker is still in that epoch (if it moved on, the call's ticket
        is stale and the store would not count it either). The epoch is the one this
        process heard of when the call began; for a breaker it had not heard of yet, the
        current epoch counts if it began before the call (or is the first one)."""
        probe = probe_pump.ticket_from(self.request_dict)
        if probe is not None:
            return probe
        snap = runtime.breakers().get(model).snapshot()  # one read, on this rare path
        if snap.local or not snap.state.admits_everything:
            return None
        began = getattr(self, "_fusebox_view", None)
        if began is not None and began.incarnation == 0:
            began = None  # the breaker did not exist in the store yet when the call began
        if began is not None:
            if (began.epoch, began.incarnation) != (snap.epoch, snap.incarnation):
                return None
        elif snap.epoch != 0 and (self.time_start is None or snap.changed_at_ms / 1000 > self.time_start):
            return None  # (epoch 0: never moved since it was created, by this very call perhaps)
        return Ticket(breaker=model, epoch=snap.epoch, incarnation=snap.incarnation, state=snap.state)

    def _record_hard_timeout(self, model: str, timeout: float) -> None:
        """Records the timeout on the call's own ticket, never through a new admission: in
        HALF_OPEN that would take another permit (or be refused, and the hung probe would
        never count). A call without a ticket to record on counts nothing."""
        trace = runtime.call_log()
        if trace is not None:
            try:
                trace.ended(model, self.id)
            except Exception:  # noqa: BLE001 - tracing is for drills
                pass
        ticket = self._own_ticket(model)
        if ticket is None:
            log.warning("%s[%s]: no ticket of its own to record its hard timeout on", self.name, self.id)
            return
        runtime.breakers().get(model).record(ticket, Outcome.TIMEOUT, timeout, wait=True)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        model = getattr(self.task, "fusebox_model", None)
        if soft or model is None or worker_state.should_terminate:
            super().on_timeout(soft, timeout)
            return
        worker_state.task_ready(self)
        spec = spec_for(model)
        log.error("hard time limit (%ss) hit by %s[%s]: answering from the fallback", timeout, self.name, self.id)
        self._record_hard_timeout(model, float(timeout))
        try:
            self.task.app.send_task(
                spec.fallback_task,
                args=self.args,
                kwargs={"reason": f"model hung: process killed after the {timeout}s hard time limit"},
                task_id=self.id,
                queue=FALLBACK_QUEUE,
            )
        except Exception:  # noqa: BLE001 - the broker is down: give the job back, do not lose it
            log.exception("could not re-send %s[%s] to the fallback; requeueing it", self.name, self.id)
            self.reject(requeue=True)
            return
        self.acknowledge()
