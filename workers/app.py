"""The Celery app. Run workers the Celery way:

    celery -A workers worker -Q ocr -c 2         # a model host (GPU: FUSEBOX_DEVICE=gpu:0)
    celery -A workers worker -Q fallback -c 2    # a CPU host answering degraded jobs

JSON only (no pickle); late acks with redelivery when a worker dies; prefetch of one job
per process so that a paused queue leaves nothing stranded in a worker's memory; one queue
per model plus ``fallback``, each bound to a direct exchange of its own name (so that nothing
published for one queue is copied into another), with message priorities on both brokers.

Broker and result backend come from fusebox's settings alone (``FUSEBOX_BROKER_URL``, else
``CELERY_BROKER_URL``, else ``FUSEBOX_REDIS_URL``; see Settings): the app pins them so
that Celery's own environment variables cannot send workers to another broker than the one
fusebox's sweeps, metrics and readiness read.

Importing this module does not make its app Celery's *current* app: a producer embedding
fusebox in its own Celery project keeps its own. ``celery -A workers`` makes it current in
the worker itself.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from breaker.connection import celery_ssl, celery_transport_options, celery_url
from workers.broker import transport_options
from workers.jobs import INTERACTIVE_PRIORITY, MAX_PRIORITY
from workers.models import FALLBACK_QUEUE, MODELS
from workers.settings import Settings, settings

log = logging.getLogger(__name__)

RUNNERS_READY = "fusebox runners loaded:"

# Job priorities, 0 (least urgent) to 9 (most urgent), as AMQP numbers them. RabbitMQ orders
# a queue by ``x-max-priority``; kombu's Redis transport keeps one list per priority step
# (workers.broker) and serves the *lowest* number first, so :func:`broker_priority` turns
# ours around for it.


def broker_priority(priority: int, s: Settings) -> int:
    """The priority to put on a message so that higher ``priority`` is served first on
    this broker."""
    return MAX_PRIORITY - priority if s.broker_is_redis else priority


def queue(name: str) -> Queue:
    """A queue bound to a direct exchange of its own name, with its own name as routing key.

    Celery would bind a queue declared without an exchange to the default exchange
    (``fallback``, from ``task_default_queue``) with the default routing key, so a message
    published to ``fallback`` would be copied into every model queue."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name,
                 queue_arguments={"x-max-priority": MAX_PRIORITY})


def queue_names() -> list[str]:
    """Every queue fusebox declares: each model's, its bypass queue, its HALF_OPEN probe
    queue (workers.probe_pump), and ``fallback``."""
    return [*MODELS, *(spec.bypass_queue for spec in MODELS.values()), *(f"{name}.probe" for name in MODELS),
            FALLBACK_QUEUE]


class FuseboxCelery(Celery):
    """Celery, with every fusebox job message carrying its job's priority.

    Every path a job takes (the producer's routing, ``Task.replace`` to the fallback, the
    deadline sweeper, parked jobs sent back) publishes through ``send_task``: the priority
    is set here once, from the job's own ``priority`` field, in the broker's numbering."""

    fusebox_settings: Settings

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        if options.get("priority") is None and name.startswith("fusebox.") and args:
            job = args[0]
            wanted = job.get("priority", INTERACTIVE_PRIORITY) if isinstance(job, dict) else INTERACTIVE_PRIORITY
            if isinstance(wanted, int) and 0 <= wanted <= MAX_PRIORITY:
                options["priority"] = broker_priority(wanted, self.fusebox_settings)
        return super().send_task(name, args, kwargs, **options)


def make_app(s: Settings | None = None) -> Celery:
    """A fusebox Celery app; workers use the one below, producers may make their own for
    other settings (a test's private Redis, say)."""
    s = s or settings()
    s.check_celery_environment()
    # sentinel:// URLs: kombu's Sentinel transport and Celery's Sentinel result backend take
    # the master's name and the sentinels' credentials as transport options.
    app = FuseboxCelery("fusebox", broker=celery_url(s.broker), backend=celery_url(s.results),
                        set_as_current=False)
    app.fusebox_settings = s
    # Celery lets CELERY_BROKER_URL and CELERY_RESULT_BACKEND override what is passed here;
    # the read/write URLs and the backend class are looked up before those variables.
    app.backend_cls = celery_url(s.results)
    app.conf.update(
        broker_url=celery_url(s.broker),
        broker_read_url=celery_url(s.broker),
        broker_write_url=celery_url(s.broker),
        result_backend=celery_url(s.results),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={**transport_options(s), **celery_transport_options(s.broker)},
        result_backend_transport_options={
            **({"global_keyprefix": s.broker_keys} if s.broker_keys else {}),
            **celery_transport_options(s.results),
        },
        # TLS to a Sentinel-managed master (a rediss:// URL carries its options itself).
        broker_use_ssl=celery_ssl(s.broker) or False,
        redis_backend_use_ssl=celery_ssl(s.results),
        broker_connection_retry_on_startup=True,
        # A Redis restart must not lose a job being submitted: keep trying to publish.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 60, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        task_queues=[queue(name) for name in queue_names()],
        task_default_queue=FALLBACK_QUEUE,
        task_default_exchange=FALLBACK_QUEUE,
        task_default_routing_key=FALLBACK_QUEUE,
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
    from workers.consumption import ConsumptionControl, Housekeeping

    app.steps["consumer"].add(ConsumptionControl)
    app.steps["consumer"].add(Housekeeping)
    return app


app = make_app()


@signals.worker_init.connect
def _current_in_workers(sender: Any = None, **_: Any) -> None:
    """In a worker (and only there) this app is the current one."""
    app.set_current()


@signals.worker_process_init.connect
def _load_models(**_: Any) -> None:
    """Loads, in each pool process after the fork, the runners this worker will use: the
    models of the queues it consumes, and the degraded paths if it consumes ``fallback``.
    FUSEBOX_PRELOAD (comma-separated runner names, or ``none``) overrides the choice."""
    from workers import runtime
    from workers import tracing

    if tracing.enabled():
        tracing.instrument()
    names = settings().preload_names()
    if names is None:
        consumed = set(app.amqp.queues.consume_from or ())
        names = [m for m in MODELS if m in consumed]
        if FALLBACK_QUEUE in consumed:
            names += [f"fallback.{m}" for m, spec in MODELS.items() if spec.fallback_runner is not None]
    loaded = []
    for name in names:
        fallback = name.startswith("fallback.")
        model = name.removeprefix("fallback.")
        try:
            runtime.runner(model, fallback=fallback)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - a runner that cannot load fails its jobs, visibly
            log.exception("could not load runner %s; its jobs will fail over to the fallback", name)
    # WorkerProcess.start() waits for one such line per pool process.
    log.warning("%s %s", RUNNERS_READY, ",".join(loaded) or "-")


@signals.worker_process_shutdown.connect
def _flush_outcomes(**_: Any) -> None:
    from workers import runtime

    if runtime.breakers.cache_info().currsize:  # only if this process used its breakers
        runtime.breakers().flush(2.0)
    if runtime.job_stats.cache_info().currsize:
        runtime.job_stats().flush()


@signals.task_failure.connect
def _count_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    """A job that ends in an error for its caller (bad input, JobFailed) is counted too."""
    name = getattr(sender, "name", "") or ""
    if not name.startswith("fusebox.") or exception is None:
        return
    from workers import runtime

    model = name.rsplit(".", 1)[-1]
    runtime.job_stats().failed(model, type(exception).__name__)
