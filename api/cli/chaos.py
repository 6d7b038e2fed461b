"""``fusebox chaos``: a fault switch for one model across the fleet, for a while."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from api.cli.context import fusebox_settings, known_model, require_redis
from api.cli.output import Json, UserError, out, print_json
from breaker.connection import redis_client


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h`` -> seconds.

    Parameters:
      text: what ``--for`` was given.
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


def chaos(
    name: str,
    error_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction of calls that fail.")] = 0.0,
    oom_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction that raise MemoryError.")] = 0.0,
    latency: Annotated[float, typer.Option(min=0.0, max=3600.0, help="Seconds added to each call.")] = 0.0,
    hang: Annotated[bool, typer.Option("--hang", help="Every call blocks until its timeout.")] = False,
    stall: Annotated[bool, typer.Option("--stall", help="Every call blocks until the hard time limit.")] = False,
    device_fault: Annotated[bool, typer.Option("--device-fault", help="Every call raises a CUDA illegal-memory-"
                                                                      "access error (a broken GPU).")] = False,
    worker: Annotated[str | None, typer.Option("--worker", help="One worker only (its node name, NAME@HOST: "
                                                                "`fusebox workers`).")] = None,
    off: Annotated[bool, typer.Option("--off", help="Turn the fault off.")] = False,
    fallback: Annotated[bool, typer.Option("--fallback", help="Target the model's fallback path instead.")] = False,
    duration: Annotated[str, typer.Option("--for", help="How long the fault stays on (90s, 10m, 2h); it then "
                                                        "turns itself off.")] = "10m",
    as_json: Json = False,
) -> None:
    """Inject a fault into one model across the fleet, or in one worker (--worker), with no
    restart, for a while (--for), or turn it off. Only workers started with FUSEBOX_CHAOS=1
    obey it."""
    from api.views import fault_json
    from workers.faults import Faults, FaultSpec

    known_model(name)
    ttl = parse_duration(duration)
    settings = fusebox_settings()
    require_redis(settings)
    faults = Faults(redis_client(settings.redis_url, 5, fail_fast=False), settings.key_prefix)
    target = f"fallback.{name}" if fallback else name
    spec = FaultSpec(error_rate=error_rate, oom_rate=oom_rate, latency=latency, hang=hang, stall=stall,
                     device_fault=device_fault)
    if off:
        if spec.active:
            raise UserError("--off turns the fault off; give it alone", 2)
        faults.clear(target, worker)
    elif spec.active:
        faults.set(target, spec, ttl, worker=worker)
    else:
        raise UserError("no fault given: --error-rate, --oom-rate, --latency, --hang, --stall, --device-fault, "
                        "or --off", 2)
    view = fault_json(name, fallback, faults.get(target, worker), faults.remaining(target, worker))
    if worker:
        view["worker"] = worker
        target = f"{target} on {worker}"
    if as_json:  # what POST/DELETE/GET /chaos/{model} answer
        print_json(view)
    elif view["active"]:
        out.print(f"{target}: fault on ({json.dumps(view['fault'])}) for {view['expires_in']:.0f}s more")
    else:
        out.print(f"{target}: fault off")
