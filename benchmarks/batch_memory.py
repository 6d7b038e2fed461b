"""Peak memory of ``fusebox submit`` against the number of inputs: it must stay flat.

    python -m benchmarks.batch_memory [--json] [--small N] [--large N] [--side PIXELS]

One run, on a Redis of its own (no workers: the jobs are only submitted), makes a folder of
``large`` small distinct PNG images (``side`` x ``side`` pixels of noise: about 19 KB each
at the default 80) and submits it with the real ``fusebox submit`` command,
in a child process whose peak RSS (``getrusage``) is read; the baseline is the same command
on a folder of ``small`` images, in the same run. Reported:

- large_folder_mib: the large folder's size on disk;
- rss_mib_small / rss_mib_large: peak RSS of ``fusebox submit --no-wait`` (MiB);
- rss_mib_large_wait: peak RSS of ``fusebox submit --wait --timeout 1`` on the large folder
  (the ids waited for are held in memory: their name and hash only);
- ratio_large_to_small: rss_mib_large / rss_mib_small (flat: close to 1; a program that
  reads the whole batch first grows with the folder);
- first_line_s: seconds from start until the large run's first ``submitted`` line.

Target (issue 13): ratio_large_to_small <= 1.25 for 10 x the inputs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks._fleet import BenchFleet


def make_images(folder: Path, count: int, side: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        # Noise does not compress: the file is about as big as its pixels.
        image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        (folder / f"scan-{i:06d}.png").write_bytes(buffer.getvalue())


def submit(fleet: BenchFleet, folder: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(peak RSS in MiB, seconds to the first output line) of one ``fusebox submit``."""
    script = str(Path(sys.executable).parent / "fusebox")
    code = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", code, script, "submit", str(folder), "--model", "ocr", "--out", str(out), *extra],
        env={**os.environ, **fleet.env}, stdout=subprocess.PIPE, text=True,
    )
    first = None
    while child.poll() is None:
        if first is None and out.exists() and out.stat().st_size:
            first = time.monotonic() - started
        time.sleep(0.02)
    assert child.stdout is not None
    kib = int(child.stdout.read().strip().splitlines()[-1])
    return kib / 1024, first if first is not None else float("nan")


def run(small: int, large: int, side: int) -> dict[str, float | int | bool]:
    fleet = BenchFleet()
    try:
        with tempfile.TemporaryDirectory(prefix="fusebox-bench-") as tmp:
            root = Path(tmp)
            make_images(root / "small", small, side)
            make_images(root / "large", large, side)
            large_mib = sum(p.stat().st_size for p in (root / "large").iterdir()) / 2**20
            rss_small, _ = submit(fleet, root / "small", root / "small.jsonl", "--no-wait")
            rss_large, first = submit(fleet, root / "large", root / "large.jsonl", "--no-wait")
            submitted = sum(1 for _ in (root / "large.jsonl").open())
            rss_wait, _ = submit(fleet, root / "large", root / "wait.jsonl", "--wait", "--timeout", "1")
    finally:
        fleet.close()
    ratio = rss_large / rss_small
    return {
        "small": small, "large": large, "large_folder_mib": round(large_mib, 1), "submitted_large": submitted,
        "rss_mib_small": round(rss_small, 1), "rss_mib_large": round(rss_large, 1),
        "rss_mib_large_wait": round(rss_wait, 1), "ratio_large_to_small": round(ratio, 3),
        "first_line_s": round(first, 2), "flat": ratio <= 1.25,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--side", type=int, default=80)
    args = parser.parse_args()
    print(json.dumps(run(args.small, args.large, args.side)))


if __name__ == "__main__":
    main()
