"""Drives one breaker on any backend with a manual clock, so that one table of scenarios
runs unchanged on the in-memory machine and on the Redis scripts."""

from __future__ import annotations

from dataclasses import dataclass

from breaker.backend import BreakerBackend, RecordRequest
from breaker.policy import BreakerPolicy
from breaker.state import Admission, BreakerSnapshot, Control, Outcome, RecordResult, State, Ticket
from tests.support.clock import ManualClock


@dataclass
class Driver:
    backend: BreakerBackend
    clock: ManualClock
    policy: BreakerPolicy
    name: str = "model"
    who: str = "test:1"

    def admit(self) -> Admission:
        return self.backend.admit(self.name, self.policy, self.who)

    def ticket(self) -> Ticket:
        admission = self.admit()
        assert admission.admitted, f"expected admission, breaker is {admission.state}"
        assert admission.ticket is not None
        return admission.ticket

    def record(self, ticket: Ticket, outcome: Outcome = Outcome.SUCCESS, duration: float = 0.01) -> RecordResult:
        return self.backend.record(RecordRequest(self.name, self.policy, ticket, outcome, duration, self.who))

    def call(self, outcome: Outcome = Outcome.SUCCESS, duration: float = 0.01) -> RecordResult:
        return self.record(self.ticket(), outcome, duration)

    def calls(self, *outcomes: Outcome, duration: float = 0.01) -> list[RecordResult]:
        return [self.call(o, duration) for o in outcomes]

    def snapshot(self) -> BreakerSnapshot:
        return self.backend.snapshot(self.name, self.policy)

    @property
    def state(self) -> State:
        return self.snapshot().state

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def control(self, action: Control) -> None:
        self.backend.control(self.name, self.policy, action, "operator")

    def set_policy(self, **changes: object) -> BreakerPolicy:
        policy = BreakerPolicy.model_validate({**self.backend_policy().model_dump(), **changes})
        self.backend.set_policy(self.name, policy, "operator")
        return policy

    def backend_policy(self) -> BreakerPolicy:
        return self.backend.get_policy(self.name) or self.policy

    def trip(self) -> None:
        """Fails enough calls to trip from CLOSED."""
        for _ in range(self.backend_policy().minimum_calls):
            if self.state != State.CLOSED:
                break
            self.call(Outcome.FAILURE)
        assert self.state == State.OPEN
