"""Worker health: a probe Kubernetes (or docker compose) can run, and the fleet's coverage.

Each worker's control thread calls :func:`beat` every couple of seconds (from its
heartbeat). That

- keeps a **probe file** (``FUSEBOX_PROBE_FILE``, default ``/tmp/fusebox-worker.json``,
  replaced atomically): which queues the worker serves and consumes, whether its Redis
  answered, its breaker store mode, when its consumer last beat (``at``) and when the file
  was written (``written_at``, every 2 s by a thread of its own). ``python -m
  workers.probe`` reads it. Liveness (plain): the file is fresh, so the process runs and
  is not frozen; a Redis or broker outage does not fail it (restarting would not help,
  and a fleet restarting at once would). Readiness (``--ready``): the consumer beat
  recently (it stops while the broker connection is being re-established), its Redis
  answered and its breakers decide with the shared store;
- records the worker in the **fleet index** (``<prefix>:fleet``, a sorted set by beat time)
  with its own health (``<prefix>:fleet:<hostname>``, expiring), so that fleet coverage
  (a live worker for each queue) and the fleet's store-degraded flags are read with one
  ZRANGEBYSCORE and one MGET, not a SCAN of the keyspace.

:func:`fleet` reads that view; ``/health/fleet``, ``/metrics`` and ``fusebox doctor`` use it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel, Field

from breaker.keyspace import Keyspace

log = logging.getLogger(__name__)

#: Seconds after which a worker that has not beaten counts as gone.
FLEET_TTL = 10.0
#: Default age (seconds) beyond which ``python -m workers.probe`` fails.
PROBE_MAX_AGE = 30.0


def probe_file() -> Path:
    """Where this worker writes its probe file (``FUSEBOX_PROBE_FILE``)."""
    from workers.settings import settings

    return settings().probe_path()


class WorkerHealth(BaseModel):
    """One worker's own report.

    Parameters:
      hostname: its Celery node name.
      queues: the queues it was started with (it serves them, paused or not).
      consuming: the queues it consumes now (a paused model queue is absent).
      at: wall-clock time of the report.
      redis_ok: whether its Redis answered this beat.
      store_shared: whether its breakers decide with the shared store.
      store_degraded: whether it decides with its process-local breaker (store lost).
      pid: its main process.
      written_at: when the probe file was last written (the process is alive).
      ejected: the models for which every device of this worker is ejected
        (workers/devices); while that is every model it serves, it is not ready.
    """

    hostname: str
    queues: list[str] = Field(default_factory=list)
    consuming: list[str] = Field(default_factory=list)
    at: float = 0.0
    redis_ok: bool = True
    store_shared: bool = True
    store_degraded: bool = False
    pid: int = 0
    written_at: float = 0.0
    ejected: list[str] = Field(default_factory=list)


#: Seconds between rewrites of the probe file.
PROBE_INTERVAL = 2.0
_last: WorkerHealth | None = None
_writer: tuple[int, threading.Thread] | None = None
_lock = threading.Lock()


def _keep_writing() -> None:
    """Rewrites the probe file with the last report, whatever the consumer is doing."""
    while True:
        time.sleep(PROBE_INTERVAL)
        with _lock:
            last = _last
        if last is not None:
            write_probe_file(last)


def _ensure_writer() -> None:
    global _writer
    if _writer is not None and _writer[0] == os.getpid() and _writer[1].is_alive():
        return
    thread = threading.Thread(target=_keep_writing, name="fusebox-probe", daemon=True)
    thread.start()
    _writer = (os.getpid(), thread)


def beat(report: dict[str, Any]) -> None:
    """Called from the worker's heartbeat with what it reports (hostname, queues,
    consuming, at): adds the breaker store mode, writes the probe file and the fleet
    index. Never raises: a failed write shows up as a stale probe or a missing worker."""
    from workers import runtime
    from workers.settings import settings

    try:
        store = runtime.breakers().health()
        health = WorkerHealth(**{k: report[k] for k in ("hostname", "queues", "consuming", "at", "ejected")
                                 if k in report},
                              store_shared=store.shared, store_degraded=store.degraded, pid=os.getpid())
    except Exception:  # noqa: BLE001 - a probe must never break the worker
        log.debug("probe report failed", exc_info=True)
        return
    try:
        keys, now = Keyspace(settings().key_prefix), time.time()
        pipe = runtime.redis_client().pipeline(transaction=False)
        pipe.set(keys.worker_health(health.hostname), health.model_dump_json(), ex=int(FLEET_TTL * 3))
        pipe.zadd(keys.fleet, {health.hostname: now})
        pipe.zremrangebyscore(keys.fleet, "-inf", now - 24 * 3600)  # long gone: forgotten
        pipe.execute()
    except Exception:  # noqa: BLE001 - reported in the probe file instead
        health.redis_ok = False
    global _last
    with _lock:
        _last = health
    _ensure_writer()
    write_probe_file(health)


def write_probe_file(health: WorkerHealth, path: Path | None = None) -> None:
    """Atomically replaces the probe file (a reader never sees half of it)."""
    target = path or probe_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # two writer threads
        tmp.write_text(health.model_copy(update={"written_at": time.time()}).model_dump_json(), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        log.warning("cannot write the probe file %s", target, exc_info=True)


def check(path: Path, max_age: float = PROBE_MAX_AGE, ready: bool = False, now: float | None = None) -> tuple[bool, str]:
    """The probe's verdict on a probe file.

    Parameters:
      path: the probe file.
      max_age: seconds after which the report is stale.
      ready: also require Redis answering and the shared breaker store.
      now: the current time (tests).
    Returns:
      whether the worker passes, and why (one line).
    """
    try:
        health = WorkerHealth.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, f"no probe file at {path} (worker not started, or FUSEBOX_PROBE_FILE differs)"
    except (OSError, ValueError) as exc:
        return False, f"unreadable probe file {path}: {exc}"
    now = time.time() if now is None else now
    written, beaten = now - health.written_at, now - health.at
    if written > max_age:
        return False, f"{health.hostname}: probe file not written for {written:.0f}s (> {max_age:.0f}s): frozen or gone"
    if ready and beaten > max_age:
        return False, (f"{health.hostname}: consumer last beat {beaten:.0f}s ago (> {max_age:.0f}s): "
                       "reconnecting to the broker, or stuck")
    if ready and not health.redis_ok:
        return False, f"{health.hostname}: Redis did not answer its last beat"
    if ready and not health.store_shared:
        return False, f"{health.hostname}: breakers decide locally (breaker store unavailable)"
    models = _model_queues(health.queues)
    if ready and models and set(models) <= set(health.ejected):
        return False, (f"{health.hostname}: every device ejected from {','.join(models)} (workers/devices): "
                       "the pod may be rescheduled")
    return True, (f"{health.hostname}: ok, beat {beaten:.1f}s ago, serving {','.join(health.queues) or '-'}, "
                  f"consuming {','.join(health.consuming) or '-'}")


def _model_queues(queues: list[str]) -> list[str]:
    from workers.models import MODELS

    return [q for q in queues if q in MODELS]


class QueueCoverage(BaseModel):
    """Who serves one queue."""

    queue: str
    required: bool
    workers: list[str]
    consuming: list[str]


class FleetView(BaseModel):
    """The fleet as its workers report it.

    Parameters:
      workers: live workers' reports (beaten within FLEET_TTL).
      queues: per queue, the live workers serving it.
      missing: required queues that no live worker serves.
      store_degraded: live workers deciding with their local breaker.
      ejected_devices: per model, its devices ejected now (workers/devices).
    """

    workers: list[WorkerHealth]
    queues: list[QueueCoverage]
    missing: list[str]
    store_degraded: list[str]
    ejected_devices: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing


def fleet(client: redis.Redis, prefix: str, now: float | None = None) -> FleetView:
    """Reads the fleet index (no SCAN). Raises redis errors to the caller."""
    from workers.models import FALLBACK_QUEUE, MODELS

    now, keys = time.time() if now is None else now, Keyspace(prefix)
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in client.zrangebyscore(keys.fleet, now - FLEET_TTL, "+inf")]
    raws = client.mget([keys.worker_health(n) for n in names]) if names else []
    workers = []
    for raw in raws:
        if raw:
            try:
                workers.append(WorkerHealth.model_validate_json(raw))
            except ValueError:
                continue
    required = [m for m, spec in MODELS.items() if not spec.drill] + [FALLBACK_QUEUE]
    all_queues = list(dict.fromkeys([*required, *MODELS, *(q for w in workers for q in w.queues)]))
    coverage = [
        QueueCoverage(queue=q, required=q in required, workers=sorted(w.hostname for w in workers if q in w.queues),
                      consuming=sorted(w.hostname for w in workers if q in w.consuming))
        for q in all_queues
    ]
    pipe = client.pipeline(transaction=False)
    for model in MODELS:
        pipe.zrange(keys.devices_ejected(model), 0, -1)
    ejected = {model: sorted(d.decode() if isinstance(d, bytes) else str(d) for d in got)
               for model, got in zip(MODELS, pipe.execute(), strict=True) if got}
    return FleetView(
        ejected_devices=ejected,
        workers=sorted(workers, key=lambda w: w.hostname),
        queues=coverage,
        missing=[c.queue for c in coverage if c.required and not c.workers],
        store_degraded=sorted(w.hostname for w in workers if w.store_degraded or not w.store_shared),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m workers.probe [--ready] [--max-age S] [--file PATH]``: exit 0 when the
    worker that writes the probe file is alive (and ready), 1 otherwise; one line either way."""
    parser = argparse.ArgumentParser(prog="python -m workers.probe", description=main.__doc__)
    parser.add_argument("--file", type=Path, default=None, help="the probe file (default: FUSEBOX_PROBE_FILE)")
    parser.add_argument("--max-age", type=float, default=PROBE_MAX_AGE, help="seconds before the report is stale")
    parser.add_argument("--ready", action="store_true", help="also require Redis and the shared breaker store")
    args = parser.parse_args(argv)
    ok, why = check(args.file or probe_file(), args.max_age, args.ready)
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
