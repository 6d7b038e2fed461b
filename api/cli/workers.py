"""``fusebox workers [--json]`` (every model worker's devices: healthy, ejected, probing)
and ``fusebox worker eject|restore NAME``. Each ``--json`` answer is what the matching HTTP
endpoint answers (``GET /workers``, ``POST /workers/{name}/eject|restore``)."""

from __future__ import annotations

import time
from typing import Annotated, Literal, Optional

import typer
from rich.table import Table

from api.cli.context import fusebox_settings, known_model, require_redis
from api.cli.output import Json, UserError, out, print_json
from api.devices import device_json, device_store, operate, workers_json
from breaker.connection import redis_client
from workers.devices.store import DeviceRecord, DeviceStore

worker_app = typer.Typer(help="Operate one worker's devices: eject, restore.", no_args_is_help=True)


def _store() -> DeviceStore:
    settings = fusebox_settings()
    require_redis(settings)
    return device_store(redis_client(settings.redis_url, 5, fail_fast=False), settings)


def _table(rows: list[DeviceRecord]) -> Table:
    table = Table(title="fusebox workers: devices")
    for column in ("model", "device", "state", "reason", "since", "next probe", "calls", "failures", "ejections"):
        table.add_column(column)
    now = time.time()
    for row in rows:
        view = device_json(row, now)
        style = {"healthy": "green", "ejected": "red", "probing": "yellow"}[row.state]
        table.add_row(row.model, row.device, f"[{style}]{row.state}[/]", row.reason or "-",
                      f"{now - row.since:.0f}s ago" if row.since else "-",
                      f"in {view['next_probe_in']:.0f}s" if view["next_probe_in"] is not None else "-",
                      str(row.calls), str(row.failures), str(row.ejections))
    return table


def show_workers(as_json: Json = False) -> None:
    """Every model worker's devices: healthy, or ejected (why, since when, next probe)."""
    view = workers_json(_store())
    if as_json:
        print_json(view)
        return
    rows = [DeviceRecord.model_validate({k: v for k, v in d.items() if k not in ("next_probe_in", "live")})
            for d in view["devices"]]
    if not rows:
        out.print("no device has served a model yet")
        return
    out.print(_table(rows))


def _operate(name: str, action: Literal["eject", "restore"], model: str | None, as_json: bool) -> None:
    if model is not None:
        known_model(model)
    try:
        rows = operate(_store(), name, action, model)
    except LookupError as exc:
        raise UserError(str(exc), 1) from None
    if as_json:
        print_json({"devices": [device_json(r) for r in rows]})
    else:
        out.print(_table(rows))


Model = Annotated[Optional[str], typer.Option("--model", help="Only this model (default: every model).")]


@worker_app.command("eject")
def eject(name: str, model: Model = None, as_json: Json = False) -> None:
    """Eject a worker's devices (NAME: its node name, or one device id) for one ejection
    time; its probe job then decides."""
    _operate(name, "eject", model, as_json)


@worker_app.command("restore")
def restore(name: str, model: Model = None, as_json: Json = False) -> None:
    """Bring a worker's ejected devices back at once."""
    _operate(name, "restore", model, as_json)
