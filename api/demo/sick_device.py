"""The demo's sick-device act (issue 21, docs/devices.md): one of the two workers serving
:data:`SICK_MODEL` gets a device fault (every call on it raises a CUDA-style error); its
device is ejected alone, the model keeps answering through the healthy one, and once the
fault is removed and the (short) ejection time is over, one probe job brings it back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from pydantic import BaseModel

from api.demo.plan import SICK_MODEL, Job, sick_device_traffic
from api.demo.tracking import JobTracker
from workers.devices.store import DeviceRecord, DeviceStore
from workers.faults import SWITCH_TTL, Faults, FaultSpec

#: Seconds between the act's jobs (a steady trickle: enough for the sick worker to take
#: one soon, few enough to stay cheap on two cores).
INTERVAL = 0.15
#: How long the model serves with the device ejected before the fault is removed.
EJECTED_FOR = 1.5
#: Give up waiting for the ejection, or for the return, after this many seconds.
GIVE_UP = 40.0


class SickDeviceOutcome(BaseModel):
    """What the act showed.

    Parameters:
      device: the sick device's id (``<worker node name>/cpu0`` on a CPU host).
      ejected: it was ejected while the fault was on.
      reason: why (``device fault: ...``).
      returned: it served again, through a probe job, once the fault was removed.
      job_ids: the act's jobs (all for :data:`SICK_MODEL`), from the fault on to the return.
      time_to_eject_ms: from the fault switched on to the ejection (mostly the wait for the
        sick worker's first job).
      time_to_return_s: from the fault removed to the device healthy again.
    """

    device: str | None = None
    ejected: bool = False
    reason: str = ""
    returned: bool = False
    job_ids: list[str] = []
    time_to_eject_ms: float | None = None
    time_to_return_s: float | None = None


class SickDeviceAct:
    """Parameters:
      store: the devices' records (the demo's Redis and prefix).
      worker: the node name of the worker whose device falls sick.
    """

    def __init__(self, store: DeviceStore, worker: str) -> None:
        self.store, self.worker = store, worker
        self.outcome = SickDeviceOutcome()

    def records(self) -> list[DeviceRecord]:
        """Every device of :data:`SICK_MODEL` (the live display's table); none if Redis
        does not answer this instant."""
        try:
            return self.store.records(SICK_MODEL)
        except Exception:  # noqa: BLE001 - a frame without the table, not a failed demo
            return []

    def sick(self) -> DeviceRecord | None:
        """The sick worker's device record (its id starts with the worker's node name)."""
        return next((r for r in self.records() if r.device.split("/")[0] == self.worker.replace(":", "_")), None)

    def run(self, jobs: JobTracker, faults: Faults, note: Callable[[str], None]) -> SickDeviceOutcome:
        """The act; the fault is removed before it returns, whatever happens.

        Parameters:
          jobs: where the act's jobs go.
          faults: the fault switches.
          note: sets the story's phase.
        """
        plan, out = sick_device_traffic(), self.outcome
        note(f"sick device: every {SICK_MODEL} call on {self.worker} raises CUDA error(700)")
        faults.set(SICK_MODEL, FaultSpec(device_fault=True), worker=self.worker)
        try:
            switched_on = time.time()
            time.sleep(SWITCH_TTL + 0.05)
            record = self._until(jobs, plan, lambda r: r.ejections >= 1 and r.state != "healthy")
            if record is None:
                note(f"the sick device of {self.worker} was not ejected within {GIVE_UP:.0f} s")
                return out
            out.device, out.ejected, out.reason = record.device, True, record.reason
            out.time_to_eject_ms = round(((record.since or switched_on) - switched_on) * 1000, 1)
            note(f"device {record.device} EJECTED ({record.reason}): {SICK_MODEL} answered by the healthy worker")
            self._submit_for(jobs, plan, EJECTED_FOR)
        finally:
            faults.clear(SICK_MODEL, self.worker)
        switched_off = time.time()
        note(f"device fault removed: {record.device} waits out its ejection, then takes one probe job")
        back = self._until(jobs, plan, lambda r: r.state == "healthy" and r.reason == "probe succeeded")
        if back is not None:
            out.returned, out.time_to_return_s = True, round(time.time() - switched_off, 2)
            note(f"device {back.device} back: its probe job succeeded")
        return out

    def _until(self, jobs: JobTracker, plan: Iterator[Job],
               done: Callable[[DeviceRecord], bool]) -> DeviceRecord | None:
        """Submits the act's jobs until the sick device's record satisfies ``done``."""
        give_up = time.monotonic() + GIVE_UP
        while time.monotonic() < give_up:
            record = self.sick()
            if record is not None and done(record):
                return record
            self.outcome.job_ids.append(jobs.submit(next(plan)))
            time.sleep(INTERVAL)
        return None

    def _submit_for(self, jobs: JobTracker, plan: Iterator[Job], seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.outcome.job_ids.append(jobs.submit(next(plan)))
            time.sleep(INTERVAL)
