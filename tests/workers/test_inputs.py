"""Bad inputs: a clear error for the caller, never a model failure. Checked in the client
(before anything is enqueued) and in the worker (for jobs that bypass the client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from breaker import State
from workers.errors import InvalidInput, InvalidJob
from workers.images import decode_image
from workers.jobs import Job
from tests.support.fleet import Fleet
from tests.support.images import big_blank_png, png_header_only, render

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LIMITS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 40_000_000}
GOOD = render(["fusebox"], size=(400, 120))

BAD_IMAGES: dict[str, tuple[bytes, str]] = {
    "zero bytes": (b"", "empty image: 0 bytes"),
    "truncated": (GOOD[: len(GOOD) // 2], "truncated or corrupt image"),
    "a text file": (b"Dear customer,\nplease find attached...\n", "not an image (text starting 'Dear customer"),
    "random bytes": (bytes(range(256)) * 4, "not an image"),
    "8000x8000": (big_blank_png(8000, 8000), "image too large: 8000x8000 = 64000000 pixels"),
    "decompression bomb": (png_header_only(30000, 30000), "image refused as a decompression bomb"),
}


@pytest.mark.parametrize("label", list(BAD_IMAGES))
def test_decoder_refuses_with_a_reason(label: str) -> None:
    data, message = BAD_IMAGES[label]
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        decode_image(data, **LIMITS)


def test_decoder_accepts_a_real_image_and_caps_bytes() -> None:
    assert decode_image(GOOD, **LIMITS).size == (400, 120)
    with pytest.raises(InvalidInput, match="image too large: .* bytes > limit of 1024"):
        decode_image(GOOD, max_bytes=1024, max_pixels=LIMITS["max_pixels"])


@pytest.fixture(scope="module")
def ocr_fleet() -> Iterator[Fleet]:
    """An OCR worker that never needs its model here: inputs are refused before it runs."""
    fleet = Fleet()
    fleet.start(["ocr"], "ocr")
    yield fleet
    fleet.close()


def test_client_refuses_before_enqueueing(ocr_fleet: Fleet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for label, (data, message) in BAD_IMAGES.items():
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
            ocr_fleet.client.submit_ocr(data)
    with pytest.raises(InvalidInput, match="no such file"):
        ocr_fleet.client.submit_ocr(tmp_path / "missing.png")
    with pytest.raises(InvalidInput, match="is a directory"):
        ocr_fleet.client.submit_ocr(tmp_path)
    with pytest.raises(InvalidJob, match="ocr takes an image"):
        ocr_fleet.client.submit("ocr", text="not an image")
    with pytest.raises(InvalidJob, match="unknown option"):
        ocr_fleet.client.submit_ocr(GOOD, options={"langauge": "en"})
    with pytest.raises(InvalidJob, match="deadline must be a positive"):
        ocr_fleet.client.submit_ocr(GOOD, deadline=-1)
    assert ocr_fleet.queued("ocr") == 0


def test_worker_refuses_jobs_that_bypassed_the_client(ocr_fleet: Fleet) -> None:
    app, payloads = ocr_fleet.client.app, ocr_fleet.client.payloads
    before = ocr_fleet.breaker("ocr").snapshot().totals
    for label, (data, message) in BAD_IMAGES.items():
        if not data:
            continue  # an empty payload cannot be stored under a digest: covered below
        job = Job(model="ocr", payload=payloads.put(data)).model_dump(mode="json")
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
            app.send_task("fusebox.ocr", args=[job], queue="ocr").get(timeout=30)
    wrong = {
        "payload never uploaded": ({"model": "ocr", "payload": "f" * 64}, "not in the store"),
        "text for an image model": ({"model": "ocr", "text": "hello"}, "ocr takes an uploaded image"),
        "a list, not a job": (["ocr", "x"], "a job is a JSON object, got list"),
        "both inputs": ({"model": "ocr", "text": "a", "payload": "0" * 64}, "exactly one input"),
        "bad digest": ({"model": "ocr", "payload": "../../etc/passwd"}, "invalid job"),
    }
    for label, (body, message) in wrong.items():
        with pytest.raises((InvalidInput, InvalidJob), match=message):
            app.send_task("fusebox.ocr", args=[body], queue="ocr").get(timeout=30)
    snap = ocr_fleet.breaker("ocr").snapshot()
    assert snap.state == State.CLOSED and snap.totals == before
