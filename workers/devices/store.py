"""Every device's record for every model, in Redis (keys: breaker/keyspace.py), and the
ejection itself: an atomic step (a Lua script), so that workers ejecting at the same time
can never take out more than the cap allows.

Per model: ``devices:<model>`` (live devices by last seen), ``devices:<model>:ejected``
(ejected devices by when their probe job is due); per device and model: a hash (calls,
failures, streak, ejections, state, reason, since, until, last error, probe) and a list of
its most recent outcomes.
"""

from __future__ import annotations

import re
import time
from typing import Literal

import redis
from pydantic import BaseModel

from breaker.keyspace import Keyspace
from workers.devices.rules import EjectionRules

#: How long a device's record outlives its last call (a device that went away).
RECORD_TTL = 24 * 3600

Gate = Literal["run", "probe", "ejected"]

# KEYS: live zset, ejected zset, device hash, the model's stats hash (workers/stats.py: the
# ejections counter /metrics reads), the device events stream (alerts). ARGV: device, now,
# live window, max share, base time, max time, reason, mode (``new``: capped; ``again``: a
# failed probe; ``force``: an operator), the reason's metric label, the model. Returns {1, until, n} ejected, {2, until} already ejected, {0, ejected, live}
# refused by the cap.
_EJECT = """
local device, now = ARGV[1], tonumber(ARGV[2])
local since = now - tonumber(ARGV[3])
local count, already = 0, false
for _, d in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local seen = redis.call('ZSCORE', KEYS[1], d)
  if d == device then already = true
  elseif (not seen) or tonumber(seen) < since then redis.call('ZREM', KEYS[2], d)  -- gone: forgotten
  else count = count + 1 end
end
if already and ARGV[8] == 'new' then
  return {2, tostring(redis.call('ZSCORE', KEYS[2], device))}
end
redis.call('ZADD', KEYS[1], now, device)
if not already and ARGV[8] == 'new' then
  local live = redis.call('ZCOUNT', KEYS[1], since, '+inf')
  local cap = math.max(1, math.floor(live * tonumber(ARGV[4]) + 1e-9))
  if count + 1 > cap then return {0, count, live} end
end
local n = redis.call('HINCRBY', KEYS[3], 'ejections', 1)
local untl = now + math.min(tonumber(ARGV[5]) * n, tonumber(ARGV[6]))
redis.call('ZADD', KEYS[2], untl, device)
redis.call('HSET', KEYS[3], 'state', 'ejected', 'reason', ARGV[7], 'since', ARGV[2], 'until', tostring(untl),
           'probe', '', 'streak', 0)
redis.call('HINCRBY', KEYS[4], 'device_ejections:' .. ARGV[9], 1)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 10000, '*', 'action', 'ejected', 'model', ARGV[10], 'device', device,
           'reason', ARGV[7], 'at', ARGV[2], 'until', tostring(untl), 'ejections', n)
return {1, tostring(untl), n}
"""

# KEYS: ejected zset, device hash. ARGV: device, now, task id, lease. The first job on a
# device whose ejection ended is its probe; others wait their turn elsewhere.
_CLAIM = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due then return 'run' end
local now = tonumber(ARGV[2])
if tonumber(due) > now then return 'ejected' end
local probe = redis.call('HGET', KEYS[2], 'probe')
local at = tonumber(redis.call('HGET', KEYS[2], 'probe_at') or '0') or 0
if probe and probe ~= '' and probe ~= ARGV[3] and now - at < tonumber(ARGV[4]) then return 'ejected' end
redis.call('HSET', KEYS[2], 'probe', ARGV[3], 'probe_at', ARGV[2], 'state', 'probing')
return 'probe'
"""


#: The ejection reasons, as ``fusebox_device_ejections_total``'s ``reason`` label.
REASON_LABELS = ("device_fault", "consecutive_failures", "outlier", "probe_failed", "operator")


def reason_label(reason: str) -> str:
    """A bounded label for an ejection reason (workers/devices/rules.py's, or the probe's)."""
    if reason.startswith("probe failed"):
        return "probe_failed"
    if "outlier" in reason:
        return "outlier"
    label = reason.replace(" ", "_")
    return label if label in REASON_LABELS else "operator"


#: A URL's userinfo and token-like query values in an error's text: ``GET /workers`` is
#: public and shows the last error, which may quote a connection URL.
_SECRETS = re.compile(r"(?P<scheme>\w[\w+.-]*://)[^\s/@]*@|(?P<param>(?:password|passwd|token|secret|key|sign)=)[^&\s'\"]+",
                      re.IGNORECASE)


def _without_secrets(text: str) -> str:
    return _SECRETS.sub(lambda m: f"{m['scheme']}***@" if m["scheme"] else f"{m['param']}***", text)


class DeviceRecord(BaseModel):
    """One device as ``fusebox workers`` shows it."""

    model: str
    device: str
    worker: str = ""
    state: Literal["healthy", "ejected", "probing"] = "healthy"
    reason: str = ""
    since: float | None = None
    until: float | None = None
    calls: int = 0
    failures: int = 0
    streak: int = 0
    ejections: int = 0
    last_error: str = ""
    last_seen: float | None = None


class Ejection(BaseModel):
    """What an ejection attempt did."""

    ejected: bool
    already: bool = False
    until: float | None = None
    ejections: int = 0
    refused: str = ""


class DeviceStore:
    """Parameters:
      client: the workers' Redis.
      prefix: ``FUSEBOX_KEY_PREFIX``.
      rules: the ejection rules.
    """

    def __init__(self, client: redis.Redis, prefix: str, rules: EjectionRules) -> None:
        self.client, self.rules, self.keys = client, rules, Keyspace(prefix)
        self._eject = client.register_script(_EJECT)
        self._claim = client.register_script(_CLAIM)

    # -- what calls leave -------------------------------------------------------------------

    def seen(self, model: str, devices: list[str], now: float | None = None) -> None:
        """Marks devices live (a worker's heartbeat names the devices of its pool)."""
        if devices:
            self.client.zadd(self.keys.devices(model), {d: now or time.time() for d in devices})

    def record(self, model: str, device: str, ok: bool, worker: str = "", error: str = "") -> int:
        """Adds one call's outcome to the device's record; returns its failure streak."""
        now = time.time()
        key, calls = self.keys.device(model, device), self.keys.device_calls(model, device)
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(calls, 1 if ok else 0)
        pipe.ltrim(calls, 0, self.rules.window - 1)
        pipe.hincrby(key, "calls", 1)
        if ok:
            pipe.hset(key, "streak", 0)
        else:
            pipe.hincrby(key, "failures", 1)
            pipe.hincrby(key, "streak", 1)
        fields = {"worker": worker, "last_seen": repr(now)}
        if error:
            fields["last_error"] = _without_secrets(error)[:300]
        pipe.hset(key, mapping=fields)
        pipe.zadd(self.keys.devices(model), {device: now})
        pipe.expire(key, RECORD_TTL)
        pipe.expire(calls, RECORD_TTL)
        answers = pipe.execute()
        return 0 if ok else int(answers[4])

    def outcomes(self, model: str, device: str) -> list[bool]:
        return [v == b"1" for v in self.client.lrange(self.keys.device_calls(model, device), 0, -1)]

    def peers(self, model: str, device: str) -> list[list[bool]]:
        """The recent outcomes of the model's other live devices."""
        others = [d.decode() for d in self.live(model) if d.decode() != device]
        pipe = self.client.pipeline(transaction=False)
        for other in others:
            pipe.lrange(self.keys.device_calls(model, other), 0, -1)
        return [[v == b"1" for v in got] for got in pipe.execute()] if others else []

    def live(self, model: str) -> list[bytes]:
        since = time.time() - self.rules.live_window
        return list(self.client.zrangebyscore(self.keys.devices(model), since, "+inf"))

    # -- ejection ------------------------------------------------------------------------------

    def eject(self, model: str, device: str, reason: str,
              mode: Literal["new", "again", "force"] = "new") -> Ejection:
        """Ejects ``device`` from ``model``'s fleet unless the cap forbids it (``new``)."""
        r = self.rules
        got = self._eject(keys=[self.keys.devices(model), self.keys.devices_ejected(model),
                                self.keys.device(model, device), self.keys.stats(model), self.keys.device_events],
                          args=[device, repr(time.time()), r.live_window, r.max_share, r.base_time, r.max_time,
                                reason, mode, reason_label(reason), model])
        kind = int(got[0])
        if kind == 0:
            return Ejection(ejected=False, refused=f"{int(got[1])} of {int(got[2])} live devices already ejected")
        return Ejection(ejected=True, already=kind == 2, until=float(got[1]),
                        ejections=int(got[2]) if kind == 1 else 0)

    def restore(self, model: str, device: str, reason: str = "probe succeeded") -> bool:
        """Brings the device back (a clean window: its old failures are not held against it)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.keys.devices_ejected(model), device)
        pipe.hset(self.keys.device(model, device), mapping={"state": "healthy", "reason": reason,
                                                            "since": repr(time.time()), "until": "",
                                                            "probe": "", "streak": 0})
        pipe.delete(self.keys.device_calls(model, device))
        returned = bool(pipe.execute()[0])
        if returned:
            self.client.xadd(self.keys.device_events, {"action": "returned", "model": model, "device": device,
                                                       "reason": reason, "at": repr(time.time())},
                             maxlen=10_000, approximate=True)
        return returned

    def claim(self, model: str, device: str, task_id: str, lease: float) -> Gate:
        """``run`` (healthy), ``probe`` (this job is the device's probe) or ``ejected``."""
        got = self._claim(keys=[self.keys.devices_ejected(model), self.keys.device(model, device)],
                          args=[device, repr(time.time()), task_id, lease])
        return got.decode() if isinstance(got, bytes) else str(got)  # type: ignore[return-value]

    def release(self, model: str, device: str, task_id: str) -> None:
        """A probe job that never reached the model (its breaker refused it, say) hands the
        device's probe back for the next job."""
        key = self.keys.device(model, device)
        if (self.client.hget(key, "probe") or b"").decode() == task_id:
            self.client.hset(key, mapping={"probe": "", "state": "ejected"})

    def ejected(self, model: str) -> dict[str, float]:
        """The model's ejected devices, with the time each one's probe is due."""
        return {d.decode(): float(s) for d, s in self.client.zrange(self.keys.devices_ejected(model), 0, -1,
                                                                    withscores=True)}

    def healthy(self, model: str, besides: str | None = None) -> int:
        """Live devices of the model not ejected (other than ``besides``)."""
        ejected = self.ejected(model)
        return sum(1 for d in self.live(model) if d.decode() not in ejected and d.decode() != besides)

    # -- reading ---------------------------------------------------------------------------------

    def records(self, model: str) -> list[DeviceRecord]:
        """Every device seen serving ``model`` (live or recently ejected)."""
        names = {d.decode() for d in self.client.zrange(self.keys.devices(model), 0, -1)}
        names |= set(self.ejected(model))
        pipe = self.client.pipeline(transaction=False)
        ordered = sorted(names)
        for name in ordered:
            pipe.hgetall(self.keys.device(model, name))
        found = []
        for name, raw in zip(ordered, pipe.execute(), strict=True):
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            found.append(DeviceRecord(
                model=model, device=name, worker=fields.get("worker", ""),
                state=fields.get("state") or "healthy", reason=fields.get("reason", ""),
                since=_num(fields.get("since")), until=_num(fields.get("until")),
                calls=int(fields.get("calls", 0)), failures=int(fields.get("failures", 0)),
                streak=int(fields.get("streak", 0)), ejections=int(fields.get("ejections", 0)),
                last_error=fields.get("last_error", ""), last_seen=_num(fields.get("last_seen"))))
        return found


def _num(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None
