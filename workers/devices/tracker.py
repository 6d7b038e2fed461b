"""A model worker process judging its own device's calls.

Around each model call the pipeline opens a :class:`CallContext` (which model, which
device, whether the call is the device's probe). When the call fails, the workers'
exception classifier (workers.outcomes) asks :meth:`DeviceTracker.judge`: the failure goes
into the device's record, and when the rules eject the device (and the fleet-wide cap lets
them) the outcome is IGNORED for the model's breaker: the device takes the blame, the model
does not. Beyond the cap the failure counts for the model as before, so a model failing on
every device still trips its breaker within ``minimum_calls``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from breaker import Outcome
from workers.devices.rules import EjectionRules, is_device_fault
from workers.devices.store import DeviceStore, Ejection, Gate
from workers.redis_calls import best_effort

log = logging.getLogger(__name__)

#: Seconds a process trusts that its device is healthy (another process on the same GPU may
#: eject it meanwhile: a job that then fails there is judged on the ejected device and runs
#: elsewhere).
HEALTHY_TTL = 0.25


@dataclass
class CallContext:
    """One model call on one device. ``blamed`` is set when the device took the blame (it
    was ejected, or already was); ``fault`` when the error was a device fault."""

    model: str
    device: str
    worker: str
    probe: bool = False
    blamed: str | None = None
    fault: bool = False
    ejection: Ejection | None = None


_current: ContextVar[CallContext | None] = ContextVar("fusebox_device_call", default=None)


class DeviceTracker:
    """Parameters:
      store: the fleet's device records.
      rules: the ejection rules.
      store_usable: whether the shared store answers (the breakers' fail-safe says): while it
        does not, a call's device is neither recorded nor judged, so that a guarded call
        never waits on Redis timeouts here; the model's local breaker judges the failure.
    """

    def __init__(self, store: DeviceStore, rules: EjectionRules,
                 store_usable: Callable[[], bool] = lambda: True) -> None:
        self.store, self.rules = store, rules
        self.store_usable = store_usable
        self._healthy: dict[tuple[str, str], float] = {}  # (model, device) -> when last read healthy

    def gate(self, model: str, device: str, task_id: str, lease: float) -> Gate:
        """Whether this job may run here: ``run``, ``probe`` (the ejected device's one probe
        job), or ``ejected`` (it belongs on another device). Without Redis: ``run``. A
        device read healthy is trusted for HEALTHY_TTL seconds (no round trip per job); an
        ejection by this process forgets that at once."""
        if not self.rules.enabled:
            return "run"
        now = time.monotonic()
        if now - self._healthy.get((model, device), -HEALTHY_TTL) < HEALTHY_TTL:
            return "run"
        gate: Gate = best_effort("reading the device's state",
                                 lambda: self.store.claim(model, device, task_id, lease), "run")
        if gate == "run":
            self._healthy[(model, device)] = now
        return gate

    def release(self, model: str, device: str, task_id: str) -> None:
        """Gives back a probe claim whose job did not reach the model."""
        best_effort("releasing a device probe", lambda: self.store.release(model, device, task_id), None)

    def healthy_elsewhere(self, model: str) -> bool:
        """Whether the model has a live device that is not ejected."""
        return bool(best_effort("counting healthy devices", lambda: self.store.healthy(model), 0))

    @contextmanager
    def calling(self, model: str, device: str, worker: str, probe: bool = False) -> Iterator[CallContext]:
        ctx = CallContext(model, device, worker, probe)
        token = _current.set(ctx)
        try:
            yield ctx
        finally:
            _current.reset(token)

    def succeeded(self, ctx: CallContext) -> None:
        """A call that returned: into the record; a probe's success brings the device back."""
        if not self.store_usable():
            return
        best_effort("recording a device's call", lambda: self.store.record(ctx.model, ctx.device, True, ctx.worker),
                    0)
        if ctx.probe:
            if best_effort("restoring a device", lambda: self.store.restore(ctx.model, ctx.device), False):
                log.warning("device %s is back in the %s fleet (its probe job succeeded)", ctx.device, ctx.model)

    def judge(self, exc: BaseException, outcome: Outcome) -> Outcome:
        """The outcome the model's breaker records for a failed call (see the module)."""
        ctx = _current.get()
        if ctx is None or outcome not in (Outcome.FAILURE, Outcome.TIMEOUT) or not self.store_usable():
            return outcome
        fault = is_device_fault(exc)
        error = f"{type(exc).__name__}: {exc}"
        streak = best_effort("recording a device's call",
                             lambda: self.store.record(ctx.model, ctx.device, False, ctx.worker, error), 0)
        if not self.rules.enabled:
            return outcome
        if ctx.probe:
            reason = "probe failed: device fault" if fault else "probe failed"
            ejection = best_effort("ejecting a device",
                                   lambda: self.store.eject(ctx.model, ctx.device, reason, "again"), None)
        else:
            own = best_effort("reading a device's record", lambda: self.store.outcomes(ctx.model, ctx.device), [])
            peers = (best_effort("reading the peers' records", lambda: self.store.peers(ctx.model, ctx.device), [])
                     if len(own) >= self.rules.outlier_min_calls else [])
            reason = self.rules.reason(fault, streak, own, peers)
            if reason is None:
                return outcome
            if not best_effort("counting healthy peers", lambda: self.store.healthy(ctx.model, ctx.device), 1):
                # No healthy device besides this one (a one-device model, or the last one
                # standing): the evidence is the model's, and its breaker must count it, or a
                # model failing on its only device would never trip.
                log.warning("device %s not ejected from %s (%s): no healthy device besides it; the failure "
                            "counts for the model", ctx.device, ctx.model, reason)
                return outcome
            ejection = best_effort("ejecting a device", lambda: self.store.eject(ctx.model, ctx.device, reason), None)
        ctx.fault = fault
        if ejection is None or not ejection.ejected:
            log.warning("device %s not ejected from %s (%s): %s; the failure counts for the model", ctx.device,
                        ctx.model, reason, ejection.refused if ejection else "store unreachable")
            return outcome
        ctx.blamed, ctx.ejection = reason, ejection
        self._healthy.pop((ctx.model, ctx.device), None)
        if not ejection.already:
            log.warning("device %s ejected from %s (%s, ejection %d): %s", ctx.device, ctx.model, reason,
                        ejection.ejections, error)
        return Outcome.IGNORED
