"""The two implementations of the breaker's rules, proved the same on random runs.

The rules exist once per language: in Python (breaker/machine.py, breaker/window.py,
breaker/ramp.py; the in-memory backend, which is also every process's local fail-safe
breaker) and in Lua (breaker/backends/lua/; the shared breaker in Redis). Hypothesis drives
both with the same operations on the same manual clock (the Redis scripts take the test
clock's time instead of Redis TIME: RedisBackend's ``clock``, a path production never
uses): admissions, outcomes with durations, batches, clock steps (within and far beyond the
window), policy changes, operator actions and slow-start actions. After every step the two
must agree on every answer, and their snapshots on state, epoch, waits, window, probes,
streak, lifetime totals and the effective policy; the transition events on reason and
figures. See docs/breaker.md, "One source for every rule".
"""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from breaker.backend import RecordRequest
from breaker.backends.memory import InMemoryBackend
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.policy import BreakerPolicy
from breaker.state import Control, Outcome, Ticket
from tests.support.clock import ManualClock

pytestmark = pytest.mark.redis

NAME = "m"

policies = st.builds(
    BreakerPolicy,
    minimum_calls=st.integers(1, 6),
    failure_rate_threshold=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
    slow_call_duration=st.sampled_from([0.5, 1.0]),
    slow_call_rate_threshold=st.sampled_from([0.5, 1.0]),
    window=st.sampled_from([1, 2, 5, 60, 3600]),
    wait_in_open=st.sampled_from([0.0, 1.0, 2.5]),
    wait_in_open_multiplier=st.sampled_from([1.0, 1.5, 2.0]),
    max_wait_in_open=st.sampled_from([2.5, 6.0]),
    permitted_calls_in_half_open=st.integers(1, 3),
    max_wait_in_half_open=st.sampled_from([2.0, 4.0]),
    call_timeout=st.just(1.0),
    slow_start=st.sampled_from([0.0, 5.0]),
    consecutive_failures_threshold=st.sampled_from([None, 1, 2, 3]),
)
durations = st.sampled_from([0.0, 0.2, 0.4999, 0.5, 0.9999, 1.0, 1.5])


class MemoryAgainstRedis(RuleBasedStateMachine):
    client: redis.Redis

    @initialize(policy=policies, start=st.integers(1_600_000_000_000, 1_900_000_000_000))
    def setup(self, policy: BreakerPolicy, start: int) -> None:
        self.prefix = f"fusebox-diff-{uuid.uuid4().hex[:10]}"
        self.clock = ManualClock(start / 1000)
        self.memory = InMemoryBackend(clock=self.clock)
        self.redis = RedisBackend(self.client, Keyspace(self.prefix), clock=self.clock)
        self.policy = policy  # every caller's configured policy; operators store others
        self.outstanding: list[tuple[Ticket, Ticket]] = []  # (memory's, redis's) ticket of one call
        self.slots: list[str] = []

    def _admit(self) -> tuple[Ticket, Ticket] | None:
        m = self.memory.admit(NAME, self.policy, "w")
        r = self.redis.admit(NAME, self.policy, "w")
        assert r.model_dump(exclude={"ticket"}) == m.model_dump(exclude={"ticket"})
        if not m.admitted:
            return None
        assert m.ticket is not None and r.ticket is not None
        assert r.ticket.model_dump(exclude={"local"}) == m.ticket.model_dump(exclude={"local"})
        return m.ticket, r.ticket

    def _record(self, held: list[tuple[Ticket, Ticket]], outcomes: list[Outcome], ds: list[float]) -> None:
        def requests(i: int) -> list[RecordRequest]:
            return [RecordRequest(NAME, self.policy, h[i], o, d, "w") for h, o, d in zip(held, outcomes, ds)]

        mine = [self.memory.record(req) for req in requests(0)]
        theirs = self.redis.record_many(requests(1))
        assert [r.model_dump() for r in theirs] == [m.model_dump() for m in mine], (outcomes, ds)

    @rule()
    def admit(self) -> None:
        """A call admitted and still running (reported later, or never)."""
        held = self._admit()
        if held is not None:
            self.outstanding.append(held)

    @rule(outcome=st.sampled_from(list(Outcome)), duration=durations)
    def call(self, outcome: Outcome, duration: float) -> None:
        held = self._admit()
        if held is not None:
            self._record([held], [outcome], [duration])

    @rule(outcome=st.sampled_from([Outcome.FAILURE, Outcome.TIMEOUT, Outcome.SUCCESS]))
    def fast_call(self, outcome: Outcome) -> None:
        self.call(outcome, 0.0)

    @precondition(lambda self: self.outstanding)
    @rule(pick=st.integers(0, 1000), outcome=st.sampled_from(list(Outcome)), duration=durations)
    def record(self, pick: int, outcome: Outcome, duration: float) -> None:
        self._record([self.outstanding.pop(pick % len(self.outstanding))], [outcome], [duration])

    @precondition(lambda self: len(self.outstanding) >= 2)
    @rule(data=st.data())
    def record_batch(self, data: st.DataObject) -> None:
        """Outcomes reported together (the write-behind recorder's batch): the scripts judge
        them in order, exactly as the machine does one by one."""
        n = data.draw(st.integers(2, len(self.outstanding)))
        held = [self.outstanding.pop(0) for _ in range(n)]
        outcomes = data.draw(st.lists(st.sampled_from(list(Outcome)), min_size=n, max_size=n))
        ds = data.draw(st.lists(durations, min_size=n, max_size=n))
        self._record(held, outcomes, ds)

    @rule(seconds=st.sampled_from([0.001, 0.3, 0.999, 1.0, 2.0, 5.0, 59.0, 61.0, 3599.0, 7200.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def time_driven(self) -> None:
        """What a paused fleet's timer asks: due OPEN to HALF_OPEN, lapsed permits back."""
        assert self.redis.advance(NAME, self.policy, "t") == self.memory.advance(NAME, self.policy, "t")

    @rule(action=st.sampled_from(list(Control)), reason=st.sampled_from(["", "drill"]))
    def operator(self, action: Control, reason: str) -> None:
        m = self.memory.control(NAME, self.policy, action, "op", reason)
        r = self.redis.control(NAME, self.policy, action, "op", reason)
        assert same_event(m, r)

    @rule(policy=policies)
    def set_policy(self, policy: BreakerPolicy) -> None:
        self.memory.set_policy(NAME, policy, "op")
        self.redis.set_policy(NAME, policy, "op")

    @rule()
    def clear_policy(self) -> None:
        self.memory.clear_policy(NAME, "op", self.policy)
        self.redis.clear_policy(NAME, "op", self.policy)

    @rule(action=st.sampled_from(["arm", "acquire", "release", "status"]), pick=st.integers(0, 1000))
    def ramp(self, action: str, pick: int) -> None:
        """Slow start (breaker/ramp.py against ramp.lua)."""
        arg = ""
        if action == "arm":
            arg = str(self.memory.snapshot(NAME, self.policy).epoch)
        elif action == "acquire":
            arg = uuid.uuid4().hex
            self.slots.append(arg)
        elif action == "release" and self.slots:
            arg = self.slots.pop(pick % len(self.slots))
        m = self.memory.ramp(NAME, self.policy, action, arg)
        r = self.redis.ramp(NAME, self.policy, action, arg)
        assert r == m, action

    @invariant()
    def same_snapshot_and_history(self) -> None:
        if not hasattr(self, "memory"):
            return
        m = self.memory.snapshot(NAME, self.policy)
        r = self.redis.snapshot(NAME, self.policy)
        assert r.model_dump(exclude={"local"}) == m.model_dump(exclude={"local"})
        judged = ("transition", "would_trip")  # would_trip: METRICS_ONLY's shadow (issue 27)
        mine = [e for e in self.memory.history(NAME, 1000) if e.kind in judged]
        theirs = [e for e in self.redis.history(NAME, 1000) if e.kind in judged]
        assert self.redis.history_buckets(NAME) == self.memory.history_buckets(NAME)  # what-if's record
        assert len(mine) == len(theirs)
        assert all(same_event(a, b) for a, b in zip(mine, theirs))

    def teardown(self) -> None:
        if hasattr(self, "prefix"):
            keys = list(self.client.scan_iter(f"{self.prefix}:*"))
            if keys:
                self.client.delete(*keys)


def same_event(a: object, b: object) -> bool:
    fields = {"kind", "breaker", "from_state", "to_state", "reason", "at_ms", "epoch", "incarnation",
              "who", "window", "open_until_ms", "consecutive_trips"}
    return a.model_dump(include=fields) == b.model_dump(include=fields)  # type: ignore[attr-defined]


def test_memory_and_redis_backends_agree(redis_client: redis.Redis) -> None:
    MemoryAgainstRedis.client = redis_client
    run = MemoryAgainstRedis.TestCase
    run.settings = settings(
        max_examples=150,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()


# Failing examples the differential test found, kept as replays (a stateful test has no
# @example): each failed before its fix.
BASE = dict(minimum_calls=1, failure_rate_threshold=0.25, slow_call_duration=0.5, slow_call_rate_threshold=0.5,
            window=1, wait_in_open=0.0, max_wait_in_open=2.5, permitted_calls_in_half_open=1,
            max_wait_in_half_open=2.0, call_timeout=1.0, slow_start=0.0)


def replay(client: redis.Redis, policy: BreakerPolicy, *steps: tuple[str, dict[str, object]]) -> None:
    MemoryAgainstRedis.client = client
    machine = MemoryAgainstRedis()
    machine.setup(policy=policy, start=1_600_000_000_000)
    try:
        machine.same_snapshot_and_history()
        for step, kwargs in steps:
            getattr(machine, step)(**kwargs)
            machine.same_snapshot_and_history()
    finally:
        machine.teardown()


def test_a_breaker_never_used_reads_alike(redis_client: redis.Redis) -> None:
    """The in-memory snapshot created the breaker (its incarnation the time of the read);
    snapshot.lua reads without creating."""
    replay(redis_client, BreakerPolicy(**BASE), ("advance", {"seconds": 5.0}), ("call", {"outcome": Outcome.SUCCESS,
                                                                                        "duration": 0.0}))


def test_a_ramp_read_of_a_breaker_never_used(redis_client: redis.Redis) -> None:
    replay(redis_client, BreakerPolicy(**BASE), ("ramp", {"action": "arm", "pick": 0}))


def test_a_longer_window_holds_the_same_buckets(redis_client: redis.Redis) -> None:
    """Reading the in-memory window dropped buckets that Redis (whose reads write nothing)
    kept: an operator's longer window then counted them in one store only."""
    replay(redis_client, BreakerPolicy(**BASE), ("call", {"outcome": Outcome.SUCCESS, "duration": 0.0}),
           ("advance", {"seconds": 1.0}), ("set_policy", {"policy": BreakerPolicy(**{**BASE, "window": 2})}))
