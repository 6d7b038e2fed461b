"""PaddleOCR (PP-OCR detection + recognition) from local model directories.

On CPU the runner turns oneDNN (MKL-DNN) on by default: with paddlepaddle 3.2.2 it is 2-4x
faster than Paddle's plain CPU kernels with the same text out (paddlepaddle 3.3.0/3.3.1
break it: Paddle issue #77340, which is why the ``cpu`` extra pins 3.2.2). A start-up
self-check reads a rendered line with oneDNN on; if that raises or reads wrong, the runner
reloads with oneDNN off and logs why (``onednn_active`` says which one it runs).

The detector's input size is chosen per image (workers/runners/det_input.py): a page
longer than ``det_max_side`` is scaled down for detection only (a 6000x6000 scan costs the
detector what a 2048x2048 one does; recognition still reads full-resolution crops), a small
image (a line crop) gets a margin and PaddleOCR's own 64 px minimum, the rest is untouched.

Every line the recogniser reads is returned with its score; none is dropped for a low one
(``text_rec_score_thresh=0``). Each line says ``low_confidence: true`` when its score is under ``low_confidence``.
Lines come in PaddleOCR's reading order: top to bottom by each box's top-left corner, boxes
whose tops are within 10 px of each other left to right. A multi-column page is therefore
read row by row across the columns, not column by column.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from workers.fields import extract_key_fields
from workers.runners.base import ModelRunner
from workers.runners.det_input import detector_input

log = logging.getLogger(__name__)

#: What the self-check renders and must read back.
SELF_CHECK_TEXT = "FUSEBOX 2026-11-30 No.4217"


def self_check_image() -> Image.Image:
    """One line of text rendered with Pillow's bundled font: what the start-up self-check reads."""
    image = Image.new("RGB", (640, 96), "white")
    ImageDraw.Draw(image).text((24, 24), SELF_CHECK_TEXT, fill="black", font=ImageFont.load_default(size=36))
    return image


def _within(value: int, limit: int) -> int:
    return min(limit, max(0, value))


def _squashed(text: str) -> str:
    return "".join(text.split()).upper()


class OcrRunner(ModelRunner):
    """Parameters:
      det_dir, rec_dir: PaddleX model directories (``inference.json``, ``.pdiparams``, ``.yml``).
      det_name, rec_name: their PaddleX model names.
      device: ``cpu`` or ``gpu:N``.
      cpu_threads: Paddle's CPU threads in this process.
      max_side: shrink images to at most this many pixels on the longer side first (the
        CPU fallback's "smaller input"); None keeps them as they are.
      onednn: use oneDNN on CPU (checked at load, turned off if it fails); ignored on GPU.
      det_max_side: longest side, in pixels, of the image the text detector sees (larger
        pages are scaled down for detection only); None keeps PaddleOCR's default (up to
        4000 pixels).
      low_confidence: lines whose recognition score is under this are flagged
        ``low_confidence: true`` (still returned).
    """

    name = "ocr"

    def __init__(
        self,
        det_dir: Path,
        rec_dir: Path,
        det_name: str,
        rec_name: str,
        device: str = "cpu",
        cpu_threads: int = 1,
        max_side: int | None = None,
        onednn: bool = True,
        det_max_side: int | None = 2048,
        low_confidence: float = 0.5,
    ) -> None:
        super().__init__()
        self.det_dir, self.rec_dir = det_dir, rec_dir
        self.det_name, self.rec_name = det_name, rec_name
        self.device, self.cpu_threads, self.max_side = device, cpu_threads, max_side
        self.onednn, self.det_max_side, self.low_confidence = onednn, det_max_side, low_confidence
        #: Whether oneDNN is what this runner actually runs with (after the self-check).
        self.onednn_active = False
        #: Why oneDNN was turned off at load, if it was.
        self.onednn_fallback_reason: str | None = None
        self._ocr: Any = None

    def _build(self, onednn: bool) -> Any:
        # Local directories only: no model hub is asked, nothing is downloaded.
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        from paddleocr import PaddleOCR  # heavy import, only in processes that run OCR

        return PaddleOCR(
            text_detection_model_name=self.det_name,
            text_detection_model_dir=str(self.det_dir),
            text_recognition_model_name=self.rec_name,
            text_recognition_model_dir=str(self.rec_dir),
            use_doc_orientation_classify=False,
            use_doc_unwarping=False,
            use_textline_orientation=False,
            device=self.device,
            enable_mkldnn=onednn,
            cpu_threads=self.cpu_threads,
            text_rec_score_thresh=0.0,  # every line comes back; low ones are flagged, not dropped
        )

    def _self_check(self) -> str | None:
        """Reads the self-check line; returns why it failed, or None when it read right."""
        try:
            got = self.run(self_check_image(), {})["text"]
        except Exception as exc:  # noqa: BLE001 - whatever oneDNN raises, the answer is "off"
            return f"the first predict raised {type(exc).__name__}: {exc}"
        if _squashed(got) != _squashed(SELF_CHECK_TEXT):
            return f"the self-check line read {got!r} instead of {SELF_CHECK_TEXT!r}"
        return None

    def _load(self) -> None:
        want = self.onednn and self.device == "cpu"
        self._ocr = self._build(onednn=want)
        self.onednn_active = want
        if not want:
            return
        problem = self._self_check()
        if problem is None:
            return
        # Keep the worker serving: the same models without oneDNN are slower, not wrong.
        log.warning("OCR: oneDNN turned off, %s; running Paddle's plain CPU kernels (2-4x slower). "
                    "Pin paddlepaddle==3.2.2 (the `cpu` extra) or set FUSEBOX_OCR_ONEDNN=0 to silence this.",
                    problem)
        self.onednn_fallback_reason = problem
        self._ocr = self._build(onednn=False)
        self.onednn_active = False

    def run(self, inputs: Image.Image, options: dict[str, Any]) -> dict[str, Any]:
        image = inputs
        scale = 1.0
        if self.max_side and max(image.size) > self.max_side:
            scale = self.max_side / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        seen = detector_input(image if image.mode == "RGB" else image.convert("RGB"), self.det_max_side)
        bgr = np.asarray(seen.image)[:, :, ::-1]
        (page,) = self._ocr.predict(bgr, **seen.limits)
        (dx, dy), (width, height) = seen.offset, inputs.size
        lines = []
        for text, score, poly in zip(page["rec_texts"], page["rec_scores"], page["rec_polys"]):
            # Back in the caller's pixels: out of the margin, up from the shrink, inside the image.
            box = [[_within(round((float(x) - dx) / scale), width), _within(round((float(y) - dy) / scale), height)]
                   for x, y in np.asarray(poly).tolist()]
            lines.append({"text": str(text), "score": round(float(score), 4), "box": box,
                          "low_confidence": bool(score < self.low_confidence)})
        full_text = "\n".join(line["text"] for line in lines)
        return {"lines": lines, "text": full_text, "key_fields": extract_key_fields(full_text)}

