"""A big valid page is the caller's load, not the model's sickness: on a real OCR worker
(real Paddle, real Celery, real Redis), a burst of 6000x6000 pages under a policy whose
plain limits they exceed does not trip the breaker, while the same model made slow by a
fault still trips it on ordinary pages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from breaker import State
from tests.support.fleet import Fleet, wait_for
from tests.support.images import render
from tests.support.ocr_pages import big_page, png
from tests.workers.test_ocr import ENGLISH

pytestmark = [pytest.mark.redis, pytest.mark.slow]

#: Limits every big page exceeds (each takes seconds) and no ordinary page reaches unless
#: a fault slows it: slow after 1 s, timed out after 3 s, for inputs up to 1 megapixel.
TIGHT = {"slow_call_duration": 1.0, "call_timeout": 3.0, "minimum_calls": 4, "reference_megapixels": 1.0}


@pytest.fixture(scope="module")
def ocr_fleet() -> Iterator[Fleet]:
    fleet = Fleet(FUSEBOX_PRELOAD="ocr", FUSEBOX_CPU_THREADS="2")
    fleet.start(["ocr"], "ocr")
    fleet.start(["fallback"], "cpu", FUSEBOX_PRELOAD="none")  # answers from the cache or the rules
    yield fleet
    fleet.close()


def test_a_burst_of_big_valid_pages_does_not_trip(ocr_fleet: Fleet) -> None:
    ocr_fleet.reset()
    ocr_fleet.use_policy("ocr", **TIGHT)
    pages = [png(big_page(6000, font_size=120, seed=i)) for i in range(5)]  # 36 MP each, under the 40 MP limit
    handles = [ocr_fleet.client.submit_ocr(page, route="model") for page in pages]
    results = [h.get(timeout=600) for h in handles]
    assert [r.served_by for r in results] == ["model"] * 5, [r.reason for r in results]
    assert all(r.output["key_fields"]["dates"] == ["2026-11-24"] for r in results)
    ocr_fleet.client.breakers.flush()
    snap = ocr_fleet.breaker("ocr").snapshot()
    assert snap.state == State.CLOSED
    assert snap.window.calls == 5 and snap.window.failures == 0 and snap.window.slow == 0, snap.window


def test_a_model_slowed_by_a_fault_still_trips(ocr_fleet: Fleet) -> None:
    ocr_fleet.reset()
    ocr_fleet.use_policy("ocr", **TIGHT)
    ocr_fleet.fault("ocr", latency=1.5)  # every call takes 1.5 s more: slow on a 0.6 MP page
    page = render(ENGLISH)
    served = []
    for i in range(8):
        served.append(ocr_fleet.client.submit_ocr(page, route="model").get(timeout=120).served_by)
        if ocr_fleet.state("ocr") == State.OPEN:
            break
    assert wait_for(lambda: ocr_fleet.state("ocr") == State.OPEN, 10), served
    assert served[:4] == ["model"] * 4  # slow answers are still answers
    ocr_fleet.reset()
