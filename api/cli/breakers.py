"""Breaker verbs: ``fusebox breakers`` (all at a glance) and ``fusebox breaker trip|reset|
disable|metrics-only|force-open|set|clear-policy|history``. Each ``--json`` answer is what
the matching HTTP endpoint answers."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from api.cli.context import known_model, open_client
from api.cli.output import Json, UserError, out, print_json, styled_state
from api.views import snapshot_json
from breaker import BreakerPolicy, BreakerSnapshot, Control
from breaker.events import MAX_REASON
from breaker.ramp import RampStatus
from workers.inputs import first_error
from workers.models import MODELS

breaker_app = typer.Typer(help="Operate one breaker: trip, reset, disable, metrics-only, force-open, set, history.",
                          no_args_is_help=True)

Reason = Annotated[str, typer.Option("--reason", help="Recorded in the event stream.")]


def _rate(rate: float, threshold: float) -> str:
    style = "red" if rate >= threshold else ""
    text = f"{rate:.0%} / {threshold:.0%}"
    return f"[{style}]{text}[/]" if style else text


def breakers_table(snaps: list[BreakerSnapshot], ramps: dict[str, RampStatus] | None = None) -> Table:
    """The ``fusebox breakers`` table: one row per breaker.

    Parameters:
      snaps: the breakers' snapshots, in the order shown.
      ramps: each breaker's slow-start ramp after a recovery, by name.
    """
    table = Table(title="fusebox breakers")
    for column in ("breaker", "state", "calls", "failure rate", "slow rate", "probes in", "slow start", "trips",
                   "since"):
        table.add_column(column)
    now_ms = time.time() * 1000
    for snap in snaps:
        retry = snap.retry_after
        table.add_row(
            snap.name,
            styled_state(snap.state),
            str(snap.window.calls),
            _rate(snap.window.failure_rate, snap.policy.failure_rate_threshold) if snap.window.judged
            else snap.window.judgement,  # "not judged: 3 of 5 calls"
            _rate(snap.window.slow_rate, snap.policy.slow_call_rate_threshold) if snap.window.judged else "-",
            f"{retry:.1f}s" if retry is not None else "-",
            ((ramps or {}).get(snap.name) or RampStatus()).describe() or "-",  # "recovering: 8 of 32 slots"
            str(snap.totals.get("to_open", 0)),
            f"{max(0.0, (now_ms - snap.changed_at_ms) / 1000):.0f}s ago" if snap.changed_at_ms else "-",
        )
    return table


def show_breakers(as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Every breaker's state, window figures against thresholds, and trips."""
    with open_client() as client:
        snaps = [client.breakers.get(n).snapshot() for n in sorted(set(MODELS) | set(client.breakers.names()))]
        ramps = {s.name: client.breakers.ramp(s.name) for s in snaps}
        store = client.breakers.health().model_dump(mode="json")
    if as_json:  # what GET /breakers answers
        print_json({"breakers": [snapshot_json(s, ramps[s.name]) for s in snaps], "store": store, "at": time.time()})
    else:
        out.print(breakers_table(snaps, ramps))


def _control(name: str, action: Control, reason: str, as_json: bool) -> None:
    if len(reason) > MAX_REASON:  # it goes into alerts and the event stream
        raise UserError(f"--reason is at most {MAX_REASON} characters, not {len(reason)}", 2)
    with open_client() as client:
        event = client.breakers.control(known_model(name), action, reason or f"operator via CLI: {action.value}",
                                        who="cli")
        snap, ramp = client.breakers.get(name).snapshot(), client.breakers.ramp(name)
    if as_json:  # what POST /breakers/{name}/{action} answers
        print_json({"event": event.model_dump(mode="json"), "breaker": snapshot_json(snap, ramp)})
        return
    before = event.from_state.value if event.from_state else "?"
    out.print(f"{name}: {before} -> {styled_state(snap.state)}")


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
    max_wait_in_half_open: Annotated[Optional[float], _opt("Seconds a probe may stay unreported before the breaker re-opens.")] = None,
    call_timeout: Annotated[Optional[float], _opt("Seconds a model call may take.")] = None,
    slow_start: Annotated[Optional[float], _opt("Seconds over which calls ramp up after a recovery (0: off).")] = None,
    bypass_callers: Annotated[Optional[str], _opt("Comma-separated callers that may bypass it ('' for none).")] = None,
    consecutive_failures_threshold: Annotated[
        Optional[int], _opt("Failures in a row that trip it, whatever the window holds (0: off).")] = None,
    as_json: Json = False,
) -> None:
    """Change policy fields live: every worker uses them on its next call."""
    changes = {k: v for k, v in locals().items() if k not in ("name", "as_json") and v is not None}
    if not changes:
        raise UserError("nothing to change: give at least one --option (see --help)", 2)
    if changes.get("consecutive_failures_threshold") == 0:
        changes["consecutive_failures_threshold"] = None
    if "bypass_callers" in changes:
        changes["bypass_callers"] = [c.strip() for c in changes["bypass_callers"].split(",") if c.strip()]
    with open_client() as client:
        current = client.breakers.get(known_model(name)).policy
        try:
            policy = BreakerPolicy.model_validate({**current.model_dump(), **changes})
        except ValueError as exc:
            raise UserError(f"invalid policy: {first_error(exc)}", 2) from None
        client.breakers.set_policy(name, policy, who="cli")
        snap, ramp = client.breakers.get(name).snapshot(), client.breakers.ramp(name)
    if as_json:  # what PUT /breakers/{name}/policy answers
        print_json(snapshot_json(snap, ramp))
        return
    out.print(f"{name}: " + ", ".join(f"{k}={getattr(policy, k)}" for k in changes))


@breaker_app.command("clear-policy")
def clear_policy(name: str, as_json: Json = False) -> None:
    """Back to the policy the code configures (its tier's)."""
    with open_client() as client:
        client.breakers.clear_policy(known_model(name), who="cli")
        snap, ramp = client.breakers.get(name).snapshot(), client.breakers.ramp(name)
    if as_json:  # what DELETE /breakers/{name}/policy answers
        print_json(snapshot_json(snap, ramp))
        return
    out.print(f"{name}: configured policy restored")


@breaker_app.command()
def history(
    name: Annotated[Optional[str], typer.Argument(help="One breaker; all by default.")] = None,
    count: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent transitions and operator actions, newest first (as ``GET /events``)."""
    with open_client() as client:
        events = list(reversed(client.breakers.history(known_model(name) if name else None, count)))
    if as_json:
        print_json({"events": [e.model_dump(mode="json") for e in events]})
        return
    table = Table(title="breaker events")
    for column in ("when", "breaker", "transition", "why", "who"):
        table.add_column(column)
    for e in events:
        table.add_row(time.strftime("%H:%M:%S", time.localtime(e.at_ms / 1000)), e.breaker,
                      f"{e.from_state.value if e.from_state else '-'} -> {e.to_state.value if e.to_state else '-'}",
                      e.reason, e.who)
    out.print(table)


@breaker_app.command("what-if")
def what_if(
    name: str,
    failure_rate_threshold: Annotated[Optional[float], _opt("Failure rate (0-1) that would trip it.")] = None,
    slow_call_rate_threshold: Annotated[Optional[float], _opt("Slow-call rate (0-1) that would trip it.")] = None,
    minimum_calls: Annotated[Optional[int], _opt("Calls in the window before it may trip.")] = None,
    window: Annotated[Optional[int], _opt("Sliding window, seconds.")] = None,
    wait_in_open: Annotated[Optional[float], _opt("Seconds OPEN after a trip (their calls are skipped).")] = None,
    hours: Annotated[int, typer.Option(min=1, max=24, help="How far back to replay.")] = 24,
    as_json: Json = False,
) -> None:
    """Replays the breaker's recorded calls (24 h of 1-second buckets) against its policy
    with these changes and says when it would have tripped."""
    from breaker.whatif import replay

    changes = {k: v for k, v in locals().items() if k not in ("name", "hours", "as_json", "replay") and v is not None}
    with open_client() as client:
        current = client.breakers.get(known_model(name)).policy
        try:
            policy = BreakerPolicy.model_validate({**current.model_dump(), **changes})
        except ValueError as exc:
            raise UserError(f"invalid policy: {first_error(exc)}", 2) from None
        if client.breakers.shared is None:
            raise UserError("what-if needs the shared store (FUSEBOX_REDIS_URL)", 2)
        buckets = client.breakers.shared.history_buckets(name, hours)
    trips = replay(buckets, policy)
    calls = sum(c for c, _, _ in buckets.values())
    if as_json:
        print_json({"breaker": name, "policy": policy.model_dump(mode="json"), "hours": hours, "calls": calls,
                    "seconds": len(buckets), "trips": [t.model_dump(mode="json") for t in trips]})
        return
    changed = ", ".join(f"{k}={v}" for k, v in changes.items()) or "its current policy"
    if not trips:
        out.print(f"{name}: with {changed}, would not have tripped over {calls} calls in the last {hours} h")
        return
    out.print(f"{name}: with {changed}, would have tripped {len(trips)} time(s) over {calls} calls "
              f"in the last {hours} h:")
    for t in trips:
        out.print(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t.at))}  {t.reason}")
