"""Fault injection, switched per model through Redis, so that drills and tests can make a
model fail, stall or run out of memory across the whole fleet without a restart."""

from __future__ import annotations

import ctypes
import random
import signal
import time

import redis
from pydantic import BaseModel, ConfigDict, Field


class InjectedFault(RuntimeError):
    """A model failure made on purpose."""


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
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    oom_rate: float = Field(0.0, ge=0.0, le=1.0)
    grow_mb: float = Field(0.0, ge=0.0, le=4096.0)
    latency: float = Field(0.0, ge=0.0, le=3600.0)
    hang: bool = False
    stall: bool = False

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.oom_rate or self.grow_mb or self.latency or self.hang or self.stall)


#: What the ``grow_mb`` fault has leaked in this process (kept referenced on purpose).
_LEAKED: list[bytearray] = []


#: Seconds a worker process trusts the switch it last read: a switch reaches the whole fleet
#: within this, and a job does not pay a Redis round trip for a drill that is not running.
SWITCH_TTL = 0.25


class Faults:
    """Reads and writes fault switches (``<prefix>:faults:<model>``)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self._seen: dict[str, tuple[float, FaultSpec]] = {}

    def key(self, model: str) -> str:
        return f"{self.prefix}:faults:{model}"

    def set(self, model: str, spec: FaultSpec) -> None:
        if not spec.active:
            self.clear(model)
            return
        self.client.set(self.key(model), spec.model_dump_json())

    def clear(self, model: str) -> None:
        self.client.delete(self.key(model))

    def get(self, model: str) -> FaultSpec:
        raw = self.client.get(self.key(model))
        return FaultSpec.model_validate_json(raw) if raw else FaultSpec()

    def current(self, model: str) -> FaultSpec:
        """The switch as read at most SWITCH_TTL seconds ago."""
        now = time.monotonic()
        seen = self._seen.get(model)
        if seen is not None and now - seen[0] < SWITCH_TTL:
            return seen[1]
        spec = self.get(model)
        self._seen[model] = (now, spec)
        return spec

    def inject(self, model: str) -> None:
        """Applies the model's switch to the call about to run."""
        self.apply(model, self.current(model))

    @staticmethod
    def apply(model: str, spec: FaultSpec) -> None:
        """Does to the current call what ``spec`` says."""
        if not spec.active:
            return
        if spec.grow_mb:
            # Written, not just reserved: the pages must be resident to count.
            _LEAKED.append(bytearray(b"\x01") * int(spec.grow_mb * 1024 * 1024))
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
        roll = random.random()
        if roll < spec.oom_rate:
            raise MemoryError(f"simulated out of memory in {model} (fault injection)")
        if roll < spec.oom_rate + spec.error_rate:
            raise InjectedFault(f"injected failure in {model} (fault injection)")
