"""PaddleOCR (PP-OCR detection + recognition) from local model directories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workers.fields import extract_key_fields
from workers.runners.base import ModelRunner


class OcrRunner(ModelRunner):
    """Parameters:
      det_dir, rec_dir: PaddleX model directories (``inference.json``, ``.pdiparams``, ``.yml``).
      det_name, rec_name: their PaddleX model names.
      device: ``cpu`` or ``gpu:N``.
      cpu_threads: Paddle's CPU threads in this process.
      max_side: shrink images to at most this many pixels on the longer side first (the
        CPU fallback's "smaller input"); None keeps them as they are.
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
    ) -> None:
        super().__init__()
        self.det_dir, self.rec_dir = det_dir, rec_dir
        self.det_name, self.rec_name = det_name, rec_name
        self.device, self.cpu_threads, self.max_side = device, cpu_threads, max_side
        self._ocr: Any = None

    def _load(self) -> None:
        # Local directories only: no model hub is asked, nothing is downloaded.
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        from paddleocr import PaddleOCR  # heavy import, only in processes that run OCR

        self._ocr = PaddleOCR(
            text_detection_model_name=self.det_name,
            text_detection_model_dir=str(self.det_dir),
            text_recognition_model_name=self.rec_name,
            text_recognition_model_dir=str(self.rec_dir),
            use_doc_orientation_classify=False,
            use_doc_unwarping=False,
            use_textline_orientation=False,
            device=self.device,
            # Paddle 3.3's oneDNN path fails on the first predict with
            # "ConvertPirAttribute2RuntimeAttribute not support".
            enable_mkldnn=False,
            cpu_threads=self.cpu_threads,
        )

    def run(self, inputs: Image.Image, options: dict[str, Any]) -> dict[str, Any]:
        image = inputs
        scale = 1.0
        if self.max_side and max(image.size) > self.max_side:
            scale = self.max_side / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        bgr = np.asarray(image)[:, :, ::-1]
        (page,) = self._ocr.predict(bgr)
        lines = []
        for text, score, poly in zip(page["rec_texts"], page["rec_scores"], page["rec_polys"]):
            box = [[round(float(x) / scale), round(float(y) / scale)] for x, y in np.asarray(poly).tolist()]
            lines.append({"text": str(text), "score": round(float(score), 4), "box": box})
        full_text = "\n".join(line["text"] for line in lines)
        return {"lines": lines, "text": full_text, "key_fields": extract_key_fields(full_text)}
