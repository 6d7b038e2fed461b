"""OCR pages/s like for like: the same P processes x T threads, plain PaddleOCR loops over
the same pages against jobs through fusebox (client -> Celery -> breaker -> runner ->
result), with RapidOCR (onnxruntime, the models bundled in its wheel) as the peer a user
might pick instead, all in one run.

    python -m benchmarks.ocr_throughput [--json] [--pages 12] [--layouts 1x2,2x1] [--no-before]

- plain: P processes (spawned, each loads its own OcrRunner with T Paddle threads, as a
  Celery pool process does after the fork), pulling pages from one shared queue; timed
  from the moment every process is loaded and warm to the last page read.
- fusebox: ``celery -A workers worker -Q ocr -c P`` with ``FUSEBOX_CPU_THREADS=T``, warm;
  timed from the first submission to the last result; every job must be answered by the
  model, with the same text as the plain loop. Job latency p50/p99 from the results'
  ``total_ms`` (submission to answer, all pages submitted at once).
- rapidocr: the plain harness with RapidOCR (``Global.use_cls`` off, as fusebox runs no
  orientation classifier), T onnxruntime threads.
- before: the plain harness with oneDNN off (what main ran before), at P = cores, T = 1.

The pages are tests/support/ocr_pages.py's: invoices, receipts and ID cards in English and
Chinese at scan-like sizes, about 17 lines a page. Ratios compare figures from this run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any

from benchmarks._stats import percentile

#: Target for fusebox's pages/s against the plain loop at the same layout.
TARGET_RATIO = 0.95


def _squash(text: str) -> str:
    return "".join(text.split())


def _plain_process(engine: str, threads: int, onednn: bool, pages: list[bytes], todo: Any, done: Any) -> None:
    """One plain process: load, warm up, say ready, then read pages until told to stop."""
    import numpy as np

    from workers.images import decode_image

    images = [decode_image(p, max_bytes=1 << 28, max_pixels=1 << 28) for p in pages]
    if engine == "paddle":
        from workers.runners.ocr import OcrRunner
        from workers.settings import Settings

        s = Settings()
        det, rec = s.ocr_model_dirs()
        runner = OcrRunner(det, rec, s.ocr_det_name, s.ocr_rec_name, cpu_threads=threads, onednn=onednn,
                           det_max_side=s.ocr_det_max_side or None)
        runner.load()

        def read(i: int) -> str:
            return str(runner.run(images[i], {})["text"])
    else:
        from rapidocr import RapidOCR

        rapid = RapidOCR(params={
            "Global.use_cls": False, "Global.log_level": "warning",
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })

        def read(i: int) -> str:
            return "\n".join(rapid(np.asarray(images[i])[:, :, ::-1]).txts or ())

    for i in range(min(5, len(images))):  # warm: one page of each kind (kernels, caches)
        read(i)
    done.put(("ready", os.getpid(), ""))
    while True:
        i = todo.get()
        if i is None:
            return
        began = time.perf_counter()
        text = read(i)
        done.put((i, time.perf_counter() - began, text))


def plain(pages: list[bytes], processes: int, threads: int, *, engine: str = "paddle",
          onednn: bool = True) -> dict[str, Any]:
    """Pages/s of ``processes`` x ``threads`` plain loops over ``pages`` (one pass)."""
    ctx = mp.get_context("spawn")  # nothing of Paddle in this process, nothing inherited
    todo, done = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_plain_process, args=(engine, threads, onednn, pages, todo, done), daemon=True)
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            assert done.get(timeout=600)[0] == "ready"
        started = time.perf_counter()
        for i in range(len(pages)):
            todo.put(i)
        texts: dict[int, str] = {}
        seconds = []
        for _ in pages:
            i, took, text = done.get(timeout=1800)
            texts[i], seconds = text, seconds + [took]
        elapsed = time.perf_counter() - started
    finally:
        for _ in procs:
            todo.put(None)
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    return {"pages_per_s": len(pages) / elapsed, "texts": [texts[i] for i in range(len(pages))],
            "page_s_p50": statistics.median(seconds)}


def through_fusebox(pages: list[bytes], warm: list[bytes], processes: int, threads: int) -> dict[str, Any]:
    """Pages/s of jobs through a real fusebox worker with ``processes`` x ``threads``."""
    from benchmarks._fleet import BenchFleet

    with BenchFleet() as fleet:
        fleet.start(["ocr"], "ocr", concurrency=processes, env={"FUSEBOX_CPU_THREADS": str(threads)})
        # Every process reads every kind of page once before the clock starts, as the plain
        # loops do (oneDNN builds its kernels per input shape on first sight).
        for _ in range(processes):
            for handle in [fleet.client.submit_ocr(page) for page in warm]:
                handle.get(timeout=600)
        started = time.perf_counter()
        handles = [fleet.client.submit_ocr(page) for page in pages]
        results = [h.get(timeout=1800) for h in handles]
        elapsed = time.perf_counter() - started
    served = {r.served_by for r in results}
    assert served == {"model"}, f"not every job was answered by the model: {served}"
    latency = [float(r.timings.total_ms or 0) for r in results]
    return {"pages_per_s": len(pages) / elapsed, "texts": [r.output["text"] for r in results],
            "latency_ms_p50": percentile(latency, 50), "latency_ms_p99": percentile(latency, 99),
            "run_ms_p50": statistics.median(r.timings.run_ms for r in results)}


def agreement(reference: list[str], other: list[str]) -> float:
    """Share of the reference's lines the other engine read identically (spaces ignored)."""
    total = same = 0
    for ref, got in zip(reference, other):
        theirs = {_squash(line) for line in got.splitlines()}
        for line in ref.splitlines():
            total += 1
            same += _squash(line) in theirs
    return same / total if total else 0.0


def layouts_for(cores: int) -> list[tuple[int, int]]:
    """Every processes x threads that fills ``cores``."""
    return [(p, cores // p) for p in range(1, cores + 1) if cores % p == 0]


def run(pages_n: int, layouts: list[tuple[int, int]], before: bool, rapid: bool) -> dict[str, Any]:
    from tests.support.ocr_pages import pages as make_pages

    pages = make_pages(pages_n)
    warm = make_pages(5, seed=1000)  # one page of each kind
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {"cores": cores, "ocr_pages": len(pages), "layouts": {}}
    reference: list[str] | None = None
    for processes, threads in layouts:
        name = f"{processes}x{threads}"
        a = plain(pages, processes, threads)
        b = through_fusebox(pages, warm, processes, threads)
        reference = reference or a["texts"]
        entry = {
            "plain_pages_per_s": round(a["pages_per_s"], 3),
            "fusebox_pages_per_s": round(b["pages_per_s"], 3),
            "ratio": round(b["pages_per_s"] / a["pages_per_s"], 3),
            "latency_ms_p50": round(b["latency_ms_p50"]),
            "latency_ms_p99": round(b["latency_ms_p99"]),
            "model_run_ms_p50": round(b["run_ms_p50"]),
            "same_text": [_squash(t) for t in a["texts"]] == [_squash(t) for t in b["texts"]],
        }
        if rapid:
            r = plain(pages, processes, threads, engine="rapidocr")
            entry["rapidocr_pages_per_s"] = round(r["pages_per_s"], 3)
            entry["rapidocr_line_agreement"] = round(agreement(a["texts"], r["texts"]), 3)
        out["layouts"][name] = entry
    best = max(out["layouts"], key=lambda k: out["layouts"][k]["fusebox_pages_per_s"])
    chosen = out["layouts"][best]
    out["best_layout"] = best
    out["ocr_pages_per_s_plain"] = chosen["plain_pages_per_s"]
    out["ocr_pages_per_s_fusebox"] = chosen["fusebox_pages_per_s"]
    out["ocr_ratio"] = chosen["ratio"]
    out["ocr_latency_ms_p50"] = chosen["latency_ms_p50"]
    out["ocr_latency_ms_p99"] = chosen["latency_ms_p99"]
    out["ocr_same_text"] = all(v["same_text"] for v in out["layouts"].values())
    if rapid:
        best_rapid = max(out["layouts"].values(), key=lambda v: v["rapidocr_pages_per_s"])
        out["rapidocr_pages_per_s"] = best_rapid["rapidocr_pages_per_s"]
        out["rapidocr_line_agreement"] = best_rapid["rapidocr_line_agreement"]
    if before:
        off = plain(pages, cores, 1, onednn=False)
        out["ocr_pages_per_s_plain_onednn_off"] = round(off["pages_per_s"], 3)
        out["onednn_speedup"] = round(out["ocr_pages_per_s_plain"] / off["pages_per_s"], 2)
        out["onednn_same_text"] = [_squash(t) for t in off["texts"]] == [_squash(t) for t in (reference or [])]
    out["target_ocr_met"] = out["ocr_ratio"] >= TARGET_RATIO
    return out


def parse_layouts(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        p, _, t = item.strip().partition("x")
        pairs.append((int(p), int(t)))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--layouts", help="processes x threads to compare, e.g. 1x2,2x1 (default: all that fill the cores)")
    parser.add_argument("--no-before", action="store_true", help="skip the oneDNN-off baseline")
    parser.add_argument("--no-rapidocr", action="store_true", help="skip the RapidOCR peer")
    args = parser.parse_args(argv)
    layouts = parse_layouts(args.layouts) if args.layouts else layouts_for(os.cpu_count() or 1)
    result = run(args.pages, layouts, before=not args.no_before, rapid=not args.no_rapidocr)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
