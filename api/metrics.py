"""Prometheus metrics for the whole fleet, read from Redis when scraped.

Breakers keep their figures in Redis, and every worker process adds its job counts there
(workers.stats), so one scrape of ``fusebox serve``'s ``/metrics`` sees the fleet: nothing
to scrape on each worker, and prefork pools need no multiprocess mode. Workers report
their breaker store mode and the queues they serve through the fleet index
(workers.probe).

Conventions: the label for a model (and its breaker) is ``model`` on every series; ratios
end in ``_ratio``; call outcomes (``fusebox_breaker_calls_total``) are separate from
admission decisions (``fusebox_breaker_rejected_total``) and late reports
(``fusebox_breaker_stale_outcomes_total``); every label takes values from a bounded set
(error types outside a known list are ``other``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from breaker import STORE_ERRORS, Breakers, State
from breaker.keyspace import Keyspace
from workers import probe, stats
from workers.broker import queue_depths
from api.devices import device_store
from workers.devices.store import REASON_LABELS
from workers.models import FALLBACK_QUEUE, MODELS
from workers.settings import Settings

#: Call outcomes (what a guarded call did). Admission decisions (rejected) and late reports
#: (stale) are other series: they are not calls, and summing them with calls misleads.
OUTCOMES = ("success", "slow", "failure", "timeout", "ignored")
#: Error types a job may end with, as label values; any other exception class is "other",
#: so that a stray exception name cannot add a series per class without bound.
KNOWN_ERRORS = frozenset({
    "InvalidInput", "InvalidJob", "PayloadMissing", "JobFailed", "TimeLimitExceeded", "SoftTimeLimitExceeded",
    "WorkerLostError", "MemoryError", "CallTimeout", "InjectedFault", "CannotAnswer", "StoreDown",
})


def error_label(name: str) -> str:
    return name if name in KNOWN_ERRORS else "other"


def _queue_owner(queue: str) -> str:
    """The model a queue belongs to ("" for the shared fallback queue)."""
    for model, spec in MODELS.items():
        if queue in (model, spec.bypass_queue):
            return model
    return ""


class FuseboxCollector(Collector):
    """Parameters:
      breakers: the serving process's breakers (for snapshots and its own store health).
      client: the Redis holding queues, stats and parked jobs.
      settings: key prefixes.
      process: this process's name in the store-degraded series.
    """

    def __init__(self, breakers: Breakers, client: redis.Redis, settings: Settings,
                 process: str | None = None) -> None:
        self.breakers, self.client, self.settings = breakers, client, settings
        self.process = process or f"api:{socket.gethostname()}"  # stable across restarts of the pod

    def collect(self) -> Iterator[Any]:
        names = sorted(set(self.breakers.names()) | set(MODELS))
        m = ["model"]
        state = GaugeMetricFamily("fusebox_breaker_state", "1 for the state each breaker is in", labels=["model", "state"])
        failure_ratio = GaugeMetricFamily("fusebox_breaker_failure_ratio", "Failure ratio in the sliding window", labels=m)
        slow_ratio = GaugeMetricFamily("fusebox_breaker_slow_call_ratio", "Slow-call ratio in the sliding window", labels=m)
        window = GaugeMetricFamily("fusebox_breaker_window_calls", "Calls in the sliding window", labels=m)
        judged = GaugeMetricFamily("fusebox_breaker_window_judged", "1 when the window holds minimum_calls calls "
                                   "(the ratios are judged and exported), else 0", labels=m)
        threshold = GaugeMetricFamily("fusebox_breaker_failure_ratio_threshold", "Failure ratio at which it trips", labels=m)
        slow_threshold = GaugeMetricFamily("fusebox_breaker_slow_call_ratio_threshold",
                                           "Slow-call ratio at which it trips", labels=m)
        calls = CounterMetricFamily("fusebox_breaker_calls", "Guarded calls by outcome", labels=["model", "outcome"])
        rejected = CounterMetricFamily("fusebox_breaker_rejected", "Calls the breaker refused (admission)", labels=m)
        would_trip = CounterMetricFamily("fusebox_breaker_would_trip", "METRICS_ONLY (shadow mode): crossings of a "
                                         "threshold, where the breaker would have tripped", labels=["model", "reason"])
        stale = CounterMetricFamily("fusebox_breaker_stale_outcomes",
                                    "Outcomes reported for an earlier epoch: counted, never judged", labels=m)
        transitions = CounterMetricFamily("fusebox_breaker_transitions", "Transitions into each state", labels=["model", "to"])
        probes = CounterMetricFamily("fusebox_breaker_probes", "Half-open probe permits, granted or reclaimed",
                                     labels=["model", "result"])
        ramp_limit = GaugeMetricFamily("fusebox_breaker_ramp_limit",
                                       "Slow start after a recovery: calls allowed in flight fleet-wide (only while ramping)",
                                       labels=m)
        ramp_in_flight = GaugeMetricFamily("fusebox_breaker_ramp_in_flight",
                                           "Slow start after a recovery: slots held (only while ramping)", labels=m)
        for name in names:
            snap = self.breakers.get(name).snapshot()
            for s in State:
                state.add_metric([name, s.value], 1.0 if snap.state == s else 0.0)
            judged.add_metric([name], 1.0 if snap.window.judged else 0.0)
            if snap.window.judged:  # below minimum_calls a rate is no judgement: no sample
                failure_ratio.add_metric([name], snap.window.failure_rate)
                slow_ratio.add_metric([name], snap.window.slow_rate)
            window.add_metric([name], snap.window.calls)
            threshold.add_metric([name], snap.policy.failure_rate_threshold)
            slow_threshold.add_metric([name], snap.policy.slow_call_rate_threshold)
            for outcome in OUTCOMES:
                calls.add_metric([name, outcome], snap.totals.get(outcome, 0))
            rejected.add_metric([name], snap.totals.get("rejected", 0))
            stale.add_metric([name], snap.totals.get("stale", 0))
            for reason in ("failure_rate", "slow_call_rate"):
                would_trip.add_metric([name, reason], snap.totals.get(f"would_trip_{reason}", 0))
            for s in State:
                transitions.add_metric([name, s.value], snap.totals.get(f"to_{s.value}", 0))
            probes.add_metric([name, "granted"], snap.totals.get("probes_granted", 0))
            probes.add_metric([name, "reclaimed"], snap.totals.get("reclaimed", 0))
            ramp = self.breakers.ramp(name)
            if ramp.active and ramp.limit is not None:
                ramp_limit.add_metric([name], ramp.limit)
                ramp_in_flight.add_metric([name], ramp.in_flight)
        yield from (state, failure_ratio, slow_ratio, window, judged, threshold, slow_threshold, calls, rejected, would_trip, stale,
                    transitions, probes, ramp_limit, ramp_in_flight)

        jobs = CounterMetricFamily("fusebox_jobs", "Answered jobs by who served them", labels=["model", "served_by"])
        dropped = CounterMetricFamily(
            "fusebox_breaker_outcomes_dropped",
            "Breaker outcomes dropped because a process's write-behind queue was full (fleet-wide; "
            "each process's own count is in its health)", labels=["model"])
        degraded = CounterMetricFamily("fusebox_jobs_degraded", "Jobs answered degraded (fallback or cache)", labels=["model"])
        errors = CounterMetricFamily("fusebox_job_errors", "Jobs that ended in an error for the caller, by error type "
                                     "(known types; any other is \"other\")", labels=["model", "error"])
        latency = HistogramMetricFamily("fusebox_job_latency_seconds", "Submission to answer", labels=["model"])
        for model in MODELS:
            figures = stats.read(self.client, self.settings.key_prefix, model)
            by_error: dict[str, float] = {}
            for field, value in figures.items():
                if field.startswith("served:"):
                    jobs.add_metric([model, field.removeprefix("served:")], value)
                elif field.startswith("error:"):
                    label = error_label(field.removeprefix("error:"))
                    by_error[label] = by_error.get(label, 0.0) + value
            for label, value in sorted(by_error.items()):
                errors.add_metric([model, label], value)
            degraded.add_metric([model], figures.get("degraded", 0))
            own = self.breakers.health().dropped_by.get(model, 0)  # this API process's, never flushed
            dropped.add_metric([model], figures.get("breaker_outcomes_dropped", 0) + own)
            buckets, running = [], 0.0
            for bound in stats.LATENCY_BUCKETS_MS:
                running += figures.get(f"latency:le_{bound}", 0)
                buckets.append((str(bound / 1000), running))
            running += figures.get("latency:le_inf", 0)
            buckets.append(("+Inf", running))
            latency.add_metric([model], buckets, figures.get("latency:sum_ms", 0.0) / 1000)
        yield from (jobs, degraded, errors, latency, dropped)
        yield from self._devices()

        depth = GaugeMetricFamily("fusebox_queue_depth", "Jobs waiting in each queue (bypass queues included)",
                                  labels=["queue", "model"])
        parked = GaugeMetricFamily("fusebox_parked_jobs", "Jobs waiting for their model to recover", labels=["model"])
        pipe = self.client.pipeline(transaction=False)
        queues = [*MODELS, *(spec.bypass_queue for spec in MODELS.values()), FALLBACK_QUEUE]
        for model in MODELS:
            pipe.hlen(Keyspace(self.settings.key_prefix).parked(model))
        answers = pipe.execute()
        try:  # from the broker itself, Redis or RabbitMQ (workers.broker)
            for queue, n in queue_depths(self.settings, queues, timeout=2).items():
                depth.add_metric([queue, _queue_owner(queue)], n)
        except Exception:  # noqa: BLE001 - a broker that does not answer leaves the gauge out
            pass
        for model, n in zip(MODELS, answers):
            parked.add_metric([model], n)
        yield from (depth, parked)

        # Coverage and store mode, as the workers report them (workers.probe), and this process's own.
        store = GaugeMetricFamily("fusebox_breaker_store_degraded",
                                  "1 while a process decides with its local breaker (each live worker, and this one)",
                                  labels=["process"])
        store.add_metric([self.process], 1.0 if self.breakers.degraded else 0.0)
        coverage = GaugeMetricFamily("fusebox_queue_workers", "Live workers serving each queue", labels=["queue", "model"])
        consuming = GaugeMetricFamily("fusebox_queue_consumers", "Live workers consuming each queue now (paused "
                                      "queues excluded)", labels=["queue", "model"])
        missing = GaugeMetricFamily("fusebox_fleet_missing_queues", "Required queues that no live worker serves")
        try:
            view = probe.fleet(self.client, self.settings.key_prefix)
        except STORE_ERRORS:
            yield store
            return
        for worker in view.workers:
            store.add_metric([worker.hostname], 1.0 if worker.store_degraded or not worker.store_shared else 0.0)
        for cover in view.queues:
            coverage.add_metric([cover.queue, _queue_owner(cover.queue)], len(cover.workers))
            consuming.add_metric([cover.queue, _queue_owner(cover.queue)], len(cover.consuming))
        missing.add_metric([], len(view.missing))
        yield from (store, coverage, consuming, missing)

    def _devices(self) -> Iterator[Any]:
        """Ejected devices now, and ejections so far by reason (workers/devices)."""
        ejected = GaugeMetricFamily("fusebox_device_ejected", "1 for each device ejected from a model's fleet "
                                    "(worker: the device, NAME@HOST/cpuN or HOST/gpuN)", labels=["model", "worker"])
        ejections = CounterMetricFamily("fusebox_device_ejections", "Devices ejected from a model's fleet, by reason",
                                        labels=["model", "reason"])
        store = device_store(self.client, self.settings)
        for model in MODELS:
            for device in store.ejected(model):
                ejected.add_metric([model, device], 1.0)
            figures = stats.read(self.client, self.settings.key_prefix, model)
            for reason in REASON_LABELS:
                ejections.add_metric([model, reason], figures.get(f"device_ejections:{reason}", 0))
        yield from (ejected, ejections)
