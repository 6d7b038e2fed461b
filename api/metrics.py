"""Prometheus metrics for the whole fleet, read from Redis when scraped.

Breakers keep their figures in Redis, and every worker process adds its job counts there
(workers.stats), so one scrape of ``fusebox serve``'s ``/metrics`` sees the fleet: nothing
to scrape on each worker, and prefork pools need no multiprocess mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from breaker import Breakers, State
from workers import stats
from workers.broker import queue_depths
from workers.models import FALLBACK_QUEUE, MODELS
from workers.settings import WorkerSettings

OUTCOMES = ("success", "slow", "failure", "timeout", "ignored", "stale", "rejected")


class FuseboxCollector(Collector):
    """Parameters:
      breakers: the serving process's breakers (for snapshots and its own store health).
      client: the Redis holding queues, stats and parked jobs.
      settings: key prefixes.
    """

    def __init__(self, breakers: Breakers, client: redis.Redis, settings: WorkerSettings) -> None:
        self.breakers, self.client, self.settings = breakers, client, settings

    def collect(self) -> Iterator[Any]:
        names = sorted(set(self.breakers.names()) | set(MODELS))
        state = GaugeMetricFamily("fusebox_breaker_state", "1 for the state each breaker is in", labels=["breaker", "state"])
        failure_rate = GaugeMetricFamily("fusebox_breaker_failure_rate", "Failure rate in the sliding window", labels=["breaker"])
        slow_rate = GaugeMetricFamily("fusebox_breaker_slow_call_rate", "Slow-call rate in the sliding window", labels=["breaker"])
        window = GaugeMetricFamily("fusebox_breaker_window_calls", "Calls in the sliding window", labels=["breaker"])
        threshold = GaugeMetricFamily("fusebox_breaker_failure_rate_threshold", "Failure rate at which it trips", labels=["breaker"])
        calls = CounterMetricFamily("fusebox_breaker_calls", "Guarded calls by outcome", labels=["breaker", "outcome"])
        transitions = CounterMetricFamily("fusebox_breaker_transitions", "Transitions into each state", labels=["breaker", "to"])
        probes = CounterMetricFamily("fusebox_breaker_probes_granted", "Half-open probe permits granted", labels=["breaker"])
        for name in names:
            snap = self.breakers.get(name).snapshot()
            for s in State:
                state.add_metric([name, s.value], 1.0 if snap.state == s else 0.0)
            failure_rate.add_metric([name], snap.window.failure_rate)
            slow_rate.add_metric([name], snap.window.slow_rate)
            window.add_metric([name], snap.window.calls)
            threshold.add_metric([name], snap.policy.failure_rate_threshold)
            for outcome in OUTCOMES:
                calls.add_metric([name, outcome], snap.totals.get(outcome, 0))
            for s in State:
                transitions.add_metric([name, s.value], snap.totals.get(f"to_{s.value}", 0))
            probes.add_metric([name], snap.totals.get("probes_granted", 0))
        yield from (state, failure_rate, slow_rate, window, threshold, calls, transitions, probes)

        jobs = CounterMetricFamily("fusebox_jobs", "Answered jobs by who served them", labels=["model", "served_by"])
        degraded = CounterMetricFamily("fusebox_jobs_degraded", "Jobs answered degraded (fallback or cache)", labels=["model"])
        errors = CounterMetricFamily("fusebox_job_errors", "Jobs that ended in an error for the caller", labels=["model", "error"])
        latency = HistogramMetricFamily("fusebox_job_latency_seconds", "Submission to answer", labels=["model"])
        for model in MODELS:
            figures = stats.read(self.client, self.settings.key_prefix, model)
            for field, value in figures.items():
                if field.startswith("served:"):
                    jobs.add_metric([model, field.removeprefix("served:")], value)
                elif field.startswith("error:"):
                    errors.add_metric([model, field.removeprefix("error:")], value)
            degraded.add_metric([model], figures.get("degraded", 0))
            buckets, running = [], 0.0
            for bound in stats.LATENCY_BUCKETS_MS:
                running += figures.get(f"latency:le_{bound}", 0)
                buckets.append((str(bound / 1000), running))
            running += figures.get("latency:le_inf", 0)
            buckets.append(("+Inf", running))
            latency.add_metric([model], buckets, figures.get("latency:sum_ms", 0.0) / 1000)
        yield from (jobs, degraded, errors, latency)

        depth = GaugeMetricFamily("fusebox_queue_depth", "Jobs waiting in each queue", labels=["queue"])
        parked = GaugeMetricFamily("fusebox_parked_jobs", "Jobs waiting for their model to recover", labels=["model"])
        pipe = self.client.pipeline(transaction=False)
        queues = [*MODELS, FALLBACK_QUEUE]
        for model in MODELS:
            pipe.hlen(f"{self.settings.key_prefix}:parked:{model}")
        answers = pipe.execute()
        try:  # from the broker itself, Redis or RabbitMQ (workers.broker)
            for queue, n in queue_depths(self.settings, queues, timeout=2).items():
                depth.add_metric([queue], n)
        except Exception:  # noqa: BLE001 - a broker that does not answer leaves the gauge out
            pass
        for model, n in zip(MODELS, answers):
            parked.add_metric([model], n)
        yield from (depth, parked)

        store = GaugeMetricFamily("fusebox_breaker_store_degraded", "1 while this process decides with its local breaker")
        store.add_metric([], 1.0 if self.breakers.degraded else 0.0)
        yield store
