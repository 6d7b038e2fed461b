"""The demo's run: services up, healthy traffic, a sick device ejected and back, the
fault, the recovery, the summary."""

from __future__ import annotations

import gc
import threading
import time
import uuid
from contextlib import ExitStack

from rich.console import Console, Group
from rich.live import Live

from api.client import FuseboxClient
from api.demo import orchestration
from api.demo.plan import DEMO_MODELS, DEMO_POLICY, FAULTY, SICK_MODEL, extra_probe, traffic
from api.demo.sick_device import SickDeviceAct
from api.devices import device_store
from api.demo.summary import DemoSummary, summarize, summary_table
from api.demo.tracking import JobTracker
from api.demo.ui import Transitions, keep_refreshing, render
from breaker import BreakerPolicy, State
from breaker.connection import redis_client
from workers.faults import SWITCH_TTL, Faults, FaultSpec
from workers.models import MODELS
from workers.settings import Settings


class Demo:
    """Parameters:
      jobs: how many jobs to submit (a few more if recovery needs probe traffic).
      console: where the live display goes; None for ``--json`` (quiet).
    """

    def __init__(self, jobs: int = 120, console: Console | None = None) -> None:
        self.total = jobs
        self.console = console
        self.prefix = f"fusebox-demo-{uuid.uuid4().hex[:8]}"
        self.transitions = Transitions()
        self.phase = "starting"
        self.client: FuseboxClient | None = None
        self.jobs: JobTracker | None = None
        self.sick: SickDeviceAct | None = None
        #: Jobs of the sick-device act: outside the plan's budget (``total``).
        self.unplanned = 0
        self._stop = threading.Event()

    def run(self) -> DemoSummary:
        """The whole story; everything it started is stopped, and its keys on a Redis it
        did not start are removed, before it returns."""
        started = time.monotonic()
        with ExitStack() as stack:
            redis_url, how = orchestration.use_or_start_redis(stack, self.prefix, self._note)
            env = orchestration.demo_env(redis_url, self.prefix)
            self.client = client = FuseboxClient(Settings.from_env(env))
            stack.callback(client.close)
            if how == "existing":
                stack.callback(orchestration.remove_keys, redis_url, self.prefix)
            client.breakers.wait_until_subscribed(10)
            for model in DEMO_MODELS:
                policy = BreakerPolicy.model_validate({**MODELS[model].policy.model_dump(), **DEMO_POLICY})
                client.breakers.set_policy(model, policy, who="demo")
            client.breakers.add_listener(self.transitions)
            store = redis_client(redis_url, 5, fail_fast=False)
            faults = Faults(store, self.prefix)

            self._note(f"starting the model worker (PP-OCRv5 mobile, sentiment, NER), a second {SICK_MODEL} "
                       "worker and the fallback worker")
            sick_worker = orchestration.start_workers(stack, env, self.prefix, client.app)
            stack.callback(faults.clear, SICK_MODEL, sick_worker)
            self.sick = SickDeviceAct(device_store(store, client.settings),
                                      sick_worker)

            self.jobs = jobs = JobTracker(client)
            poller = threading.Thread(target=jobs.poll, args=(self._stop,), name="demo-collector", daemon=True)
            poller.start()
            stack.callback(self._stop.set)
            live = Live(self._frame(), console=self.console, refresh_per_second=8, transient=False) \
                if self.console is not None else None
            if live is not None:
                stack.enter_context(live)
                refresher = threading.Thread(target=keep_refreshing, args=(live, self._frame, self._stop), daemon=True)
                refresher.start()
            stack.callback(faults.clear, FAULTY)
            times = self._story(jobs, faults)
            self.phase = "waiting for the last answers"
            jobs.wait_answers(timeout=180)
            self._stop.set()
            if live is not None:
                live.update(self._frame())
            summary = summarize(client, jobs, self.prefix, how, times, started, self.sick.outcome,
                                self.transitions.opened_at_ms.get(FAULTY))
            # Celery's result objects unsubscribe when collected: let them while Redis is up.
            jobs.handles.clear()
            gc.collect()
        if self.console is not None:
            self.console.print(summary_table(summary))
        return summary

    def _story(self, jobs: JobTracker, faults: Faults) -> dict[str, float | None]:
        plan = traffic(self.total, lambda: self.phase)
        times: dict[str, float | None] = {"fault_on": None, "trip": None, "fault_off": None, "closed": None}

        self.phase = "healthy: every job answered by its model"
        for _ in range(int(self.total * 0.3)):
            jobs.submit(next(plan))
            time.sleep(0.05)
        jobs.wait_answers(timeout=120)  # healthy answers fill the cache the fallback uses

        assert self.sick is not None
        before = jobs.submitted
        self.sick.run(jobs, faults, self._set_phase)
        self.unplanned = jobs.submitted - before

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
            if self._planned() < int(self.total * 0.85):
                jobs.submit(next(plan))
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
            jobs.submit(next(plan) if self._planned() < self.total else extra_probe(jobs.submitted))
            time.sleep(0.25)

        self.phase = "recovered: every job answered by its model again"
        while self._planned() < self.total:
            jobs.submit(next(plan))
            time.sleep(0.05)
        return times

    def _planned(self) -> int:
        assert self.jobs is not None
        return self.jobs.submitted - self.unplanned

    def _set_phase(self, phase: str) -> None:
        self.phase = phase

    def _state(self, model: str) -> State:
        assert self.client is not None
        return self.client.breakers.get(model).snapshot().state

    def _note(self, message: str) -> None:
        self.phase = message
        if self.console is not None:
            self.console.print(f"[bold]fusebox demo[/]: {message}")

    def _frame(self) -> Group:
        return render(self.phase, self.client, self.jobs, self.transitions,
                      self.sick.records() if self.sick is not None else None)
