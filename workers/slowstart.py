"""Slow start on the worker side: a model call takes a slot of the fleet-wide ramp first.

After a recovery (the probes closed the breaker) the breaker's ramp (breaker.ramp) limits
how many calls run on the model at once, fleet-wide, growing from the probe count to
unlimited over the policy's ``slow_start``. A worker process that finds every slot taken
waits for one, polling, with its job still unanswered: it takes no other job meanwhile
(prefetch is one per process), so the backlog stays in the queue and drains as fast as the
ramp allows. Re-sent parked jobs run through the same slots.

Outside a ramp this costs nothing: a process remembers, per breaker epoch, that no ramp
runs in it, and asks the store at most once per epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from breaker import State
from breaker.ramp import RampStatus, new_token
from workers import runtime

log = logging.getLogger(__name__)

#: Seconds between two tries for a slot.
POLL = 0.02

# breaker name -> the CLOSED epoch known to have no ramp (or a finished one).
_no_ramp: dict[str, int] = {}


@contextmanager
def ramp_slot(model: str) -> Iterator[RampStatus | None]:
    """Holds a ramp slot of ``model`` for the ``with`` body, waiting for one if the ramp is
    full; yields the status it got (None when no ramp could apply).

    The store answers "go" as soon as no ramp limits the call: the ramp ended, or the
    breaker left that CLOSED epoch (a trip during the ramp: the caller's admission then
    decides). A process that has not yet heard of the close (its view still says HALF_OPEN)
    asks too, so that no call slips past the first, smallest step of a ramp.

    Parameters:
      model: the breaker's name.
    """
    breakers = runtime.breakers()
    view = breakers.known_view(model)  # None before this process heard anything: ask
    if breakers.degraded or (view is not None and (
            view.state not in (State.CLOSED, State.HALF_OPEN) or _no_ramp.get(model) == view.epoch)):
        yield None
        return
    token = new_token()
    status = breakers.ramp(model, "acquire", token)
    while not status.granted:
        time.sleep(POLL)
        status = breakers.ramp(model, "acquire", token)
    if not status.active and status.epoch is not None:
        _no_ramp[model] = status.epoch  # ramps never start within an epoch: ask no more in this one
    try:
        yield status
    finally:
        if status.slot:
            try:
                breakers.ramp(model, "release", token)
            except Exception:  # noqa: BLE001 - the slot lapses after max_wait_in_half_open
                log.warning("could not release a ramp slot of %s", model, exc_info=True)
