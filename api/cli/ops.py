"""Running and checking fusebox: ``fusebox demo``, ``fusebox doctor`` and ``fusebox serve``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from api.cli.context import fusebox_settings, open_client, require_redis
from api.cli.output import Json, out, print_json
from breaker import STORE_ERRORS
from breaker.connection import redact, redis_client
from workers.models import MODELS


def demo(
    jobs: Annotated[int, typer.Option(min=12, max=5000, help="How many jobs to submit in all.")] = 120,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the summary, as one JSON object.")] = False,
) -> None:
    """Start Redis (if none answers) and workers, submit real OCR and NLP jobs, inject a
    fault, and show the breaker trip, the fallbacks and the recovery."""
    from api.demo.story import Demo

    summary = Demo(jobs=jobs, console=None if as_json else out).run()
    if as_json:
        print_json(summary.model_dump(mode="json"))
    if summary.lost:
        raise typer.Exit(1)


def doctor(as_json: Json = False) -> None:
    """Check what fusebox depends on, from here: Redis, the broker, the breaker store, a
    live worker for each queue, workers deciding on a local breaker, open breakers, fault
    switches left on, parked jobs. Exit status 1 when anything fails (warnings do not)."""
    from workers import probe
    from workers.faults import Faults

    settings = fusebox_settings()
    checks: list[dict[str, str]] = []

    def note(name: str, status: str, detail: str) -> None:
        checks.append({"name": name, "status": status, "detail": detail})

    store = redis_client(settings.redis_url, 2, fail_fast=False)
    try:
        store.ping()
        note("redis", "ok", redact(settings.redis_url))
        redis_ok = True
    except STORE_ERRORS as exc:
        note("redis", "fail", f"{redact(settings.redis_url)}: {type(exc).__name__}: {exc}")
        redis_ok = False
    from workers.app import make_app

    celery_app = make_app(settings)
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        note("broker", "ok", redact(settings.broker))
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        note("broker", "fail", f"{redact(settings.broker)}: {type(exc).__name__}: {exc}")
    finally:
        celery_app.close()
    if redis_ok:
        try:
            view = probe.fleet(store, settings.key_prefix)
            for cover in view.queues:
                if cover.required or cover.workers:
                    status = "ok" if cover.workers else ("fail" if cover.required else "warn")
                    paused = sorted(set(cover.workers) - set(cover.consuming))
                    detail = f"{len(cover.workers)} live worker(s)" + (f", paused on {', '.join(paused)}" if paused else "")
                    note(f"queue {cover.queue}", status, detail)
            note("breaker store on workers", "fail" if view.store_degraded else "ok",
                 f"on a local breaker: {', '.join(view.store_degraded)}" if view.store_degraded
                 else f"{len(view.workers)} live worker(s) share the store")
            with open_client() as client:
                health = client.breakers.health()
                note("breaker store here", "ok" if health.shared else "fail",
                     "shared" if health.shared else f"local fail-safe: {health.last_error}")
                for name in sorted(MODELS):
                    snap = client.breakers.get(name).snapshot()
                    if snap.state.rejects:
                        note(f"breaker {name}", "warn", f"{snap.state.value} (trips: {snap.totals.get('to_open', 0)})")
            faults = Faults(store, settings.key_prefix)
            for name in sorted(MODELS):
                for target in (name, f"fallback.{name}"):
                    spec = faults.get(target)
                    if spec.active:
                        left = faults.remaining(target)
                        note(f"fault {target}", "warn", f"{spec.model_dump_json(exclude_defaults=True)}"
                                                        + (f", off in {left:.0f}s" if left is not None else ""))
                parked = int(store.hlen(f"{settings.key_prefix}:parked:{name}"))
                if parked:
                    note(f"parked {name}", "warn", f"{parked} job(s) waiting for the model")
        except STORE_ERRORS as exc:
            note("fleet", "fail", f"{type(exc).__name__}: {exc}")
    ok = all(c["status"] != "fail" for c in checks)
    if as_json:
        print_json({"ok": ok, "checks": checks})
    else:
        table = Table(title="fusebox doctor")
        for column in ("check", "status", "detail"):
            table.add_column(column)
        style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
        for c in checks:
            table.add_row(c["name"], f"[{style[c['status']]}]{c['status']}[/]", c["detail"])
        out.print(table)
    if not ok:
        raise typer.Exit(1)


def serve(
    host: Annotated[Optional[str], typer.Option(help="[FUSEBOX_API_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="[FUSEBOX_API_PORT]")] = None,
) -> None:
    """HTTP: /health/live, /health/ready, /health/fleet, /metrics, /breakers, /chaos, /jobs, and the live page at /."""
    import uvicorn

    from api.http import create_app

    settings = fusebox_settings(**{k: v for k, v in {"api_host": host, "api_port": port}.items() if v is not None})
    require_redis(settings)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")
