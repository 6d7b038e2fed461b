"""OCR accuracy against the truth, per image size: fusebox's model path, its CPU fallback and
RapidOCR read the same images in one run, and each answer is scored against the text the
renderer drew.

    python -m benchmarks.ocr_accuracy [--json] [--threads 2] [--engines fusebox,fallback,rapidocr]

Images (tests/support/ocr_pages.py, which knows every string it draws), by bucket:

- crop_10 .. crop_40: tight crops of one printed line, 10/16/24/40 px high (a field cut out
  of a form), Latin and Chinese lines of the generated pages;
- page: invoices, receipts and ID cards as rendered (0.4-2.2 MP, A4 at 150 dpi);
- phone: the same pages as a phone photo: scaled to 4032 px on the longer side (up to
  12 MP), on tinted paper, slightly blurred, saved as JPEG (quality 80);
- scan_300dpi: the same pages at twice their size (A4 at 300 dpi: 2480x3508);
- small_print: the invoices' lines re-typeset in 10-point type on A4 at 300 dpi (42 px
  type on 2481x3507: what a real invoice prints; the generated pages use 16-point type);
- scan_6000: a 6000x6000 poster page and an invoice scaled to 6000 px high;
- test_images: the pages the OCR tests submit (tests/workers/test_ocr.py) and the runner's
  self-check line.

Engines, each configured as it runs in production:

- fusebox: the runner a model worker builds (``MODELS["ocr"].runner``: PP-OCRv5 mobile,
  detector input sized per image, oneDNN on CPU), called in process: the worker adds
  transport around it, not text;
- fallback: the runner the ``fallback`` queue's CPU workers build (the same models on an
  image shrunk to ``fallback_ocr_max_side``); its answers are marked degraded, and its CER
  says how degraded;
- rapidocr: RapidOCR with the models bundled in its wheel (onnxruntime), ``use_cls`` off
  as fusebox runs no orientation classifier;
- before (only when asked for, ``--engines before``): the model path as it was before the
  detector's input was sized per image: every image detected under ``limit_type="max"``
  2048, small ones at their own size, no margin.

Scores per bucket: ``cer`` = edit distance between the whole answer and the whole truth
(whitespace ignored, lines in reading order) over the truth's characters, summed over the
bucket's images; ``line_recall`` = share of the truth's lines found verbatim (whitespace
ignored) in the answer. ``seconds`` is each engine's reading time for the bucket (not a
target). ``wins``: the buckets where fusebox's CER <= RapidOCR's.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

DEFAULT_ENGINES = ["fusebox", "fallback", "rapidocr"]
ENGINES = DEFAULT_ENGINES + ["before"]
CROP_HEIGHTS = [10, 16, 24, 40]


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


def _photo(page: Image.Image) -> Image.Image:
    """What a phone makes of a printed page: bigger, on off-white paper, a little soft, JPEG."""
    from PIL import ImageChops, ImageFilter

    big = _scaled(page.convert("RGB"), 4032 / max(page.size))
    tinted = ImageChops.multiply(big, Image.new("RGB", big.size, (238, 232, 218)))
    out = io.BytesIO()
    tinted.filter(ImageFilter.GaussianBlur(1.2)).save(out, "JPEG", quality=80)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def samples() -> dict[str, list[tuple[Image.Image, list[str]]]]:
    """Every bucket's images with the lines drawn on them."""
    from api.samples import render
    from tests.support import ocr_pages as op
    from tests.workers.test_ocr import CHINESE, ENGLISH
    from workers.images import decode_image
    from workers.runners.ocr import SELF_CHECK_TEXT, self_check_image

    pages = [op.invoice_en(1), op.invoice_zh(2), op.receipt_en(3), op.receipt_zh(4), op.id_card(5)]
    out: dict[str, list[tuple[Image.Image, list[str]]]] = {}
    latin = [op.truth(pages[0])[0], op.truth(pages[0])[3], op.truth(pages[2])[1]]
    chinese = [op.truth(pages[1])[i] for i in (1, 3, 4)] if op.has_cjk() else []
    for height in CROP_HEIGHTS:
        crops = [op.line_crop(t, height) for t in latin] + [op.line_crop(t, height, cjk=True) for t in chinese]
        out[f"crop_{height}"] = [(c, op.truth(c)) for c in crops]
    out["page"] = [(p, op.truth(p)) for p in pages]
    out["phone"] = [(_photo(p), op.truth(p)) for p in pages[:4]]
    out["scan_300dpi"] = [(_scaled(p, 2.0), op.truth(p)) for p in pages[:4]]
    out["small_print"] = [(op.small_print(p), op.truth(p)) for p in pages[:2]]
    poster = op.big_page(6000, font_size=120, seed=3)
    out["scan_6000"] = [(poster, op.truth(poster)), (_scaled(pages[0], 6000 / pages[0].height), op.truth(pages[0]))]
    tests = [(render(ENGLISH), ENGLISH), (render(ENGLISH, size=(1600, 600), font_size=44), ENGLISH)]
    if op.has_cjk():
        tests.append((render(CHINESE, cjk=True), CHINESE))
    out["test_images"] = [(decode_image(png, max_bytes=1 << 26, max_pixels=1 << 26), lines) for png, lines in tests]
    out["test_images"].append((self_check_image(), [SELF_CHECK_TEXT]))
    return out


def reader(engine: str, threads: int) -> Callable[[Image.Image], str]:
    """A loaded engine: image in, the text it reads (lines joined by newlines) out."""
    import numpy as np

    if engine == "rapidocr":
        from rapidocr import RapidOCR

        rapid = RapidOCR(params={
            "Global.use_cls": False, "Global.log_level": "warning",
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })
        return lambda image: "\n".join(rapid(np.asarray(image.convert("RGB"))[:, :, ::-1]).txts or ())
    from workers.models import MODELS
    from workers.settings import Settings

    spec, s = MODELS["ocr"], Settings(cpu_threads=threads)
    if engine == "before":
        _as_before()
    runner = spec.fallback_runner(s) if engine == "fallback" else spec.runner(s)
    runner.load()
    return lambda image: str(runner.run(image, {})["text"])


def _as_before() -> None:
    """Makes this process's OCR runners size the detector's input as main did before: one
    fixed ``limit_type="max"`` for every image (the baseline of the crop buckets)."""
    from workers.runners import ocr
    from workers.runners.det_input import DetectorInput

    def fixed(image: Image.Image, det_max_side: int | None) -> DetectorInput:
        return DetectorInput(image, limits={"text_det_limit_type": "max",
                                            "text_det_limit_side_len": det_max_side or 4000})

    ocr.detector_input = fixed  # type: ignore[assignment]


def score(truth: list[str], read: str) -> dict[str, int]:
    from tests.support.cer import edit_distance, normalise

    expected, got = normalise("".join(truth)), normalise(read)
    return {"edits": edit_distance(expected, got), "chars": len(expected),
            "lines": len(truth), "found": sum(normalise(line) in got for line in truth)}


def run(engines: list[str], threads: int) -> dict[str, Any]:
    buckets = samples()
    totals: dict[str, dict[str, dict[str, float]]] = {b: {} for b in buckets}
    for engine in engines:
        read = reader(engine, threads)
        read(buckets["page"][0][0])  # warm: kernels, caches
        for bucket, images in buckets.items():
            sums = {"edits": 0.0, "chars": 0.0, "lines": 0.0, "found": 0.0, "seconds": 0.0}
            for image, lines in images:
                began = time.perf_counter()
                text = read(image)
                sums["seconds"] += time.perf_counter() - began
                for key, value in score(lines, text).items():
                    sums[key] += value
            totals[bucket][engine] = sums
            print(f"{engine} {bucket}: {sums}", file=sys.stderr, flush=True)  # progress; stdout is the JSON
    out: dict[str, Any] = {"engines": engines, "threads": threads,
                           "images": {b: len(v) for b, v in buckets.items()}, "cer": {}, "line_recall": {},
                           "seconds": {}}
    for bucket, per_engine in totals.items():
        out["cer"][bucket] = {e: round(v["edits"] / max(1, v["chars"]), 4) for e, v in per_engine.items()}
        out["line_recall"][bucket] = {e: round(v["found"] / max(1, v["lines"]), 4) for e, v in per_engine.items()}
        out["seconds"][bucket] = {e: round(v["seconds"], 2) for e, v in per_engine.items()}
    if "fusebox" in engines and "rapidocr" in engines:
        out["wins"] = {b: c["fusebox"] <= c["rapidocr"] for b, c in out["cer"].items()}
        out["all_buckets_at_most_rapidocr"] = all(out["wins"].values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("--threads", type=int, default=2, help="each engine's CPU threads")
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                        help="comma-separated, of " + ",".join(ENGINES))
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engines {unknown}; choose from {ENGINES}")
    result = run(engines, args.threads)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
