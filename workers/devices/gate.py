"""The worker's side of an ejection: its model queue's consumer pauses while every device
of its pool is ejected from that model (the other workers keep consuming), and resumes
when the ejection time is over, for the device's one probe job.

Read by workers.consumption's control step on its timer; one pipelined look at Redis every
:data:`REFRESH` seconds at most. It also marks the pool's devices live (the ejection cap
counts live devices, so a device that has not taken a call yet still counts).
"""

from __future__ import annotations

import logging
import time

from workers import runtime
from workers.devices.identity import worker_devices
from workers.settings import settings

log = logging.getLogger(__name__)

REFRESH = 0.2
SEEN_INTERVAL = 2.0


class DeviceGate:
    """Parameters:
      worker: this worker's node name.
      models: the model queues it serves.
      concurrency: its pool's processes.
    """

    def __init__(self, worker: str, models: list[str], concurrency: int) -> None:
        self.worker, self.models = worker, list(models)
        self.devices = worker_devices(worker, settings().device, concurrency)
        self._ejected: dict[str, dict[str, float]] = {}
        self._read_at = 0.0
        self._seen_at = 0.0

    def paused(self, model: str) -> bool:
        """Whether ``model``'s queue should not be consumed here now: every device of the
        pool ejected and none due for its probe. Unknown devices or no Redis: not paused
        (the per-job gate in the pool still keeps jobs off an ejected device)."""
        if not settings().device_ejection or not self.devices:
            return False
        self.refresh()
        ejected, now = self._ejected.get(model, {}), time.time()
        return all(d in ejected and ejected[d] > now for d in self.devices)

    def refresh(self) -> None:
        """Re-reads the ejected devices (at most every REFRESH s), marks the pool's live."""
        now = time.monotonic()
        if now - self._read_at < REFRESH:
            return
        self._read_at = now
        store = runtime.device_store()
        try:
            if now - self._seen_at >= SEEN_INTERVAL:
                self._seen_at = now
                for model in self.models:
                    store.seen(model, list(self.devices or ()))
            self._ejected = {model: store.ejected(model) for model in self.models}
        except Exception:  # noqa: BLE001 - decided on the last read; the next tick tries again
            log.debug("could not read the ejected devices", exc_info=True)
