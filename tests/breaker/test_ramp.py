"""Slow start (breaker.ramp): the fleet-wide limit on calls in flight after a recovery, the
same on the Redis script and in memory, time stepped by hand."""

from __future__ import annotations

import pytest

from breaker.policy import BreakerPolicy
from breaker.ramp import ramp_limit
from breaker.state import Control, Outcome, State
from tests.support.driver import Driver

pytestmark = pytest.mark.redis


def recover(driver: Driver, arm: bool = True) -> int:
    """Trips the breaker, arms the ramp in HALF_OPEN (as the probe pump does), lets the
    probes close it; returns the CLOSED epoch."""
    driver.control(Control.TRIP)
    driver.advance(driver.policy.wait_in_open)
    tickets = [driver.ticket() for _ in range(driver.policy.permitted_calls_in_half_open)]
    if arm:
        assert ramp(driver, "arm", str(tickets[0].epoch)).armed
        assert not ramp(driver, "arm", str(tickets[0].epoch)).armed  # idempotent: every worker may ask
    for ticket in tickets:
        driver.record(ticket, Outcome.SUCCESS)
    snap = driver.snapshot()
    assert snap.state == State.CLOSED
    return snap.epoch


def ramp(driver: Driver, action: str, arg: str = ""):  # type: ignore[no-untyped-def]
    return driver.backend.ramp(driver.name, driver.policy, action, arg)  # type: ignore[attr-defined]


def test_the_limit_starts_at_the_probe_count_and_doubles_to_unlimited() -> None:
    assert [ramp_limit(2, t, 5000) for t in (0, 999, 1000, 2000, 3000, 4999, 5000)] == [2, 2, 4, 8, 16, 32, None]
    assert ramp_limit(3, 0, 0) is None  # slow start off


def test_slots_are_limited_fleet_wide_and_the_limit_grows(driver: Driver) -> None:
    driver.policy = driver.set_policy(slow_start=5.0)
    epoch = recover(driver)  # permitted_calls_in_half_open = 3
    status = ramp(driver, "status")
    assert status.active and status.limit == 3 and status.epoch == epoch

    held = [ramp(driver, "acquire", f"t{i}") for i in range(5)]
    assert [h.granted for h in held] == [True, True, True, False, False]
    assert ramp(driver, "status").describe() == "recovering: 3 of 3 slots"
    ramp(driver, "release", "t0")
    assert ramp(driver, "acquire", "t3").granted  # a freed slot is taken again

    driver.advance(1.0)  # second step: twice the limit
    assert ramp(driver, "status").limit == 6
    assert [ramp(driver, "acquire", f"u{i}").granted for i in range(4)] == [True, True, True, False]

    driver.advance(4.0)  # the period is over: no limit, no slots kept
    over = ramp(driver, "acquire", "late")
    assert over.granted and not over.slot and not over.active


def test_the_ramp_counts_from_the_first_call_after_the_close(driver: Driver) -> None:
    # Workers take a moment to resume: a limit that grew while nobody called would let the
    # whole fleet in at once.
    driver.policy = driver.set_policy(slow_start=5.0)
    recover(driver)
    closed_ms = driver.snapshot().changed_at_ms
    driver.advance(2.0)
    first = ramp(driver, "acquire", "first")
    assert first.slot and first.limit == 3 and first.started_ms == closed_ms + 2000
    assert first.ends_ms == closed_ms + 7000
    driver.advance(4.9)
    assert ramp(driver, "status").limit == 48  # the fifth step
    driver.advance(0.1)
    assert not ramp(driver, "status").active


def test_an_unused_ramp_starts_by_itself_after_slow_start(driver: Driver) -> None:
    driver.policy = driver.set_policy(slow_start=5.0)
    recover(driver)
    driver.advance(5.0)  # nobody called: the ramp begins now, at its first step
    assert ramp(driver, "status").limit == 3
    driver.advance(5.0)
    assert not ramp(driver, "status").active


def test_a_trip_during_the_ramp_ends_it(driver: Driver) -> None:
    driver.policy = driver.set_policy(slow_start=5.0)
    recover(driver)
    assert ramp(driver, "status").active
    driver.control(Control.TRIP)
    assert not ramp(driver, "status").active
    driver.control(Control.RESET)  # CLOSED again, but not after armed probes: no ramp
    assert not ramp(driver, "status").active


def test_no_ramp_without_arming(driver: Driver) -> None:
    driver.policy = driver.set_policy(slow_start=5.0)
    recover(driver, arm=False)
    assert not ramp(driver, "status").active


def test_no_ramp_when_slow_start_is_off_or_the_epoch_is_not_current(driver: Driver) -> None:
    driver.policy = driver.set_policy(slow_start=0.0)
    recover(driver)
    assert not ramp(driver, "status").active
    assert ramp(driver, "acquire", "x").granted
    assert not ramp(driver, "arm", "0").armed  # not HALF_OPEN in that epoch


def test_a_slot_whose_holder_died_is_given_back(driver: Driver) -> None:
    driver.policy = driver.set_policy(slow_start=60.0)
    recover(driver)
    for i in range(3):
        assert ramp(driver, "acquire", f"dead{i}").granted
    assert not ramp(driver, "acquire", "alive").granted
    driver.advance(driver.policy.max_wait_in_half_open)
    assert ramp(driver, "acquire", "alive").granted


def test_a_stored_policy_without_slow_start_still_loads(driver: Driver, backend_kind: str) -> None:
    if backend_kind != "redis":
        pytest.skip("about the stored hash")
    key = driver.backend.keys.breaker(driver.name)[3]  # type: ignore[attr-defined]
    fields = driver.policy.to_redis()
    del fields["slow_start"]
    driver.backend.client.hset(key, mapping=fields)  # type: ignore[attr-defined]
    assert driver.backend.get_policy(driver.name).slow_start == BreakerPolicy().slow_start
    recover(driver)
    assert ramp(driver, "status").active  # the default applies in the script too
