"""Every key fusebox keeps in Redis: its name, type, lifetime and writer, in one place.

The breaker's Lua scripts and the Python code of the workers and the producers build their
key names here and nowhere else; :data:`KEYS` describes each one (the table in
docs/architecture.md is generated from it, and a test checks that every name
:class:`Keyspace` builds is described). It lives in the breaker package, the lowest layer,
so that all three packages can use it; it only builds strings.

Not listed: the broker's queues and the result backend's ``celery-task-meta-*`` keys,
which belong to Celery and kombu (under ``FUSEBOX_BROKER_KEY_PREFIX``, by default
``<prefix>:``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from breaker.state import check_name

RedisType = Literal["string", "hash", "list", "set", "zset", "stream", "channel"]


@dataclass(frozen=True)
class KeyDoc:
    """One kind of key, as docs/architecture.md lists it.

    Parameters:
      pattern: its name, ``<prefix>`` first and ``<...>`` for the variable parts.
      type: its Redis type.
      lifetime: how long it lives (a TTL, a cap, or why it has none).
      writer: the module that writes it.
      holds: what it is for.
    """

    pattern: str
    type: RedisType
    lifetime: str
    writer: str
    holds: str


@dataclass(frozen=True)
class Keyspace:
    """The names of one deployment's keys.

    Parameters:
      prefix: the first part of every key and of the events channel
        (``FUSEBOX_KEY_PREFIX``), so that several deployments or test runs share one Redis.
    """

    prefix: str = "fusebox"

    # -- the breakers (written only by the Lua scripts in breaker/backends/lua) ---------------

    def breaker(self, name: str) -> list[str]:
        """The seven keys every breaker script takes, in the order ``common.lua`` names them."""
        base = self.breaker_state(name)
        return [base, f"{base}:window", f"{base}:permits", f"{base}:policy", self.breakers, self.events,
                f"{base}:applied"]

    def breaker_state(self, name: str) -> str:
        return f"{self.prefix}:breaker:{check_name(name)}"

    def history(self, name: str, hour: int) -> str:
        """One hour (of store time, ``second // 3600``) of a breaker's per-second record,
        kept 24 h for ``fusebox breaker what-if`` (``lua/shadow.lua`` derives the same name
        from the state key, because only the store knows its hour)."""
        return f"{self.breaker_state(name)}:history:{hour}"

    def ramp(self, name: str) -> list[str]:
        """The slow-start ramp's two keys (``ramp.lua``'s KEYS[8] and KEYS[9])."""
        base = self.breaker_state(name)
        return [f"{base}:ramp", f"{base}:slots"]

    @property
    def breakers(self) -> str:
        return f"{self.prefix}:breakers"

    @property
    def events(self) -> str:
        """The events stream; the pub/sub channel has the same name."""
        return f"{self.prefix}:events"

    @property
    def store_probe(self) -> str:
        return f"{self.prefix}:store-probe"

    # -- jobs --------------------------------------------------------------------------------

    def job(self, task_id: str) -> str:
        return f"{self.prefix}:job:{task_id}"

    def payload(self, digest: str) -> str:
        return f"{self.prefix}:payload:{digest}"

    def cached_result(self, model: str, version: str, content_hash: str) -> str:
        return f"{self.prefix}:cache:{model}:{version}:{content_hash}"

    def model_version(self, model: str) -> str:
        return f"{self.prefix}:model-version:{model}"

    def parked(self, model: str) -> str:
        return f"{self.prefix}:parked:{model}"

    def deadlines(self, model: str) -> str:
        return f"{self.prefix}:deadlines:{model}"

    def deadline_jobs(self, model: str) -> str:
        return f"{self.prefix}:deadline-jobs:{model}"

    def reroute(self, model: str) -> str:
        return f"{self.prefix}:reroute:{model}"

    @property
    def rerouted_prefix(self) -> str:
        """First part of the per-job markers ``<prefix>:rerouted:<task id>``."""
        return f"{self.prefix}:rerouted:"

    def parking_lock(self, model: str) -> str:
        """Held by the one process that sweeps a model's parked jobs."""
        return f"{self.parked(model)}:lock"

    def deadlines_lock(self, model: str) -> str:
        """Held by the one process that sweeps a model's deadlines."""
        return f"{self.deadlines(model)}:lock"

    # -- workers and operations -----------------------------------------------------------------

    def stats(self, model: str) -> str:
        return f"{self.prefix}:stats:{model}"

    def faults(self, model: str) -> str:
        return f"{self.prefix}:faults:{model}"

    def fault_warmup(self, model: str) -> list[str]:
        """A drill's warm-up counters: calls so far, and calls in flight."""
        base = f"{self.faults(model)}:warmup"
        return [base, f"{base}:inflight"]

    def worker_faults(self, model: str, worker: str) -> str:
        """A drill's fault switch for one worker only (``fusebox chaos MODEL --worker NAME``)."""
        return f"{self.faults(model)}:worker:{worker}"

    def device(self, model: str, device: str) -> str:
        """One device's record for one model (workers/devices/store.py)."""
        return f"{self.prefix}:device:{model}:{device}"

    def device_calls(self, model: str, device: str) -> str:
        """One device's most recent outcomes for one model, newest first."""
        return f"{self.device(model, device)}:calls"

    def devices(self, model: str) -> str:
        """The devices serving a model, by when each was last seen (live within a window)."""
        return f"{self.prefix}:devices:{model}"

    def devices_ejected(self, model: str) -> str:
        """A model's ejected devices, by when each may take its probe job."""
        return f"{self.devices(model)}:ejected"

    @property
    def device_events(self) -> str:
        """Every device ejection and return (api/device_alerts.py sends an alert for each)."""
        return f"{self.prefix}:device-events"

    def model_calls(self, model: str) -> list[str]:
        """The call log's two streams: calls started, calls ended."""
        base = f"{self.prefix}:model-calls:{model}"
        return [base, f"{base}:ends"]

    def heartbeat(self, hostname: str) -> str:
        return f"{self.prefix}:workers:{hostname}"

    @property
    def fleet(self) -> str:
        return f"{self.prefix}:fleet"

    def worker_health(self, hostname: str) -> str:
        return f"{self.prefix}:fleet:{hostname}"

    @property
    def consumption_audit(self) -> str:
        return f"{self.prefix}:control"

    def alert_claim(self, breaker: str, incarnation: str | int, epoch: int, hook: str) -> str:
        return f"{self.prefix}:alerted:{breaker}:{incarnation}:{epoch}:{hook}"


#: Every kind of key fusebox writes (docs/architecture.md's table is generated from this).
KEYS: tuple[KeyDoc, ...] = (
    KeyDoc("<prefix>:breaker:<name>", "hash", "none (noeviction: a lost breaker forgets a trip)",
           "breaker/backends/lua", "state, epoch, open-until, probes, totals, the fleet default policy"),
    KeyDoc("<prefix>:breaker:<name>:window", "hash", "none (buckets older than the window are dropped)",
           "breaker/backends/lua", "the sliding window's buckets: calls, failures, slow calls"),
    KeyDoc("<prefix>:breaker:<name>:permits", "hash", "none (emptied at each HALF_OPEN)", "breaker/backends/lua",
           "HALF_OPEN probe permits handed out, by ticket"),
    KeyDoc("<prefix>:breaker:<name>:policy", "hash", "none (until cleared)", "breaker/backends/lua/policy.lua",
           "the operator's stored policy, one field per setting"),
    KeyDoc("<prefix>:breaker:<name>:applied", "zset", "10 min, whatever the count", "breaker/backends/lua",
           "ids of record batches and hand-backs already applied (exactly once)"),
    KeyDoc("<prefix>:breaker:<name>:history:<hour>", "hash", "25 h after its last write",
           "breaker/backends/lua/shadow.lua", "calls, failures, slow calls per second of that hour (what-if replays)"),
    KeyDoc("<prefix>:breaker:<name>:ramp", "hash", "none (one per breaker)", "breaker/backends/lua/ramp.lua",
           "the slow-start ramp after a recovery: armed epoch, start"),
    KeyDoc("<prefix>:breaker:<name>:slots", "hash", "entries expire with their holder's lease",
           "breaker/backends/lua/ramp.lua", "calls in flight under the ramp, by token"),
    KeyDoc("<prefix>:breakers", "set", "none", "breaker/backends/lua", "every breaker's name"),
    KeyDoc("<prefix>:events", "stream", "capped at FUSEBOX_BREAKER_STREAM_MAXLEN", "breaker/backends/lua",
           "every transition (history, catch-up); the pub/sub channel of the same name carries them live"),
    KeyDoc("<prefix>:store-probe", "string", "10 s", "breaker/backends/lua/probe.lua",
           "written to learn that the store accepts writes again"),
    KeyDoc("<prefix>:job:<task id>", "hash", "7 days (as results)", "workers/lifecycle.py",
           "a job's record: accepted, running, parked, cancelled"),
    KeyDoc("<prefix>:payload:<sha256>", "string", "FUSEBOX_PAYLOAD_TTL", "api/client.py, workers/payloads.py",
           "an uploaded image, by content hash"),
    KeyDoc("<prefix>:cache:<model>:<version>:<hash>", "string", "FUSEBOX_CACHE_TTL", "workers/cache.py",
           "a model's answer, for the fallback"),
    KeyDoc("<prefix>:model-version:<model>", "string", "FUSEBOX_CACHE_TTL", "workers/cache.py",
           "the model version the cache is keyed on"),
    KeyDoc("<prefix>:parked:<model>", "hash", "until the model recovers or the job's deadline", "workers/parking.py",
           "jobs that asked to wait for the model"),
    KeyDoc("<prefix>:deadlines:<model>", "zset", "until taken or rerouted", "workers/deadlines.py",
           "queued jobs by deadline"),
    KeyDoc("<prefix>:deadline-jobs:<model>", "hash", "until taken or rerouted", "workers/deadlines.py",
           "the queued jobs with a deadline (to reroute them)"),
    KeyDoc("<prefix>:reroute:<model>", "hash", "until the fallback takes the job", "workers/deadlines.py",
           "jobs being handed to the fallback by the sweep"),
    KeyDoc("<prefix>:rerouted:<task id>", "string", "7 days", "workers/deadlines.py",
           "marks a job the sweep rerouted, so its original message is dropped"),
    KeyDoc("<prefix>:<parked|deadlines>:<model>:lock", "string", "seconds, renewed while a sweep runs",
           "workers/parking.py, workers/deadlines.py", "one sweeper at a time"),
    KeyDoc("<prefix>:stats:<model>", "hash", "none (counters)", "workers/stats.py",
           "answers by path, latency sums, dropped outcomes (for /metrics)"),
    KeyDoc("<prefix>:faults:<model>", "string", "10 min by default (`--for`)", "workers/faults.py",
           "a drill's fault switch"),
    KeyDoc("<prefix>:faults:<model>:warmup[:inflight]", "string", "with the switch", "workers/faults.py",
           "a drill's warm-up counters"),
    KeyDoc("<prefix>:faults:<model>:worker:<worker>", "string", "10 min by default (`--for`)", "workers/faults.py",
           "a drill's fault switch for one worker"),
    KeyDoc("<prefix>:device:<model>:<device>", "hash", "1 day after the device was last seen",
           "workers/devices/store.py", "a device's record for a model: calls, failures, streak, ejections, state"),
    KeyDoc("<prefix>:device:<model>:<device>:calls", "list", "the last FUSEBOX_DEVICE_WINDOW outcomes, 1 day",
           "workers/devices/store.py", "a device's recent outcomes (1 success, 0 failure), newest first"),
    KeyDoc("<prefix>:devices:<model>", "zset", "entries older than FUSEBOX_DEVICE_LIVE_WINDOW are ignored",
           "workers/devices/store.py", "the devices serving a model, by last seen"),
    KeyDoc("<prefix>:devices:<model>:ejected", "zset", "until the device's probe job succeeds",
           "workers/devices/store.py", "ejected devices, by the time their probe job is due"),
    KeyDoc("<prefix>:device-events", "stream", "capped at 10 000", "workers/devices/store.py",
           "every device ejection and return, for alerts"),
    KeyDoc("<prefix>:model-calls:<model>[:ends]", "stream", "capped at 10 000", "workers/call_log.py",
           "every model call's start and end (FUSEBOX_TRACE_MODEL_CALLS)"),
    KeyDoc("<prefix>:workers:<hostname>", "string", "10 s", "workers/consumption.py",
           "a worker's heartbeat: queues consumed, paused"),
    KeyDoc("<prefix>:fleet", "zset", "entries older than 10 s are ignored", "workers/probe.py",
           "the live workers' index"),
    KeyDoc("<prefix>:fleet:<hostname>", "string", "30 s", "workers/probe.py", "a worker's health report"),
    KeyDoc("<prefix>:control", "stream", "capped at 10 000", "workers/consumption.py",
           "audit of pause, resume and consumer changes"),
    KeyDoc("<prefix>:alerted:<breaker>:<incarnation>:<epoch>:<hook>", "string",
           "the lease while sending, then 7 days", "api/alerts.py", "an alert's claim and delivery mark"),
)
