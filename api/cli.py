"""The ``fusebox`` command.

    fusebox demo [--jobs N] [--json]                 the whole story, on a fresh machine
    fusebox submit PATH... --task ocr|sentiment|ner  a folder of images, a file of texts
    fusebox cancel JOB_ID [--json]                   cancel a queued or parked job
    fusebox breakers [--json]                        every breaker, at a glance
    fusebox breaker trip|reset|disable|metrics-only|force-open NAME
    fusebox breaker set NAME --failure-rate-threshold 0.4 ...   live, no restart
    fusebox breaker clear-policy NAME | history [NAME]
    fusebox chaos NAME --error-rate 0.5 --latency 2 --hang | --off
    fusebox serve                                    HTTP: health, metrics, breaker page

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
from breaker import BreakerPolicy, BreakerSnapshot, Control, InputError, State
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
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        raise UserError(f"cannot reach Redis at {_redact(settings.redis_url)} (FUSEBOX_REDIS_URL): {exc}") from None


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at else url


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


def breakers_table(snaps: list[BreakerSnapshot]) -> Table:
    table = Table(title="fusebox breakers")
    for column in ("breaker", "state", "calls", "failure rate", "slow rate", "probes in", "trips", "since"):
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
    if deadline is not None and deadline <= 0:
        raise UserError("--deadline must be a positive number of seconds", 2)
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
    if as_json:
        print(json.dumps({"breakers": [snapshot_json(s) for s in snaps]}))
    else:
        out.print(breakers_table(snaps))


def _control(name: str, action: Control, reason: str) -> None:
    with _client() as client:
        event = client.breakers.control(_model(name), action, reason or f"operator via CLI: {action.value}", who="cli")
        state = client.breakers.get(name).snapshot().state
    frm = event.from_state.value if event.from_state else "?"
    out.print(f"{name}: {frm} -> [{STATE_STYLE.get(state, '')}]{state.value}[/]")


Reason = Annotated[str, typer.Option("--reason", help="Recorded in the event stream.")]


@breaker_app.command()
def trip(name: str, reason: Reason = "") -> None:
    """Open the breaker now (normal recovery follows: probes after the wait)."""
    _control(name, Control.TRIP, reason)


@breaker_app.command()
def reset(name: str, reason: Reason = "") -> None:
    """Back to CLOSED with an empty window."""
    _control(name, Control.RESET, reason)


@breaker_app.command()
def disable(name: str, reason: Reason = "") -> None:
    """Always admit, record nothing."""
    _control(name, Control.DISABLE, reason)


@breaker_app.command("metrics-only")
def metrics_only(name: str, reason: Reason = "") -> None:
    """Record and report, never reject."""
    _control(name, Control.METRICS_ONLY, reason)


@breaker_app.command("force-open")
def force_open(name: str, reason: Reason = "") -> None:
    """Reject everything until reset (no probes)."""
    _control(name, Control.FORCE_OPEN, reason)


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
    bypass_callers: Annotated[Optional[str], _opt("Comma-separated callers that may bypass it ('' for none).")] = None,
) -> None:
    """Change policy fields live: every worker uses them on its next call."""
    changes = {k: v for k, v in locals().items() if k != "name" and v is not None}
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
    out.print(f"{name}: " + ", ".join(f"{k}={getattr(policy, k)}" for k in changes))


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


@breaker_app.command("clear-policy")
def clear_policy(name: str) -> None:
    """Back to the policy the code configures (its tier's)."""
    with _client() as client:
        client.breakers.clear_policy(_model(name), who="cli")
    out.print(f"{name}: configured policy restored")


@breaker_app.command()
def history(
    name: Annotated[Optional[str], typer.Argument(help="One breaker; all by default.")] = None,
    count: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent transitions and operator actions."""
    with _client() as client:
        events = client.breakers.history(_model(name) if name else None, count)
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
) -> None:
    """Inject a fault into one model across the fleet (no restart), or turn it off."""
    from workers.faults import Faults, FaultSpec

    _model(name)
    settings = _settings()
    _require_redis(settings)
    faults = Faults(redis.Redis.from_url(settings.redis_url), settings.key_prefix)
    target = f"fallback.{name}" if fallback else name
    if off:
        if error_rate or oom_rate or latency or hang or stall:
            raise UserError("--off turns the fault off; give it alone", 2)
        faults.clear(target)
        out.print(f"{target}: fault off")
        return
    spec = FaultSpec(error_rate=error_rate, oom_rate=oom_rate, latency=latency, hang=hang, stall=stall)
    if not spec.active:
        raise UserError("no fault given: --error-rate, --oom-rate, --latency, --hang, --stall, or --off", 2)
    faults.set(target, spec)
    out.print(f"{target}: fault on ({spec.model_dump_json(exclude_defaults=True)})")


# -- serve ----------------------------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="[FUSEBOX_API_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="[FUSEBOX_API_PORT]")] = None,
) -> None:
    """HTTP: /health/live, /health/ready, /metrics, /breakers, /jobs, and the live page at /."""
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
    except (redis.RedisError, OSError) as exc:
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
