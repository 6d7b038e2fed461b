"""Small images through the client and a real OCR worker: tight crops of one printed line,
10 to 40 px high (a field cut out of a form), are read with a character error rate of at
most 0.1, by the model and by the CPU fallback. Before the detector's input size was chosen
per image, the detector saw them at their own size and most came back empty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PIL import Image

from breaker.keyspace import Keyspace
from tests.support.cer import cer
from tests.support.fleet import Fleet
from tests.support.ocr_pages import has_cjk, line_crop, png

pytestmark = [pytest.mark.redis, pytest.mark.slow]

HEIGHTS = [10, 16, 24, 40]
LATIN = ["INVOICE No. INV-2026-00417", "Date: 2026-11-24", "Payment due within 30 days", "Tel: +86 138 0013 8000"]
CHINESE = ["发票号码 12345678", "开票日期 2026年3月5日", "纳税人识别号 9112345678901234", "价税合计 ¥5,600.00"]


def crops() -> list[tuple[Image.Image, str]]:
    """(crop, text): one Latin line at every height, and one Chinese where a CJK font is installed."""
    out = [(line_crop(text, h), text) for h, text in zip(HEIGHTS, LATIN)]
    if has_cjk():
        out += [(line_crop(text, h, cjk=True), text) for h, text in zip(HEIGHTS, CHINESE)]
    return out


@pytest.fixture(scope="module")
def ocr_fleet() -> Iterator[Fleet]:
    fleet = Fleet(FUSEBOX_PRELOAD="")  # "": the worker loads what its queues need
    del fleet.env["FUSEBOX_PRELOAD"]
    fleet.start(["ocr", "fallback"], "ocr")  # one worker, one process: 2 CPU cores are shared
    yield fleet
    fleet.close()


def read_all(fleet: Fleet, served_by: str) -> list[tuple[int, str, str, float]]:
    handles = [(crop, text, fleet.client.submit_ocr(png(crop), route="model")) for crop, text in crops()]
    out = []
    for crop, text, handle in handles:
        result = handle.get(timeout=180)
        assert result.served_by == served_by, result.reason
        corners = [xy for line in result.output["lines"] for xy in line["box"]]
        assert all(0 <= x <= crop.width and 0 <= y <= crop.height for x, y in corners)  # the crop's pixels
        out.append((crop.height, text, result.output["text"], cer(text, result.output["text"])))
    return out


def test_line_crops_read_by_the_model(ocr_fleet: Fleet) -> None:
    ocr_fleet.reset()
    results = read_all(ocr_fleet, "model")
    assert all(error <= 0.1 for *_, error in results), results


def test_line_crops_read_by_the_cpu_fallback(ocr_fleet: Fleet) -> None:
    ocr_fleet.reset()
    ocr_fleet.db.delete(Keyspace(ocr_fleet.prefix).model_version("ocr"))  # no answers from the cache
    ocr_fleet.fault("ocr", error_rate=1.0)
    results = read_all(ocr_fleet, "fallback:cpu-ocr")
    assert all(error <= 0.1 for *_, error in results), results
    ocr_fleet.reset()
