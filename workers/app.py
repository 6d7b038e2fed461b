"""The Celery app. Run workers the Celery way:

    celery -A workers worker -Q ocr -c 2         # a model host (GPU: FUSEBOX_DEVICE=gpu:0)
    celery -A workers worker -Q fallback -c 2    # a CPU host answering degraded jobs

JSON only (no pickle); late acks with redelivery when a worker dies; prefetch of one job
per process so that a paused queue leaves nothing stranded in a worker's memory; one queue
per model plus ``fallback``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from kombu import Queue

from workers.models import FALLBACK_QUEUE, MODELS
from workers.settings import WorkerSettings, settings

log = logging.getLogger(__name__)

RUNNERS_READY = "fusebox runners loaded:"


def make_app(s: WorkerSettings | None = None) -> Celery:
    """A fusebox Celery app; workers use the one below, producers may make their own for
    other settings (a test's private Redis, say)."""
    s = s or settings()
    app = Celery("fusebox", broker=s.broker, backend=s.results, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": s.visibility_timeout,
            # kombu scans for messages of vanished workers every interval x throttle seconds
            # (100 s by default); tie it to the visibility timeout instead.
            "unacked_restore_interval": max(1, min(10, s.visibility_timeout // 5)),
            "unacked_restore_throttle": 1,
            **({"global_keyprefix": s.broker_key_prefix} if s.broker_key_prefix else {}),
        },
        result_backend_transport_options=(
            {"global_keyprefix": s.broker_key_prefix} if s.broker_key_prefix else {}
        ),
        broker_connection_retry_on_startup=True,
        # A Redis restart must not lose a job being submitted: keep trying to publish.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 60, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        task_queues=[Queue(name) for name in MODELS]
        + [Queue(spec.bypass_queue) for spec in MODELS.values()]
        + [Queue(FALLBACK_QUEUE)],
        task_default_queue=FALLBACK_QUEUE,
        task_routes={
            **{spec.task: {"queue": spec.queue} for spec in MODELS.values()},
            **{spec.fallback_task: {"queue": FALLBACK_QUEUE} for spec in MODELS.values()},
        },
        # Storing a result must survive a Redis restart too: retry connection errors with
        # backoff (about a minute in all) instead of failing the job with them.
        result_backend_always_retry=True,
        result_backend_max_retries=40,
        result_backend_base_sleep_between_retries_ms=50,
        result_backend_max_sleep_between_retries_ms=2000,
        task_track_started=True,
        result_extended=True,
        result_expires=7 * 24 * 3600,
        # Flower and the metrics read task events.
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        # KiB; also how a process whose model ran out of memory is recycled (workers/gpu.py).
        worker_max_memory_per_child=s.max_memory_per_child * 1024 or None,
    )
    from workers.control import ConsumptionControl

    app.steps["consumer"].add(ConsumptionControl)
    return app


app = make_app()
app.set_current()


@signals.worker_process_init.connect
def _load_models(**_: Any) -> None:
    """Loads, in each pool process after the fork, the runners this worker will use: the
    models of the queues it consumes, and the degraded paths if it consumes ``fallback``.
    FUSEBOX_PRELOAD (comma-separated runner names, or ``none``) overrides the choice."""
    import os

    from workers import runtime as rt
    from workers import tracing

    if tracing.enabled_by_env():
        tracing.instrument()
    wanted = os.environ.get("FUSEBOX_PRELOAD")
    if wanted is not None:
        names = [] if wanted.strip() in ("", "none") else [n.strip() for n in wanted.split(",")]
    else:
        consumed = set(app.amqp.queues.consume_from or ())
        names = [m for m in MODELS if m in consumed]
        if FALLBACK_QUEUE in consumed:
            names += [f"fallback.{m}" for m, spec in MODELS.items() if spec.fallback_runner is not None]
    loaded = []
    for name in names:
        fallback = name.startswith("fallback.")
        model = name.removeprefix("fallback.")
        try:
            rt.runner(model, fallback=fallback)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - a runner that cannot load fails its jobs, visibly
            log.exception("could not load runner %s; its jobs will fail over to the fallback", name)
    # WorkerProcess.start() waits for one such line per pool process.
    log.warning("%s %s", RUNNERS_READY, ",".join(loaded) or "-")


@signals.worker_process_shutdown.connect
def _flush_outcomes(**_: Any) -> None:
    from workers import runtime as rt

    if rt.breakers.cache_info().currsize:  # only if this process used its breakers
        rt.breakers().flush(2.0)
    if rt.job_stats.cache_info().currsize:
        rt.job_stats().flush()


@signals.task_failure.connect
def _count_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    """A job that ends in an error for its caller (bad input, JobFailed) is counted too."""
    name = getattr(sender, "name", "") or ""
    if not name.startswith("fusebox.") or exception is None:
        return
    from workers import runtime as rt

    model = name.rsplit(".", 1)[-1]
    rt.job_stats().failed(model, type(exception).__name__)
