"""Refusals a process decided from its pushed state (an OPEN or FORCED_OPEN breaker turning
a call away without a round trip): counted like every refusal, as resilience4j counts every
not-permitted call. The recorder's thread sends them with its batches (breaker/recorder.py)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from breaker.errors import STORE_ERRORS, OutcomeUncertain
from breaker.state import Admission
from breaker.tally import REJECTED

if TYPE_CHECKING:
    from breaker.registry import Breakers


def send_refusals(owner: Breakers, counts: Counter[str]) -> None:
    """Adds ``counts`` (refusals by breaker name) to the store's ``rejected`` totals, exactly
    once; those the store did not take are tallied and handed back at rejoin like outcomes
    (a write that timed out under its batch id: the store is asked before it is counted)."""
    shared = owner.shared
    if shared is None:
        return  # no shared store: every admission was the local breaker's, which counted it
    batches: list[str | None] = [None] * len(counts)
    if not owner.failsafe.degraded:
        try:
            shared.count_rejections(counts)
            return
        except OutcomeUncertain as exc:
            batches = list(exc.batches)
            owner.failsafe.lost(exc)
        except STORE_ERRORS as exc:
            owner.failsafe.lost(exc)
    for (name, n), batch in zip(counts.items(), batches):
        owner.failsafe.tally.add_count(name, REJECTED, n, batch)


def counted_locally(owner: Breakers, name: str, answer: Admission) -> Admission:
    """The local breaker's answer while the store is unusable; a refusal is tallied too, so
    that the fleet's count has it after the rejoin (the local breaker's totals stay local)."""
    if not answer.admitted and owner.shared is not None:
        owner.failsafe.tally.add_count(name, REJECTED, 1)
    return answer
