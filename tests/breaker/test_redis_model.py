"""The Redis scripts against a naive reference model, on random call sequences.

The reference keeps every call with its time and recomputes the window from scratch; it
shares no code with breaker/machine.py or the Lua. Hypothesis drives both with the same
admissions, outcomes, clock steps, operator actions and policy changes; every decision
(admitted or not, which probe permit, applied or stale, the state after) must agree.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from breaker.backend import RecordRequest
from breaker.backends.redis import RedisBackend
from breaker.keyspace import Keyspace
from breaker.policy import BreakerPolicy
from breaker.state import Control, Outcome, State, Ticket
from tests.support.clock import ManualClock

pytestmark = pytest.mark.redis


@dataclass
class Reference:
    policy: BreakerPolicy
    state: str = "closed"
    epoch: int = 0
    open_until: int = 0
    trips: int = 0
    calls: list[tuple[int, bool, bool]] = field(default_factory=list)  # (ms, failed, slow)
    permits: dict[int, int] = field(default_factory=dict)
    permit_seq: int = 0
    probes: list[tuple[bool, bool]] = field(default_factory=list)

    def window(self, now: int) -> tuple[int, int, int]:
        first_second = now // 1000 - self.policy.window + 1
        inside = [c for c in self.calls if c[0] // 1000 >= first_second]
        return len(inside), sum(c[1] for c in inside), sum(c[2] for c in inside)

    def go(self, to: str, now: int) -> None:
        self.epoch += 1
        self.state = to
        self.calls, self.permits, self.probes = [], {}, []
        self.open_until = 0
        if to == "open":
            self.trips += 1
            wait = min(self.policy.wait_in_open * self.policy.wait_in_open_multiplier ** (self.trips - 1),
                       self.policy.max_wait_in_open)
            self.open_until = now + math.floor(wait * 1000 + 0.5)
        elif to == "closed":
            self.trips = 0

    def trips_on(self, calls: int, failures: int, slow: int) -> bool:
        p = self.policy
        return failures / calls >= p.failure_rate_threshold or slow / calls >= p.slow_call_rate_threshold

    def admit(self, now: int) -> tuple[bool, int | None]:
        if self.state == "open" and now >= self.open_until:
            self.go("half_open", now)
        if self.state == "half_open":
            if any(now - t >= self.policy.max_wait_in_half_open * 1000 for t in self.permits.values()):
                self.go("open", now)  # a probe outlived its wait: the model hangs
                return False, None
            if len(self.permits) + len(self.probes) < self.policy.permitted_calls_in_half_open:
                self.permit_seq += 1
                self.permits[self.permit_seq] = now
                return True, self.permit_seq
            return False, None
        return self.state in ("closed", "disabled", "metrics_only"), None

    def record(self, now: int, epoch: int, permit: int | None, outcome: Outcome, duration: float) -> bool:
        if self.state == "disabled" or epoch != self.epoch or outcome == Outcome.IGNORED and self.state != "half_open":
            return False
        failed = outcome in (Outcome.FAILURE, Outcome.TIMEOUT)
        slow = outcome == Outcome.SLOW or duration * 1000 >= self.policy.slow_call_duration * 1000
        if self.state in ("closed", "metrics_only"):
            self.calls.append((now, failed, slow))
            calls, failures, slows = self.window(now)
            if self.state == "closed" and calls >= self.policy.minimum_calls and self.trips_on(calls, failures, slows):
                self.go("open", now)
            return True
        if self.state == "half_open":
            if permit not in self.permits:
                return False
            del self.permits[permit]
            if outcome == Outcome.IGNORED:
                return False
            self.probes.append((failed, slow))
            if len(self.probes) >= self.policy.permitted_calls_in_half_open:
                n = len(self.probes)
                failures, slows = sum(p[0] for p in self.probes), sum(p[1] for p in self.probes)
                self.go("open" if self.trips_on(n, failures, slows) else "closed", now)
            return True
        return False


policies = st.builds(
    BreakerPolicy,
    minimum_calls=st.integers(1, 6),
    failure_rate_threshold=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
    slow_call_duration=st.sampled_from([0.5, 1.0]),
    slow_call_rate_threshold=st.sampled_from([0.5, 1.0]),
    window=st.integers(1, 5),
    wait_in_open=st.sampled_from([0.0, 1.0, 2.5]),
    wait_in_open_multiplier=st.sampled_from([1.0, 2.0]),
    max_wait_in_open=st.just(6.0),
    permitted_calls_in_half_open=st.integers(1, 3),
    max_wait_in_half_open=st.sampled_from([2.0, 4.0]),
    call_timeout=st.just(1.0),
)


class RedisAgainstReference(RuleBasedStateMachine):
    client: redis.Redis

    @initialize(policy=policies, start=st.integers(1_600_000_000_000, 1_900_000_000_000))
    def setup(self, policy: BreakerPolicy, start: int) -> None:
        self.prefix = f"fusebox-model-{uuid.uuid4().hex[:10]}"
        self.clock = ManualClock(start / 1000)
        self.backend = RedisBackend(self.client, Keyspace(self.prefix), clock=self.clock)
        self.policy = policy
        self.model = Reference(policy)
        self.outstanding: list[tuple[Ticket, int, int | None]] = []  # redis ticket, model epoch, model permit

    def now(self) -> int:
        return int(self.clock() * 1000)

    def _admit(self) -> tuple[Ticket, int, int | None] | None:
        answer = self.backend.admit("m", self.policy, "model")
        admitted, permit = self.model.admit(self.now())
        assert answer.admitted == admitted
        assert answer.state == State(self.model.state)
        if not admitted:
            return None
        assert answer.ticket is not None and answer.ticket.permit == permit
        return answer.ticket, self.model.epoch, permit

    def _record(self, held: tuple[Ticket, int, int | None], outcome: Outcome, duration: float) -> None:
        ticket, epoch, permit = held
        result = self.backend.record(RecordRequest("m", self.policy, ticket, outcome, duration, "model"))
        applied = self.model.record(self.now(), epoch, permit, outcome, duration)
        assert result.applied == applied, (outcome, duration)
        assert result.state == State(self.model.state)

    @rule()
    def admit(self) -> None:
        """Admits a call that stays running (reported later, or never)."""
        held = self._admit()
        if held is not None:
            self.outstanding.append(held)

    # Most steps are whole calls, as in production; two rules make them twice as likely.
    @rule(outcome=st.sampled_from([Outcome.SUCCESS, Outcome.FAILURE]))
    def fast_call(self, outcome: Outcome) -> None:
        held = self._admit()
        if held is not None:
            self._record(held, outcome, 0.0)

    @rule(outcome=st.sampled_from(list(Outcome)), duration=st.sampled_from([0.0, 0.0, 0.2, 0.5, 1.0, 1.5]))
    def call(self, outcome: Outcome, duration: float) -> None:
        held = self._admit()
        if held is not None:
            self._record(held, outcome, duration)

    @precondition(lambda self: self.outstanding)
    @rule(
        pick=st.integers(0, 1000),
        outcome=st.sampled_from(list(Outcome)),
        duration=st.sampled_from([0.0, 0.2, 0.5, 1.0, 1.5]),
    )
    def record(self, pick: int, outcome: Outcome, duration: float) -> None:
        self._record(self.outstanding.pop(pick % len(self.outstanding)), outcome, duration)

    @precondition(lambda self: len(self.outstanding) >= 2)
    @rule(data=st.data())
    def record_batch(self, data: st.DataObject) -> None:
        """Several outstanding calls reported in one record_many (as the write-behind
        recorder sends them): judged in order, exactly as if reported one by one."""
        n = data.draw(st.integers(2, len(self.outstanding)))
        held = [self.outstanding.pop(0) for _ in range(n)]
        outcomes = data.draw(st.lists(st.sampled_from(list(Outcome)), min_size=n, max_size=n))
        durations = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.5]), min_size=n, max_size=n))
        results = self.backend.record_many(
            [RecordRequest("m", self.policy, t, o, d, "model") for (t, _, _), o, d in zip(held, outcomes, durations)]
        )
        for result, (_, epoch, permit), outcome, duration in zip(results, held, outcomes, durations):
            applied = self.model.record(self.now(), epoch, permit, outcome, duration)
            assert (result.applied, result.state) == (applied, State(self.model.state)), (outcome, duration)

    @rule(seconds=st.sampled_from([0.001, 0.3, 0.999, 1.0, 2.0, 5.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(list(Control)))
    def operator(self, action: Control) -> None:
        self.backend.control("m", self.policy, action, "operator")
        due = self.model.state == "open" and self.now() >= self.model.open_until
        if action == Control.RESET or self.model.state != action.target.value or due:
            self.model.go(action.target.value, self.now())  # else it changes nothing

    @rule(threshold=st.sampled_from([0.25, 0.5, 1.0]), minimum=st.integers(1, 6))
    def change_policy(self, threshold: float, minimum: int) -> None:
        self.policy_stored = self.policy.model_copy(update={"failure_rate_threshold": threshold, "minimum_calls": minimum})
        self.backend.set_policy("m", self.policy_stored, "operator")
        self.model.policy = self.policy_stored
        model = self.model
        if model.state == "half_open" and any(
            self.now() - t >= model.policy.max_wait_in_half_open * 1000 for t in model.permits.values()
        ):
            model.go("open", self.now())  # policy.lua looks at overdue probes too

    @invariant()
    def same_state_and_window(self) -> None:
        if not hasattr(self, "backend"):
            return
        snap = self.backend.snapshot("m", self.policy)
        assert snap.state == State(self.model.state)
        assert snap.epoch == self.model.epoch
        calls, failures, slow = self.model.window(self.now())
        if self.model.state in ("closed", "metrics_only"):
            assert (snap.window.calls, snap.window.failures, snap.window.slow) == (calls, failures, slow)
        assert snap.consecutive_trips == self.model.trips

    def teardown(self) -> None:
        if hasattr(self, "prefix"):
            keys = list(self.client.scan_iter(f"{self.prefix}:*"))
            if keys:
                self.client.delete(*keys)


def test_redis_scripts_agree_with_the_reference_model(redis_client: redis.Redis) -> None:
    RedisAgainstReference.client = redis_client
    run = RedisAgainstReference.TestCase
    run.settings = settings(
        max_examples=200,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
