"""Fault injection, switched per model through Redis, so that drills and tests can make a
model fail, stall or run out of memory across the whole fleet without a restart."""

from __future__ import annotations

import ctypes
import random
import signal
import time
from typing import Literal

import redis
from pydantic import BaseModel, ConfigDict, Field

from breaker.keyspace import Keyspace
from workers.redis_calls import best_effort


class InjectedFault(RuntimeError):
    """A model failure made on purpose."""


class InjectedDeviceFault(OSError):
    """A broken device made on purpose: Paddle's message for a CUDA context that saw an
    illegal memory access (workers/devices/rules.py ejects the device for it)."""


#: What Paddle raises after an illegal memory access on a GPU.
DEVICE_FAULT_MESSAGE = "(External) CUDA error(700), an illegal memory access was encountered."


class FaultSpec(BaseModel):
    """What to do to every call of one model.

    Parameters:
      error_rate: fraction of calls that raise InjectedFault.
      oom_rate: fraction of calls that raise MemoryError, as a GPU out of memory does
        (the worker then recycles the process that hit it: workers/gpu.py).
      grow_mb: megabytes every call leaves allocated in its process, never freed: memory
        that creeps up, until ``FUSEBOX_MAX_MEMORY_PER_CHILD`` recycles the process.
      latency: seconds added to every call.
      hang: every call blocks until its timeout interrupts it.
      stall: every call blocks like one stuck inside a driver: with the timeout's signals
        masked, so that only the task's hard time limit (the pool killing the process)
        ends it.
      device_fault: every call raises Paddle's CUDA illegal-memory-access error (a broken
        GPU; set for one worker with ``--worker``).
      warmup_calls: a model that needs a warm-up after it recovers (a GPU model reloading,
        a cache refilling): each of the first ``warmup_calls`` calls fleet-wide after the
        switch is set takes ``warmup_base`` seconds more; one that starts while more than
        ``warmup_capacity`` warm-up calls are in flight overloads the cold model: it takes
        ``warmup_latency`` seconds more (``warmup_overload="slow"``) or fails with an out of
        memory error (``"oom"``, a GPU still loading its weights). Later calls run normally.
      warmup_capacity: warm-up calls the cold model takes at once.
      warmup_base: seconds added to a warm-up call within that capacity.
      warmup_latency: seconds added to an overloaded warm-up call (``slow``).
      warmup_overload: what an overloaded warm-up call does: ``slow`` or ``oom``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    oom_rate: float = Field(0.0, ge=0.0, le=1.0)
    grow_mb: float = Field(0.0, ge=0.0, le=4096.0)
    latency: float = Field(0.0, ge=0.0, le=3600.0)
    hang: bool = False
    stall: bool = False
    device_fault: bool = False
    warmup_calls: int = Field(0, ge=0, le=1_000_000)
    warmup_capacity: int = Field(0, ge=0, le=10_000)
    warmup_base: float = Field(0.0, ge=0.0, le=3600.0)
    warmup_latency: float = Field(0.0, ge=0.0, le=3600.0)
    warmup_overload: Literal["slow", "oom"] = "slow"

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.oom_rate or self.grow_mb or self.latency or self.hang or self.stall or self.device_fault
                    or (self.warmup_calls and (self.warmup_latency or self.warmup_base
                                               or self.warmup_overload == "oom")))


#: What the ``grow_mb`` fault has leaked in this process (kept referenced on purpose).
_LEAKED: list[bytearray] = []


#: Seconds a worker process trusts the switch it last read: a switch reaches the whole fleet
#: within this, and a job does not pay a Redis round trip for a drill that is not running.
SWITCH_TTL = 0.25


#: Seconds a fault switch stays on unless told otherwise: a drill someone forgets to turn
#: off must not keep failing a model in production for days.
DEFAULT_FAULT_TTL = 600.0
#: The longest a switch may be set for (one day).
MAX_FAULT_TTL = 24 * 3600.0


class Faults:
    """Reads and writes fault switches (``<prefix>:faults:<model>``); each expires after
    its time to live (Redis removes the key, so an expired switch is simply off)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self.keys = Keyspace(prefix)
        self._seen: dict[str, tuple[float, FaultSpec]] = {}

    def key(self, model: str, worker: str | None = None) -> str:
        return self.keys.worker_faults(model, worker) if worker else self.keys.faults(model)

    def set(self, model: str, spec: FaultSpec, ttl: float = DEFAULT_FAULT_TTL, worker: str | None = None) -> None:
        """Turns ``spec`` on for ``model`` for ``ttl`` seconds (an inactive spec turns it off).

        Parameters:
          model: the model's name (``fallback.<model>`` for its fallback path).
          spec: what to do to its calls.
          ttl: seconds until the switch turns itself off; 0 < ttl <= MAX_FAULT_TTL.
          worker: a worker's node name: the switch holds for that worker only.
        Raises:
          ValueError: ``ttl`` out of range.
        """
        if not 0 < ttl <= MAX_FAULT_TTL:
            raise ValueError(f"a fault lasts more than 0 s and at most {MAX_FAULT_TTL:.0f} s, not {ttl}")
        if not spec.active:
            self.clear(model, worker)
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*self.keys.fault_warmup(model))  # warm-up counts anew
            pipe.set(self.key(model, worker), spec.model_dump_json(), px=max(1, int(ttl * 1000)))
            pipe.execute()

    def remaining(self, model: str, worker: str | None = None) -> float | None:
        """Seconds until the model's switch turns itself off; None when it is off."""
        ms = int(self.client.pttl(self.key(model, worker)))
        return ms / 1000 if ms >= 0 else None

    def clear(self, model: str, worker: str | None = None) -> None:
        self.client.delete(self.key(model, worker))

    def get(self, model: str, worker: str | None = None) -> FaultSpec:
        raw = self.client.get(self.key(model, worker))
        return FaultSpec.model_validate_json(raw) if raw else FaultSpec()

    def current(self, model: str, worker: str | None = None) -> FaultSpec:
        """The switch as read at most SWITCH_TTL seconds ago."""
        now = time.monotonic()
        seen = self._seen.get(self.key(model, worker))
        if seen is not None and now - seen[0] < SWITCH_TTL:
            return seen[1]
        spec = self.get(model, worker)
        self._seen[self.key(model, worker)] = (now, spec)
        return spec

    def inject(self, model: str, worker: str | None = None) -> None:
        """Applies the model's switch, then this worker's own (``worker``: its node name),
        to the call about to run; an unreadable switch means no drill."""
        for target in (None, worker) if worker else (None,):
            spec = best_effort("reading the fault switch", lambda t=target: self.current(model, t), None)
            if spec is not None:
                self.apply(model, spec)

    def apply(self, model: str, spec: FaultSpec) -> None:
        """Does to the current call what ``spec`` says."""
        if not spec.active:
            return
        if spec.grow_mb:
            # Written, not just reserved: the pages must be resident to count.
            _LEAKED.append(bytearray(b"\x01") * int(spec.grow_mb * 1024 * 1024))
        if spec.warmup_calls:
            self._warm_up(model, spec)
        if spec.latency:
            time.sleep(spec.latency)
        if spec.hang:
            while True:  # the call's timeout ends this
                time.sleep(0.05)
        if spec.stall:
            # A call that never comes back to the interpreter, so no Python signal handler
            # (our timeout, Celery's soft limit) can run. The process's timers still fire,
            # but are handed to other threads while this one has them masked.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGUSR1})
            libc = ctypes.CDLL(None)
            while True:  # only SIGKILL ends this
                libc.sleep(3600)
        if spec.device_fault:
            raise InjectedDeviceFault(DEVICE_FAULT_MESSAGE)
        roll = random.random()
        if roll < spec.oom_rate:
            raise MemoryError(f"simulated out of memory in {model} (fault injection)")
        if roll < spec.oom_rate + spec.error_rate:
            raise InjectedFault(f"injected failure in {model} (fault injection)")

    def _warm_up(self, model: str, spec: FaultSpec) -> None:
        key, inflight = self.keys.fault_warmup(model)
        if int(self.client.incr(key)) > spec.warmup_calls:
            return
        try:
            overloaded = int(self.client.incr(inflight)) > spec.warmup_capacity
            if overloaded and spec.warmup_overload == "oom":
                raise MemoryError(f"simulated out of memory in {model}: overloaded while warming up (fault injection)")
            time.sleep(spec.warmup_latency if overloaded else spec.warmup_base)
        finally:
            self.client.decr(inflight)
