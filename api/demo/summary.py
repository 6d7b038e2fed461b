"""What the demo reports at the end: ``fusebox demo --json``'s object, and its table."""

from __future__ import annotations

import time

from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from api.client import FuseboxClient
from api.demo.plan import DEMO_MODELS, FAULTY, SICK_MODEL
from api.demo.sick_device import SickDeviceOutcome
from api.demo.tracking import JobTracker
from breaker import State
from breaker.connection import redis_client


class DemoSummary(BaseModel):
    """What ``fusebox demo --json`` prints.

    Parameters:
      jobs: jobs submitted.
      completed: jobs answered (by a model, a fallback or the cache).
      lost: jobs never answered (must be 0).
      degraded: answers marked degraded.
      errors: jobs that ended in an error.
      trips: transitions into OPEN, all breakers.
      recovered: the faulty model's breaker tripped and closed again, and every breaker
        ended CLOSED.
      served_by: answers by who served them (``model``, ``cache``, ``fallback:...``).
      by_model: answers per model and server.
      time_to_pause_ms: from the trip to the worker no longer consuming the faulty queue.
      time_to_recover_s: from the fault's end to the breaker CLOSED again.
      sick_device: the device (of :data:`SICK_MODEL`'s two workers) that fell sick.
      device_ejected: it was ejected during its device fault.
      device_ejection_reason: why.
      device_returned: it served again, through one probe job, once the fault was removed.
      device_fault_jobs: :data:`SICK_MODEL` jobs submitted from the device fault on until
        the device was back.
      degraded_during_device_fault: how many of those were answered degraded (the healthy
        device should have answered them all: 0).
      time_to_eject_ms: from the device fault on to the ejection.
      time_to_return_s: from the device fault removed to the device healthy again.
      redis: ``existing`` (the one at FUSEBOX_REDIS_URL) or ``started``.
      duration_s: the whole demo, worker start included.
    """

    jobs: int
    completed: int
    lost: int
    degraded: int
    errors: int
    trips: int
    recovered: bool
    served_by: dict[str, int]
    by_model: dict[str, dict[str, int]]
    time_to_pause_ms: float | None
    time_to_recover_s: float | None
    faulty_model: str = FAULTY
    sick_device_model: str = SICK_MODEL
    sick_device: str | None
    device_ejected: bool
    device_ejection_reason: str
    device_returned: bool
    device_fault_jobs: int
    degraded_during_device_fault: int
    time_to_eject_ms: float | None
    time_to_return_s: float | None
    redis: str
    duration_s: float


def summarize(client: FuseboxClient, jobs: JobTracker, prefix: str, how: str, times: dict[str, float | None],
              started: float, sick: SickDeviceOutcome, opened_at_ms: int | None = None) -> DemoSummary:
    """The summary of a finished demo.

    Parameters:
      client: reads the breakers.
      jobs: the jobs and their answers.
      prefix: the demo's key prefix (the workers' control records are under it).
      how: ``existing`` or ``started`` (the Redis).
      times: when the fault went on and off, the breaker tripped and closed (epoch s).
      started: ``time.monotonic()`` at the demo's start.
      sick: what the sick-device act showed.
      opened_at_ms: when the faulty model's breaker opened (its transition's store time).
    """
    trips = sum(client.breakers.get(m).snapshot().totals.get("to_open", 0) for m in DEMO_MODELS)
    states = {m: client.breakers.get(m).snapshot().state for m in DEMO_MODELS}
    faulty_tripped = client.breakers.get(FAULTY).snapshot().totals.get("to_open", 0) > 0
    with jobs.lock:
        completed = len(jobs.handles) - len(jobs.pending)
        return DemoSummary(
            jobs=len(jobs.handles),
            completed=completed - jobs.errors,
            lost=len(jobs.pending),
            degraded=jobs.degraded,
            errors=jobs.errors,
            trips=trips,
            recovered=faulty_tripped and all(s == State.CLOSED for s in states.values()),
            served_by=dict(jobs.served_by),
            by_model={m: dict(c) for m, c in jobs.by_model.items()},
            time_to_pause_ms=time_to_pause(client, prefix, times.get("trip"), opened_at_ms),
            time_to_recover_s=(round(times["closed"] - times["fault_off"], 2)
                               if times.get("closed") and times.get("fault_off") else None),
            sick_device=sick.device,
            device_ejected=sick.ejected,
            device_ejection_reason=sick.reason,
            device_returned=sick.returned,
            device_fault_jobs=len(sick.job_ids),
            degraded_during_device_fault=sum(i in jobs.degraded_ids for i in sick.job_ids),
            time_to_eject_ms=sick.time_to_eject_ms,
            time_to_return_s=sick.time_to_return_s,
            redis=how,
            duration_s=round(time.monotonic() - started, 1),
        )


def time_to_pause(client: FuseboxClient, prefix: str, trip: float | None,
                  opened_at_ms: int | None = None) -> float | None:
    """From the worker's own record (``<prefix>:control``): when it stopped consuming the
    faulty queue, against the transition that told it to.

    Parameters:
      client: where Redis is.
      prefix: the demo's key prefix.
      trip: when the breaker tripped (None: it did not, and there is nothing to time).
      opened_at_ms: the transition into OPEN as the demo's listener saw it: the pause is
        timed against it when the worker's timer saw the OPEN state before the transition's
        message reached it (its record then names no trigger).
    """
    if trip is None:
        return None
    store = redis_client(client.settings.redis_url, 5, fail_fast=False, decode_responses=True)
    try:
        for _, record in store.xrange(f"{prefix}:control"):
            if record.get("model") != FAULTY or record.get("action") != "pause":
                continue
            trigger = int(record["trigger_at_ms"]) if "trigger_at_ms" in record else opened_at_ms
            if trigger is not None:
                return round(float(record["at"]) * 1000 - trigger, 1)
    finally:
        store.close()
    return None


def summary_table(summary: DemoSummary) -> Table:
    """The summary as the table ``fusebox demo`` ends with.

    Parameters:
      summary: the summary.
    """
    table = Table(title="fusebox demo: summary")
    table.add_column("")
    table.add_column("", justify="right")
    rows = [
        ("jobs", summary.jobs), ("completed", summary.completed),
        ("lost", f"[{'green' if summary.lost == 0 else 'red'}]{summary.lost}[/]"),
        ("degraded", summary.degraded), ("errors", summary.errors), ("trips", summary.trips),
        ("recovered", "yes" if summary.recovered else "[red]no[/]"),
        ("sick device", summary.sick_device or "-"),
        ("ejected", f"yes ({escape(summary.device_ejection_reason)})" if summary.device_ejected else "[red]no[/]"),
        ("returned", "yes" if summary.device_returned else "[red]no[/]"),
        (f"{summary.sick_device_model} degraded during it",
         f"{summary.degraded_during_device_fault} of {summary.device_fault_jobs}"),
        ("time to pause", f"{summary.time_to_pause_ms:.1f} ms" if summary.time_to_pause_ms is not None else "-"),
        ("time to recover", f"{summary.time_to_recover_s:.1f} s" if summary.time_to_recover_s is not None else "-"),
        ("served by", ", ".join(f"{k} {v}" for k, v in sorted(summary.served_by.items()))),
        ("redis", summary.redis), ("duration", f"{summary.duration_s:.0f} s"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table
