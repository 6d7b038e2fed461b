"""The task request of model tasks: a hard time limit answers from the fallback.

A model stuck inside C code never returns to Python, so neither the per-call timeout nor
Celery's soft limit can stop it; the pool kills the process at the hard limit. Celery would
then store a bare TimeLimitExceeded for the caller. Here the worker's main process instead
records the timeout on the call's own ticket (a probe's permit, from its message; any other
call's ticket, kept while it ran: workers.probes) and re-sends the job to the model's fallback
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

from breaker import Outcome
from workers import probes
from workers import runtime as rt
from workers.models import FALLBACK_QUEUE, spec_for

log = logging.getLogger(__name__)


class GuardedRequest(Request):
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

    def _record_hard_timeout(self, model: str, timeout: float) -> None:
        """Records the timeout on the call's own ticket: the probe permit its message came
        with, or the ticket the call kept while it ran. Never through a new admission: in
        HALF_OPEN that would take another permit (or be refused, and the hung probe would
        never count). A job killed before it was admitted has no ticket: nothing to count."""
        ticket = probes.ticket_from(self.request_dict)
        try:
            kept = probes.call_tickets().take(self.id)
        except Exception:  # noqa: BLE001 - the store is down: the breaker's fail-safe counts nothing either
            log.warning("could not read the ticket of %s[%s]", self.name, self.id, exc_info=True)
            kept = None
        ticket = ticket or kept
        trace = rt.call_trace()
        if trace is not None:
            try:
                trace.ended(model, self.id)
            except Exception:  # noqa: BLE001 - tracing is for drills
                pass
        if ticket is None:
            log.warning("%s[%s] hit its hard limit before it was admitted: no outcome to record", self.name, self.id)
            return
        rt.breakers().get(model).record(ticket, Outcome.TIMEOUT, timeout, wait=True)

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
