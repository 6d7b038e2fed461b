"""The demo's live display (rich): the phase, the breakers, the answers by server, the
transitions and the latest answers."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from api.client import FuseboxClient
from api.demo.plan import DEMO_MODELS
from api.demo.tracking import JobTracker
from breaker import BreakerEvent, State
from workers.devices.store import DeviceRecord

STATE_STYLE = {State.CLOSED: "green", State.OPEN: "bold red", State.HALF_OPEN: "yellow"}
DEVICE_STYLE = {"healthy": "green", "ejected": "bold red", "probing": "yellow"}


class Transitions:
    """The last few breaker transitions, as lines; a breaker listener.

    Parameters:
      keep: how many lines are kept.
    """

    def __init__(self, keep: int = 6) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        #: Per breaker, its first transition into OPEN (store time, ms).
        self.opened_at_ms: dict[str, int] = {}

    def __call__(self, event: BreakerEvent) -> None:
        if event.kind == "transition" and event.to_state is not None:
            if event.to_state == State.OPEN:
                self.opened_at_ms.setdefault(event.breaker, event.at_ms)
            before = event.from_state.value if event.from_state else "?"
            self.lines.append(f"{time.strftime('%H:%M:%S')} {event.breaker}: {before} → {event.to_state.value}  "
                              f"({event.reason})")


def render(phase: str, client: FuseboxClient | None, jobs: JobTracker | None, transitions: Transitions,
           devices: list[DeviceRecord] | None = None) -> Group:
    """One frame of the display.

    Parameters:
      phase: the story's current phase.
      client: reads the breakers (None before it exists: no rows).
      jobs: the jobs and answers so far (None before any: zeros).
      transitions: the recent transitions.
      devices: the sick-device act's model's devices (its table; None: none).
    """
    breakers = Table(title="breakers", expand=False)
    for column in ("model", "state", "calls in window", "failure rate", "trips"):
        breakers.add_column(column)
    if client is not None:
        for model in DEMO_MODELS:
            snap = client.breakers.get(model).snapshot()
            breakers.add_row(model, f"[{STATE_STYLE.get(snap.state, '')}]{snap.state.value}[/]",
                             str(snap.window.calls),
                             f"{snap.window.failure_rate:.0%} / {snap.policy.failure_rate_threshold:.0%}",
                             str(snap.totals.get("to_open", 0)))
    served = Table(title="answers", expand=False)
    for column in ("model", "model answered", "cache", "fallback", "errors"):
        served.add_column(column, justify="right")
    submitted = answered = waiting = 0
    latest: list[str] = []
    if jobs is not None:
        with jobs.lock:
            for model in DEMO_MODELS:
                counts = jobs.by_model.get(model, Counter())
                fallback = sum(v for k, v in counts.items() if k.startswith("fallback"))
                served.add_row(model, str(counts["model"]), str(counts["cache"]), str(fallback), str(counts["error"]))
            submitted, waiting = jobs.submitted, len(jobs.pending)
            answered = len(jobs.handles) - waiting
            latest = list(jobs.latest)
    else:
        for model in DEMO_MODELS:
            served.add_row(model, "0", "0", "0", "0")
    head = Text.assemble(("phase: ", "bold"), phase, "\n",
                         f"submitted {submitted}, answered {answered}, waiting {waiting}")
    return Group(
        Panel(head, title="fusebox demo"),
        breakers,
        device_table(devices or []),
        served,
        Panel("\n".join(transitions.lines) or "-", title="transitions"),
        Panel("\n".join(latest) or "-", title="latest answers"),
    )


def device_table(devices: list[DeviceRecord]) -> Table:
    """The devices of the model one of whose devices falls sick: which worker, its state
    and why."""
    table = Table(title="devices", expand=False)
    for column in ("model", "device", "state", "reason", "calls", "failures"):
        table.add_column(column)
    for r in devices:
        style = DEVICE_STYLE.get(r.state, "")
        why = f"{r.reason}: {r.last_error}" if r.state != "healthy" and r.last_error else r.reason
        table.add_row(r.model, r.device, f"[{style}]{r.state}[/]", escape(why[:70]) or "-", str(r.calls),
                      str(r.failures))
    return table


def keep_refreshing(live: Live, frame: Callable[[], Group], stop: threading.Event) -> None:
    """Redraws ``live`` eight times a second until ``stop``.

    Parameters:
      live: the rich Live display.
      frame: draws the current frame.
      stop: set when the demo is over.
    """
    while not stop.wait(0.125):
        live.update(frame())
