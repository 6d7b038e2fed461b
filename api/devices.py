"""The fleet's devices for operators: what ``fusebox workers [--json]`` and ``GET /workers``
show, and ``fusebox worker eject|restore`` (``POST /workers/{name}/eject|restore``) do.

A device serves one or more models and is judged per model (workers/devices): each row is
one device for one model, healthy, ejected (with its reason, since when, and when its
probe job is due) or probing.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import redis

from workers.devices.rules import EjectionRules
from workers.devices.store import DeviceRecord, DeviceStore
from workers.models import MODELS
from workers.settings import Settings


def device_store(client: redis.Redis, settings: Settings) -> DeviceStore:
    return DeviceStore(client, settings.key_prefix, EjectionRules.from_settings(settings))


def device_rows(store: DeviceStore, models: list[str] | None = None) -> list[DeviceRecord]:
    """Every device of every model (or of ``models``), by model then device."""
    rows: list[DeviceRecord] = []
    for model in models or list(MODELS):
        rows += store.records(model)
    return rows


def device_json(record: DeviceRecord, now: float | None = None, live_window: float = 30.0) -> dict[str, Any]:
    """One row as ``--json`` and ``GET /workers`` answer it (``live``: seen within
    ``live_window`` seconds)."""
    now = time.time() if now is None else now
    view = record.model_dump()
    view["next_probe_in"] = (round(max(0.0, record.until - now), 3)
                             if record.state != "healthy" and record.until else None)
    view["live"] = record.last_seen is not None and now - record.last_seen <= live_window
    return view


def workers_json(store: DeviceStore) -> dict[str, Any]:
    """``GET /workers``: the devices, and per model how many are ejected."""
    rows = device_rows(store)
    ejected: dict[str, list[str]] = {}
    for row in rows:
        if row.state != "healthy":
            ejected.setdefault(row.model, []).append(row.device)
    return {"devices": [device_json(r, live_window=store.rules.live_window) for r in rows], "ejected": ejected}


def matches(record: DeviceRecord, name: str) -> bool:
    """Whether an operator's NAME (a worker's node name or a device id) names this device."""
    return name in (record.device, record.worker) or record.device.startswith(f"{name.replace(':', '_')}/")


def operate(store: DeviceStore, name: str, action: Literal["eject", "restore"],
            model: str | None = None) -> list[DeviceRecord]:
    """Ejects (for one ejection time, past the cap: an operator's decision) or restores every
    device NAME names, for ``model`` or every model; returns the devices acted on.

    Raises:
      LookupError: NAME names no device fusebox has seen.
    """
    targets = [r for r in device_rows(store, [model] if model else None) if matches(r, name)]
    if not targets:
        raise LookupError(f"no device or worker named {name!r} has served a model (see `fusebox workers`)")
    for record in targets:
        if action == "eject":
            store.eject(record.model, record.device, "operator", "force")
        else:
            store.restore(record.model, record.device, "operator")
    return [r for r in device_rows(store, sorted({t.model for t in targets}))
            if any(r.device == t.device for t in targets)]
