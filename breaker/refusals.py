"""Refusals a process decided from its pushed state (an OPEN or FORCED_OPEN breaker turning
a call away without a round trip): counted like every refusal, as resilience4j counts every
not-permitted call. The recorder's thread sends them with its batches (breaker/recorder.py)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from breaker.errors import STORE_ERRORS

if TYPE_CHECKING:
    from breaker.registry import Breakers


def send_refusals(owner: Breakers, counts: Counter[str]) -> None:
    """Adds ``counts`` (refusals by breaker name) to the store's ``rejected`` totals; when the
    store cannot take them they are tallied and handed back at rejoin, like outcomes (a
    write that timed out after it ran is then counted twice: refusals carry no batch id)."""
    shared = owner.shared
    if shared is None:
        return  # no shared store: every admission was the local breaker's, which counted it
    if not owner.failsafe.degraded:
        try:
            shared.count_rejections(counts)
            return
        except STORE_ERRORS as exc:
            owner.failsafe.lost(exc)
    for name, n in counts.items():
        owner.failsafe.tally.add_count(name, "rejected", n)
