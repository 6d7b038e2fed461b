"""The OCR runner itself, in process: oneDNN on CPU reads exactly what Paddle's plain CPU
kernels read, the start-up self-check, and the detector's bound on big pages."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.support.images import cjk_font_path, render
from tests.support.ocr_pages import big_page, id_card, line_crop, receipt_en, receipt_zh
from tests.workers.test_ocr import CHINESE, ENGLISH
from workers.images import decode_image
from workers.runners.ocr import SELF_CHECK_TEXT, OcrRunner, self_check_image
from workers.settings import Settings

pytestmark = [pytest.mark.slow]


def make_runner(**kwargs: Any) -> OcrRunner:
    s = Settings()
    det, rec = s.ocr_model_dirs()
    return OcrRunner(det, rec, s.ocr_det_name, s.ocr_rec_name, cpu_threads=2, **kwargs)


@pytest.fixture(scope="module")
def onednn() -> Iterator[OcrRunner]:
    runner = make_runner(onednn=True)
    runner.load()
    yield runner


def test_onednn_is_on_by_default_and_passes_its_self_check(onednn: OcrRunner) -> None:
    from workers.models import MODELS

    configured = MODELS["ocr"].runner(Settings())  # what a worker builds (not loaded)
    assert isinstance(configured, OcrRunner) and configured.onednn and configured.det_max_side == 2048
    assert onednn.onednn_active, onednn.onednn_fallback_reason  # the pinned paddlepaddle 3.2.2
    assert onednn.onednn_fallback_reason is None
    assert onednn.run(self_check_image(), {})["text"].replace(" ", "") == SELF_CHECK_TEXT.replace(" ", "")


def test_onednn_reads_the_same_text_and_boxes_as_plain_cpu(onednn: OcrRunner) -> None:
    pages = [render(ENGLISH)] + ([render(CHINESE, cjk=True)] if cjk_font_path() else [])
    images = [decode_image(p, max_bytes=1 << 26, max_pixels=1 << 26) for p in pages]
    images += [id_card(3), receipt_en(4), receipt_zh(5)]
    plain = make_runner(onednn=False)
    plain.load()
    assert not plain.onednn_active
    for image in images:
        fast, slow = onednn.run(image, {}), plain.run(image, {})
        assert len(fast["lines"]) >= 3
        assert [(line["text"], line["box"]) for line in fast["lines"]] == [
            (line["text"], line["box"]) for line in slow["lines"]
        ]
        assert all(abs(a["score"] - b["score"]) <= 0.002 for a, b in zip(fast["lines"], slow["lines"]))


def test_the_detector_bound_keeps_a_big_page_readable(onednn: OcrRunner) -> None:
    """6000x6000 seen by the detector at 2048 on its longer side; recognition still reads
    the full-resolution crops."""
    page = big_page(6000, font_size=120, seed=4)
    texts = [line["text"].replace(" ", "") for line in onednn.run(page, {})["lines"]]
    assert len(texts) == 5
    assert texts[0].startswith("INVOICENo.INV-2026-") and texts[1:2] == ["Date:2026-11-24"]
    assert texts[3] == "NorthwindTradingLtd." and texts[4].startswith("Phone:+86138")


class _BrokenOneDnn:
    """What Paddle 3.3.x does with oneDNN on CPU: the first predict raises."""

    def predict(self, image: Any, **limits: Any) -> Any:
        raise RuntimeError("(Unimplemented) ConvertPirAttribute2RuntimeAttribute not support [pir::ArrayAttribute]")


def test_self_check_turns_onednn_off_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Pure unit test: a predictor that fails with oneDNN, as Paddle 3.3 does."""
    built: list[bool] = []

    class Runner(OcrRunner):
        def _build(self, onednn: bool) -> Any:
            built.append(onednn)
            return _BrokenOneDnn() if onednn else _Reads(SELF_CHECK_TEXT)

    runner = Runner(*_dirs(), "det", "rec", onednn=True)
    with caplog.at_level(logging.WARNING, logger="workers.runners.ocr"):
        runner.load()
    assert built == [True, False]
    assert not runner.onednn_active
    assert "ConvertPirAttribute2RuntimeAttribute" in (runner.onednn_fallback_reason or "")
    assert any("oneDNN turned off" in r.getMessage() for r in caplog.records)
    assert runner.run(Image.new("RGB", (64, 32), "white"), {})["text"] == SELF_CHECK_TEXT


def test_self_check_also_catches_a_wrong_reading() -> None:
    built: list[bool] = []

    class Runner(OcrRunner):
        def _build(self, onednn: bool) -> Any:
            built.append(onednn)
            return _Reads("F#S3BOX") if onednn else _Reads(SELF_CHECK_TEXT)

    runner = Runner(*_dirs(), "det", "rec", onednn=True)
    runner.load()
    assert built == [True, False] and not runner.onednn_active
    assert "read 'F#S3BOX'" in (runner.onednn_fallback_reason or "")


def test_no_self_check_when_onednn_is_off_or_on_gpu() -> None:
    built: list[bool] = []

    class Runner(OcrRunner):
        def _build(self, onednn: bool) -> Any:
            built.append(onednn)
            return _BrokenOneDnn()

    Runner(*_dirs(), "det", "rec", onednn=False).load()
    Runner(*_dirs(), "det", "rec", device="gpu:0", onednn=True).load()
    assert built == [False, False]


class _Reads:
    def __init__(self, text: str) -> None:
        self.text = text

    def predict(self, image: Any, **limits: Any) -> Any:
        return [{"rec_texts": [self.text], "rec_scores": [0.99], "rec_polys": [[[0, 0], [9, 0], [9, 9], [0, 9]]]}]


def _dirs() -> tuple[Any, Any]:
    from pathlib import Path

    return Path("det"), Path("rec")


def test_low_confidence_lines_are_flagged_not_dropped(onednn: OcrRunner) -> None:
    page = receipt_en(7)
    clean = onednn.run(page, {})["lines"]
    assert len(clean) >= 10 and not any(line["low_confidence"] for line in clean)  # 0.5 by default
    onednn.low_confidence = 0.999
    try:
        strict = onednn.run(page, {})["lines"]
    finally:
        onednn.low_confidence = 0.5
    assert [line["text"] for line in strict] == [line["text"] for line in clean]  # flagged, never dropped
    assert [line["low_confidence"] for line in strict] == [line["score"] < 0.999 for line in strict]
    assert any(line["low_confidence"] for line in strict)


def test_a_tight_line_crop_gets_a_margin_and_a_big_page_a_bound() -> None:
    """Pure unit test of the detector's input for a 10 px crop, a page and a big page."""
    from workers.runners.det_input import MIN_SIDE, detector_input

    crop = line_crop("Total: $1,234.50", 10)
    seen = detector_input(crop, 2048)
    assert seen.offset == (10, 10) and seen.image.size == (crop.width + 20, 30)
    assert seen.limits == {"text_det_limit_type": "min", "text_det_limit_side_len": MIN_SIDE}
    assert seen.image.getpixel((0, 0)) == (255, 255, 255)  # the crop's own paper
    page = receipt_en(1)
    assert detector_input(page, 2048).image is page and detector_input(page, 2048).offset == (0, 0)
    assert detector_input(big_page(3000), 2048).limits == {"text_det_limit_type": "max", "text_det_limit_side_len": 2048}
    strip = detector_input(line_crop("Payment due within 30 days " * 5, 40), 2048)  # long: margin, then bounded
    assert strip.offset == (40, 40) and strip.limits["text_det_limit_type"] == "max"


def test_two_columns_are_read_row_by_row(onednn: OcrRunner) -> None:
    """The documented reading order: top to bottom, a row's boxes left to right, so a
    two-column page interleaves its columns."""
    image = Image.new("RGB", (1000, 300), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=32)
    for row, (left, right) in enumerate([("Apples 1kg", "Total 12.50"), ("Bread", "Cash 20.00")]):
        draw.text((40, 60 + row * 90), left, fill="black", font=font)
        draw.text((560, 64 + row * 90), right, fill="black", font=font)  # 4 px lower: still one row
    texts = [line["text"].replace(" ", "") for line in onednn.run(image, {})["lines"]]
    assert texts == ["Apples1kg", "Total12.50", "Bread", "Cash20.00"]
