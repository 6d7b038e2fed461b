"""The ``fusebox`` command.

    fusebox demo [--jobs N] [--json]                 the whole story, on a fresh machine
    fusebox submit PATH... --task ocr|sentiment|ner  a folder of images, a file of texts
    fusebox cancel JOB_ID [--json]                   cancel a queued or parked job
    fusebox breakers [--json]                        every breaker, at a glance
    fusebox breaker trip|reset|disable|metrics-only|force-open NAME
    fusebox breaker set NAME --failure-rate-threshold 0.4 ...   live, no restart
    fusebox breaker clear-policy NAME | history [NAME]
    fusebox chaos NAME --error-rate 0.5 --latency 2 --hang [--for 10m] | --off
    fusebox serve                                    HTTP: health, metrics, breaker page
    fusebox alerts [test]                            the alert service; a test message to every webhook
    fusebox doctor [--json]                          Redis, broker, store, a worker per queue, faults left on

Errors the user can fix (bad input, Redis not answering, an unknown breaker) print one line
and exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import redis
import typer
from rich.console import Console
from rich.table import Table

from api.services import ServiceError
from api.settings import ApiSettings
from api.views import snapshot_json
from breaker import STORE_ERRORS, BreakerPolicy, BreakerSnapshot, Control, InputError, State, StoreUnavailable
from breaker.connection import redact, redis_client
from breaker.ramp import RampStatus
from workers.jobs import BATCH_PRIORITY
from workers.models import MODELS
from workers.settings import WorkerSettings

app = typer.Typer(
    name="fusebox",
    help="Asynchronous OCR/NLP jobs behind a distributed circuit breaker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
breaker_app = typer.Typer(help="Operate one breaker: trip, reset, disable, metrics-only, force-open, set, history.",
                          no_args_is_help=True)
app.add_typer(breaker_app, name="breaker")
alerts_app = typer.Typer(help="Breaker alerts to webhooks: the service (no subcommand), or `test`.",
                         invoke_without_command=True)
app.add_typer(alerts_app, name="alerts")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

STATE_STYLE = {
    State.CLOSED: "green", State.OPEN: "bold red", State.HALF_OPEN: "yellow", State.FORCED_OPEN: "bold magenta",
    State.DISABLED: "dim", State.METRICS_ONLY: "cyan",
}


class UserError(Exception):
    """Something the user can fix; printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- shared plumbing ------------------------------------------------------------------------------


def _settings() -> WorkerSettings:
    try:
        return WorkerSettings.from_env()
    except ValueError as exc:
        raise UserError(f"bad FUSEBOX_* setting: {exc}", 2) from None


def _require_redis(settings: WorkerSettings) -> None:
    # Without this a command would quietly act on its process-local fail-safe breaker.
    try:
        redis_client(settings.redis_url, 2, fail_fast=False).ping()
    except STORE_ERRORS as exc:
        raise UserError(f"cannot reach Redis at {_redact(settings.redis_url)} (FUSEBOX_REDIS_URL): {exc}") from None


def _redact(url: str) -> str:
    return redact(url)  # every part of a sentinel:// URL, and its sentinel_password


def _client() -> Any:
    from api.client import FuseboxClient

    settings = _settings()
    _require_redis(settings)
    return FuseboxClient(settings)


def _model(name: str) -> str:
    if name not in MODELS:
        raise UserError(f"no breaker {name!r}; known: {', '.join(sorted(MODELS))}", 2)
    return name


def _fmt_rate(rate: float, threshold: float) -> str:
    style = "red" if rate >= threshold else ""
    text = f"{rate:.0%} / {threshold:.0%}"
    return f"[{style}]{text}[/]" if style else text


def breakers_table(snaps: list[BreakerSnapshot], ramps: dict[str, RampStatus] | None = None) -> Table:
    table = Table(title="fusebox breakers")
    for column in ("breaker", "state", "calls", "failure rate", "slow rate", "probes in", "slow start", "trips",
                   "since"):
        table.add_column(column)
    now_ms = time.time() * 1000
    for snap in snaps:
        retry = snap.retry_after
        table.add_row(
            snap.name,
            f"[{STATE_STYLE.get(snap.state, '')}]{snap.state.value}[/]",
            str(snap.window.calls),
            _fmt_rate(snap.window.failure_rate, snap.policy.failure_rate_threshold),
            _fmt_rate(snap.window.slow_rate, snap.policy.slow_call_rate_threshold),
            f"{retry:.1f}s" if retry is not None else "-",
            ((ramps or {}).get(snap.name) or RampStatus()).describe() or "-",  # "recovering: 8 of 32 slots"
            str(snap.totals.get("to_open", 0)),
            f"{max(0.0, (now_ms - snap.changed_at_ms) / 1000):.0f}s ago" if snap.changed_at_ms else "-",
        )
    return table


# -- demo ---------------------------------------------------------------------------------------------


@app.command()
def demo(
    jobs: Annotated[int, typer.Option(min=12, max=5000, help="How many jobs to submit in all.")] = 120,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the summary, as one JSON object.")] = False,
) -> None:
    """Start Redis (if none answers) and workers, submit real OCR and NLP jobs, inject a
    fault, and show the breaker trip, the fallbacks and the recovery."""
    from api.demo import Demo

    summary = Demo(jobs=jobs, console=None if as_json else out).run()
    if as_json:
        print(json.dumps(summary.model_dump(mode="json")))
    if summary.lost:
        raise typer.Exit(1)


# -- submit ---------------------------------------------------------------------------------------------


@app.command()
def submit(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or glob patterns; for text tasks .txt (one text "
                                                    "per line) or .jsonl ({\"text\": ...} or a JSON string per line).")],
    task: Annotated[str, typer.Option("--task", "-t", help="ocr, sentiment or ner.")] = "ocr",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the answers and write them.")] = True,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results, appended as JSONL; inputs "
                                                                         "already answered there are skipped.")] = None,
    deadline: Annotated[Optional[float], typer.Option(help="Seconds after which a degraded answer is preferred.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for all answers.")] = 600.0,
    priority: Annotated[int, typer.Option(min=0, max=9, help="0 (least urgent) to 9; batches default below "
                                                             "interactive jobs (6).")] = BATCH_PRIORITY,
) -> None:
    """Submit a folder of images or a file of texts; results as JSONL, progress on screen.
    Exit status 1 when any input was rejected, failed, or was not answered in time."""
    from api.batch import run_batch

    if task not in MODELS or task == "echo":
        raise UserError(f"--task must be one of: {', '.join(m for m in MODELS if m != 'echo')}", 2)
    if deadline is not None:
        from workers.inputs import check_deadline

        try:
            check_deadline(deadline)  # before anything is read or stored: nan, inf, 1e308
        except InputError as exc:
            raise UserError(f"--{exc}", 2) from None
    with _client() as client:
        report = run_batch(client, task, paths, out_path=out_path, wait=wait, deadline=deadline, timeout=timeout,
                           console=err, priority=priority)
    if report.failed or report.bad_inputs or report.pending:
        raise typer.Exit(1)


@app.command()
def cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id, as submitted (a `job_id` of `fusebox submit`).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Cancel a queued or parked job: it is never run, and reads CANCELLED. Exit status 1
    for an unknown job or one that already started or finished."""
    from api.client import CannotCancel, UnknownJob

    with _client() as client:
        try:
            outcome = client.cancel(job_id, reason="cancelled via CLI")
        except UnknownJob as exc:
            answer, code = {"job_id": job_id, "status": "unknown", "error": str(exc)}, 1
        except CannotCancel as exc:
            answer, code = {"job_id": job_id, "status": exc.status, "error": str(exc)}, 1
        else:
            answer, code = {"job_id": job_id, "status": "CANCELLED", "outcome": outcome}, 0
    if as_json:
        print(json.dumps(answer))
    elif code:
        err.print(f"{job_id}: {answer['error']}")
    else:
        out.print(f"{job_id}: {outcome}")
    if code:
        raise typer.Exit(code)


# -- breakers ---------------------------------------------------------------------------------------------


@app.command()
def breakers(as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Every breaker's state, window figures against thresholds, and trips."""
    with _client() as client:
        snaps = [client.breakers.get(n).snapshot() for n in sorted(set(MODELS) | set(client.breakers.names()))]
        ramps = {s.name: client.breakers.ramp(s.name) for s in snaps}
        store = client.breakers.health().model_dump(mode="json")
    if as_json:  # what GET /breakers answers
        print(json.dumps({"breakers": [snapshot_json(s, ramps[s.name]) for s in snaps], "store": store,
                          "at": time.time()}))
    else:
        out.print(breakers_table(snaps, ramps))


def _control(name: str, action: Control, reason: str, as_json: bool) -> None:
    with _client() as client:
        event = client.breakers.control(_model(name), action, reason or f"operator via CLI: {action.value}", who="cli")
        snap, ramp = client.breakers.get(name).snapshot(), client.breakers.ramp(name)
    if as_json:  # what POST /breakers/{name}/{action} answers
        print(json.dumps({"event": event.model_dump(mode="json"), "breaker": snapshot_json(snap, ramp)}))
        return
    frm = event.from_state.value if event.from_state else "?"
    out.print(f"{name}: {frm} -> [{STATE_STYLE.get(snap.state, '')}]{snap.state.value}[/]")


Reason = Annotated[str, typer.Option("--reason", help="Recorded in the event stream.")]
Json = Annotated[bool, typer.Option("--json", help="One JSON object, as the HTTP endpoint answers.")]


@breaker_app.command()
def trip(name: str, reason: Reason = "", as_json: Json = False) -> None:
    """Open the breaker now (normal recovery follows: probes after the wait)."""
    _control(name, Control.TRIP, reason, as_json)


@breaker_app.command()
def reset(name: str, reason: Reason = "", as_json: Json = False) -> None:
    """Back to CLOSED with an empty window."""
    _control(name, Control.RESET, reason, as_json)


@breaker_app.command()
def disable(name: str, reason: Reason = "", as_json: Json = False) -> None:
    """Always admit, record nothing."""
    _control(name, Control.DISABLE, reason, as_json)


@breaker_app.command("metrics-only")
def metrics_only(name: str, reason: Reason = "", as_json: Json = False) -> None:
    """Record and report, never reject."""
    _control(name, Control.METRICS_ONLY, reason, as_json)


@breaker_app.command("force-open")
def force_open(name: str, reason: Reason = "", as_json: Json = False) -> None:
    """Reject everything until reset (no probes)."""
    _control(name, Control.FORCE_OPEN, reason, as_json)


def _opt(help_text: str) -> Any:
    return typer.Option(help=help_text)


@breaker_app.command("set")
def set_policy(
    name: str,
    minimum_calls: Annotated[Optional[int], _opt("Calls in the window before it may trip.")] = None,
    failure_rate_threshold: Annotated[Optional[float], _opt("Failure rate (0-1) that trips it.")] = None,
    slow_call_duration: Annotated[Optional[float], _opt("Seconds after which a success counts as slow.")] = None,
    slow_call_rate_threshold: Annotated[Optional[float], _opt("Slow-call rate (0-1) that trips it.")] = None,
    window: Annotated[Optional[int], _opt("Sliding window, seconds.")] = None,
    wait_in_open: Annotated[Optional[float], _opt("Seconds OPEN before probes.")] = None,
    wait_in_open_multiplier: Annotated[Optional[float], _opt("Growth of the wait on repeated trips.")] = None,
    max_wait_in_open: Annotated[Optional[float], _opt("Cap of the growing wait.")] = None,
    permitted_calls_in_half_open: Annotated[Optional[int], _opt("Probe permits, cluster-wide.")] = None,
    max_wait_in_half_open: Annotated[Optional[float], _opt("Seconds before an unreported probe is reclaimed.")] = None,
    call_timeout: Annotated[Optional[float], _opt("Seconds a model call may take.")] = None,
    slow_start: Annotated[Optional[float], _opt("Seconds over which calls ramp up after a recovery (0: off).")] = None,
    bypass_callers: Annotated[Optional[str], _opt("Comma-separated callers that may bypass it ('' for none).")] = None,
    as_json: Json = False,
) -> None:
    """Change policy fields live: every worker uses them on its next call."""
    changes = {k: v for k, v in locals().items() if k not in ("name", "as_json") and v is not None}
    if not changes:
        raise UserError("nothing to change: give at least one --option (see --help)", 2)
    if "bypass_callers" in changes:
        changes["bypass_callers"] = [c.strip() for c in changes["bypass_callers"].split(",") if c.strip()]
    with _client() as client:
        current = client.breakers.get(_model(name)).policy
        try:
            policy = BreakerPolicy.model_validate({**current.model_dump(), **changes})
        except ValueError as exc:
            raise UserError(f"invalid policy: {_first_error(exc)}", 2) from None
        client.breakers.set_policy(name, policy, who="cli")
        snap, ramp = client.breakers.get(name).snapshot(), client.breakers.ramp(name)
    if as_json:  # what PUT /breakers/{name}/policy answers
        print(json.dumps(snapshot_json(snap, ramp)))
        return
    out.print(f"{name}: " + ", ".join(f"{k}={getattr(policy, k)}" for k in changes))


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


@breaker_app.command("clear-policy")
def clear_policy(name: str, as_json: Json = False) -> None:
    """Back to the policy the code configures (its tier's)."""
    with _client() as client:
        client.breakers.clear_policy(_model(name), who="cli")
        snap, ramp = client.breakers.get(name).snapshot(), client.breakers.ramp(name)
    if as_json:  # what DELETE /breakers/{name}/policy answers
        print(json.dumps(snapshot_json(snap, ramp)))
        return
    out.print(f"{name}: configured policy restored")


@breaker_app.command()
def history(
    name: Annotated[Optional[str], typer.Argument(help="One breaker; all by default.")] = None,
    count: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent transitions and operator actions, newest first (as ``GET /events``)."""
    with _client() as client:
        events = list(reversed(client.breakers.history(_model(name) if name else None, count)))
    if as_json:
        print(json.dumps({"events": [e.model_dump(mode="json") for e in events]}))
        return
    table = Table(title="breaker events")
    for column in ("when", "breaker", "transition", "why", "who"):
        table.add_column(column)
    for e in events:
        table.add_row(time.strftime("%H:%M:%S", time.localtime(e.at_ms / 1000)), e.breaker,
                      f"{e.from_state.value if e.from_state else '-'} -> {e.to_state.value if e.to_state else '-'}",
                      e.reason, e.who)
    out.print(table)


# -- chaos ----------------------------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h`` -> seconds.

    Raises:
      UserError: not a positive duration, or longer than a day.
    """
    from workers.faults import MAX_FAULT_TTL

    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:], None)
    number = raw[:-1] if scale is not None else raw
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise UserError(f"--for takes a duration like 90s, 10m or 2h, not {text!r}", 2) from None
    if not (0 < seconds <= MAX_FAULT_TTL):  # also refuses nan and inf
        raise UserError(f"--for must be more than 0 and at most {MAX_FAULT_TTL / 3600:.0f}h, not {text!r}", 2)
    return seconds


@app.command()
def chaos(
    name: str,
    error_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction of calls that fail.")] = 0.0,
    oom_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction that raise MemoryError.")] = 0.0,
    latency: Annotated[float, typer.Option(min=0.0, max=3600.0, help="Seconds added to each call.")] = 0.0,
    hang: Annotated[bool, typer.Option("--hang", help="Every call blocks until its timeout.")] = False,
    stall: Annotated[bool, typer.Option("--stall", help="Every call blocks until the hard time limit.")] = False,
    off: Annotated[bool, typer.Option("--off", help="Turn the fault off.")] = False,
    fallback: Annotated[bool, typer.Option("--fallback", help="Target the model's fallback path instead.")] = False,
    duration: Annotated[str, typer.Option("--for", help="How long the fault stays on (90s, 10m, 2h); it then "
                                                        "turns itself off.")] = "10m",
    as_json: Json = False,
) -> None:
    """Inject a fault into one model across the fleet (no restart) for a while (--for), or
    turn it off."""
    from api.views import fault_json
    from workers.faults import Faults, FaultSpec

    _model(name)
    ttl = parse_duration(duration)
    settings = _settings()
    _require_redis(settings)
    faults = Faults(redis_client(settings.redis_url, 5, fail_fast=False), settings.key_prefix)
    target = f"fallback.{name}" if fallback else name
    spec = FaultSpec(error_rate=error_rate, oom_rate=oom_rate, latency=latency, hang=hang, stall=stall)
    if off:
        if spec.active:
            raise UserError("--off turns the fault off; give it alone", 2)
        faults.clear(target)
    elif spec.active:
        faults.set(target, spec, ttl)
    else:
        raise UserError("no fault given: --error-rate, --oom-rate, --latency, --hang, --stall, or --off", 2)
    view = fault_json(name, fallback, faults.get(target), faults.remaining(target))
    if as_json:  # what POST/DELETE/GET /chaos/{model} answer
        print(json.dumps(view))
    elif view["active"]:
        out.print(f"{target}: fault on ({json.dumps(view['fault'])}) for {view['expires_in']:.0f}s more")
    else:
        out.print(f"{target}: fault off")


# -- doctor -----------------------------------------------------------------------------------------------------------


@app.command()
def doctor(as_json: Json = False) -> None:
    """Check what fusebox depends on, from here: Redis, the broker, the breaker store, a
    live worker for each queue, workers deciding on a local breaker, open breakers, fault
    switches left on, parked jobs. Exit status 1 when anything fails (warnings do not)."""
    from workers import probe
    from workers.faults import Faults

    settings = _settings()
    checks: list[dict[str, str]] = []

    def note(name: str, status: str, detail: str) -> None:
        checks.append({"name": name, "status": status, "detail": detail})

    db = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        db.ping()
        note("redis", "ok", _redact(settings.redis_url))
        redis_ok = True
    except STORE_ERRORS as exc:
        note("redis", "fail", f"{_redact(settings.redis_url)}: {type(exc).__name__}: {exc}")
        redis_ok = False
    from workers.app import make_app

    celery_app = make_app(settings)
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        note("broker", "ok", _redact(settings.broker))
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        note("broker", "fail", f"{_redact(settings.broker)}: {type(exc).__name__}: {exc}")
    finally:
        celery_app.close()
    if redis_ok:
        try:
            view = probe.fleet(db, settings.key_prefix)
            for cover in view.queues:
                if cover.required or cover.workers:
                    status = "ok" if cover.workers else ("fail" if cover.required else "warn")
                    paused = sorted(set(cover.workers) - set(cover.consuming))
                    detail = f"{len(cover.workers)} live worker(s)" + (f", paused on {', '.join(paused)}" if paused else "")
                    note(f"queue {cover.queue}", status, detail)
            note("breaker store on workers", "fail" if view.store_degraded else "ok",
                 f"on a local breaker: {', '.join(view.store_degraded)}" if view.store_degraded
                 else f"{len(view.workers)} live worker(s) share the store")
            with _client() as client:
                health = client.breakers.health()
                note("breaker store here", "ok" if health.shared else "fail",
                     "shared" if health.shared else f"local fail-safe: {health.last_error}")
                for name in sorted(MODELS):
                    snap = client.breakers.get(name).snapshot()
                    if snap.state.rejects:
                        note(f"breaker {name}", "warn", f"{snap.state.value} (trips: {snap.totals.get('to_open', 0)})")
            faults = Faults(db, settings.key_prefix)
            for name in sorted(MODELS):
                for target in (name, f"fallback.{name}"):
                    spec = faults.get(target)
                    if spec.active:
                        left = faults.remaining(target)
                        note(f"fault {target}", "warn", f"{spec.model_dump_json(exclude_defaults=True)}"
                                                        + (f", off in {left:.0f}s" if left is not None else ""))
                parked = int(db.hlen(f"{settings.key_prefix}:parked:{name}"))
                if parked:
                    note(f"parked {name}", "warn", f"{parked} job(s) waiting for the model")
        except STORE_ERRORS as exc:
            note("fleet", "fail", f"{type(exc).__name__}: {exc}")
    ok = all(c["status"] != "fail" for c in checks)
    if as_json:
        print(json.dumps({"ok": ok, "checks": checks}))
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


# -- alerts ---------------------------------------------------------------------------------------------------------


def _api_settings(**overrides: Any) -> ApiSettings:
    try:
        return ApiSettings.from_env(**overrides)
    except ValueError as exc:
        raise UserError(f"bad FUSEBOX_API_*/FUSEBOX_ALERT_* setting: {_first_error(exc)}", 2) from None


def _alert_sender(api: ApiSettings, settings: WorkerSettings) -> Any:
    from api.alerts import AlertSender

    if not api.webhooks:
        raise UserError("no webhooks: set FUSEBOX_ALERT_WEBHOOKS (format=url,...)", 2)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    return AlertSender(api.webhooks, client, settings.key_prefix, retries=api.alert_retries, lease=api.alert_lease)


@alerts_app.callback()
def alerts(ctx: typer.Context) -> None:
    """Run the alert service: one message per breaker transition to every webhook of
    FUSEBOX_ALERT_WEBHOOKS, needing no HTTP server. Any number of these (and of `fusebox
    serve`) share the work: each alert is delivered once, and taken over if its sender
    dies. Stops on SIGTERM or Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    import signal
    import threading

    from api.alerts import hook_label
    from breaker import Breakers

    api = _api_settings()
    settings = _settings()
    _require_redis(settings)
    sender = _alert_sender(api, settings)
    breakers = Breakers.from_url(settings.redis_url, settings=settings.breaker_settings(),
                                 policies={name: spec.policy for name, spec in MODELS.items()})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for name in MODELS:
            breakers.get(name)
        breakers.wait_until_subscribed(5.0)
        sender.start()
        remove = breakers.add_listener(sender)
        replayed = sender.replay(breakers.history(None, 1000), api.alert_replay)
        err.print(f"fusebox alerts: sending to {', '.join(hook_label(h) for h in api.webhooks)}; "
                  f"{replayed} transition(s) of the last {api.alert_replay:.0f}s re-checked")
        while not stop.wait(1.0):
            pass
        remove()
    finally:
        sender.stop()
        breakers.close()
    err.print(f"fusebox alerts: stopped ({sender.sent} sent, {sender.failed} failed, {sender.dropped} dropped)")


@alerts_app.command("test")
def alerts_test(
    message: Annotated[str, typer.Option(help="The text to send.")] = "fusebox alert test",
    as_json: Json = False,
) -> None:
    """Send a test message to every webhook now; exit status 1 if any did not accept it
    (DingTalk and WeCom errcodes included: a bad token, keyword or signature shows here)."""
    api = _api_settings()
    settings = _settings()
    sender = _alert_sender(api, settings)
    results = sender.send_test(message)
    if as_json:
        print(json.dumps({"results": [{"hook": r.hook, "ok": r.ok, "attempts": r.attempts, "problem": r.problem}
                                      for r in results]}))
    else:
        for r in results:
            out.print(f"{r.hook}: " + ("[green]ok[/]" if r.ok else f"[red]failed[/] after {r.attempts} attempt(s): "
                                                                   f"{r.problem}"))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


# -- serve ----------------------------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="[FUSEBOX_API_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="[FUSEBOX_API_PORT]")] = None,
) -> None:
    """HTTP: /health/live, /health/ready, /health/fleet, /metrics, /breakers, /chaos, /jobs, and the live page at /."""
    import uvicorn

    from api.http import create_app

    try:
        api = ApiSettings.from_env(**{k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    except ValueError as exc:
        raise UserError(f"bad FUSEBOX_API_* setting: {_first_error(exc)}", 2) from None
    settings = _settings()
    _require_redis(settings)
    uvicorn.run(create_app(settings, api), host=api.host, port=api.port, log_level="info")


def main() -> None:
    """The console script: typer (which prints usage errors and exits 2 itself), with the
    errors a user can fix printed as one line instead of a traceback."""
    try:
        app()
    except UserError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(exc.code)
    except InputError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except StoreUnavailable as exc:
        # An operator action that needs the shared breaker store, which stopped answering.
        err.print(f"[red]error:[/] {exc} (FUSEBOX_REDIS_URL)")
        sys.exit(1)
    except STORE_ERRORS as exc:
        err.print(f"[red]error:[/] {type(exc).__name__}: {exc}")
        sys.exit(1)
    except ServiceError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
