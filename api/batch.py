"""``fusebox submit``: a folder of images or a file of texts, in, answered, out as JSONL.

Every input gets one line in the results file, written as soon as its fate is known
(appended and flushed: an interrupted batch loses nothing it had). Inputs are read one at a
time, as they are submitted (a folder of 100,000 images starts at once and stays flat in
memory), and each submitted job gets its ``submitted`` line before anything is waited for:
a re-run with the same ``--out`` skips inputs already answered (by content hash, so
renaming a file does not matter and editing one does), and collects the jobs an earlier run
submitted, with or without ``--wait``, instead of submitting them twice. A bad file is a
line with ``status: "rejected"``; it never stops the batch. Batch jobs are submitted at a
lower priority than interactive ones (``--priority``, 3 by default).

Result lines::

    {"input": "scans/a.png", "input_hash": "…", "task": "ocr", "status": "ok",
     "job_id": "…", "degraded": false, "served_by": "model", "output": {…}}

``status`` is ``ok``, ``failed`` (the job ran and ended in an error), ``rejected`` (the
input was refused before anything was enqueued), or ``submitted`` (written when the job is
enqueued; followed by its ``ok`` or ``failed`` line when waited for, and written again with
a note when not answered within ``--timeout``: a re-run collects it).
"""

from __future__ import annotations

import codecs
import glob
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from celery.exceptions import TimeoutError as CeleryTimeout
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.client import FuseboxClient
from breaker import InputError
from workers import hashing
from workers.jobs import BATCH_PRIORITY, JobResult
from workers.models import spec_for
from workers.settings import Settings

DEFAULT_MAX_IMAGE_BYTES: int = Settings.model_fields["max_image_bytes"].default

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
TEXT_SUFFIXES = {".txt", ".jsonl"}


@dataclass
class Item:
    """One input: where it came from, and its content or why it has none."""

    source: str
    content: bytes | str | None = None
    error: str | None = None

    def content_hash(self, model: str) -> str:
        return hashing.content_hash(model, self.content or b"")


class BatchReport(BaseModel):
    """What a batch did."""

    inputs: int = 0
    skipped: int = 0
    collected: int = 0
    submitted: int = 0
    ok: int = 0
    degraded: int = 0
    failed: int = 0
    bad_inputs: int = 0
    pending: int = 0


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _files(arg: str, suffixes: set[str]) -> Iterator[Path | Item]:
    path = Path(arg)
    if path.is_dir():
        found = False
        for file in _walk(path, suffixes):
            found = True
            yield file
        if not found:
            yield Item(arg, error=f"folder has no {'/'.join(sorted(suffixes))} files")
    elif path.exists():
        yield path
    elif _is_glob(arg):
        matches = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
        if not matches:
            yield Item(arg, error="no file matches this pattern")
        yield from matches
    else:
        yield Item(arg, error="no such file or folder")


def _walk(folder: Path, suffixes: set[str]) -> Iterator[Path]:
    """The folder's files with one of ``suffixes``, folder by folder in name order, as they
    are listed (no list of the whole tree first: a huge folder starts at once)."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            candidate = Path(root) / name
            if candidate.suffix.lower() in suffixes and candidate.is_file():
                yield candidate


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _open_regular(path: Path) -> tuple[IO[bytes], int] | Item:
    """``path`` opened for reading, with its size, if it is a regular file.

    Opened without blocking and checked on the open descriptor: a FIFO named ``scan.png``
    would block ``open()`` itself until a writer came (forever, whatever ``--timeout``
    says), and checking the name first would leave a window to swap the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return Item(str(path), error=f"cannot read: {exc.strerror or exc}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return Item(str(path), error=f"not a regular file ({_kind(info.st_mode)}): only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size
    except OSError as exc:
        os.close(fd)
        return Item(str(path), error=f"cannot read: {exc.strerror or exc}")


def _image_item(path: Path, max_bytes: int) -> Item:
    """One image file, its size checked before a byte is read."""
    opened = _open_regular(path)
    if isinstance(opened, Item):
        return opened
    stream, size = opened
    with stream:
        if size > max_bytes:
            return Item(str(path), error=f"file too large: {size} bytes > limit of {max_bytes} (FUSEBOX_MAX_IMAGE_BYTES)")
        try:
            data = stream.read(max_bytes + 1)  # bounded even if the file grows meanwhile
        except OSError as exc:
            return Item(str(path), error=f"cannot read: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return Item(str(path), error=f"file too large: more than {max_bytes} bytes (FUSEBOX_MAX_IMAGE_BYTES)")
    return Item(str(path), data)


def _skip_line(stream: IO[bytes]) -> None:
    """Reads past the rest of an over-long line, in bounded pieces."""
    while True:
        more = stream.readline(1 << 20)
        if not more or more.endswith(b"\n"):
            return


def _text_items(path: Path, max_line_bytes: int) -> Iterator[Item]:
    """The texts of one ``.txt`` (a line each) or ``.jsonl`` file, read a line at a time
    (a 300 MB file costs one line of memory, and an absurd line is cut off unread). A
    file in another encoding than UTF-8 is rejected as a whole from its first bad line;
    a file without a single text is rejected too, as an empty folder is."""
    opened = _open_regular(path)
    if isinstance(opened, Item):
        yield opened
        return
    stream, _ = opened
    jsonl = path.suffix.lower() == ".jsonl"
    texts = 0
    with stream:
        number = 0
        while True:
            try:
                raw = stream.readline(max_line_bytes + 1)
            except OSError as exc:
                yield Item(str(path), error=f"cannot read: {exc.strerror or exc}")
                return
            if not raw:
                break
            number += 1
            source = f"{path}:{number}"
            texts += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                _skip_line(stream)
                yield Item(source, error=f"line longer than {max_line_bytes} bytes")
                continue
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield Item(str(path), error=f"not UTF-8 text (line {number}: {exc.reason} at byte {exc.start})")
                return
            if not line.strip():
                texts -= 1
                continue
            if not jsonl:
                yield Item(source, line.strip())
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Item(source, error=f"not JSON: {exc.msg}")
                continue
            if isinstance(value, dict) and isinstance(value.get("text"), str):
                yield Item(source, value["text"])
            elif isinstance(value, str):
                yield Item(source, value)
            else:
                yield Item(source, error='each JSONL line must be a JSON string or an object with a "text" string')
    if not texts:
        yield Item(str(path), error="file has no texts (empty, or only blank lines)")


def collect_inputs(
    model: str, args: list[str], max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES, exclude: Path | None = None
) -> Iterator[Item]:
    """Every input named by ``args``, in order, read one at a time as the caller goes (a
    folder of 100 000 images starts at once and stays flat in memory); unreadable ones as
    items with an error.

    Parameters:
      model: the model; image models read image files, text models ``.txt``/``.jsonl``.
      args: files, folders, glob patterns.
      max_image_bytes: image files larger than this are rejected without being read.
      exclude: never an input (the results file, which may lie in a folder being
        submitted and grows while it is walked).
    """
    spec = spec_for(model)
    image_model = spec.input == "image"
    # Room for a text at its longest limit, even with every character JSON-escaped.
    max_line_bytes = 8 * spec.max_text_chars + 1024
    skip = exclude.resolve() if exclude is not None else None
    for arg in args:
        for found in _files(arg, IMAGE_SUFFIXES if image_model else TEXT_SUFFIXES):
            if skip is not None and isinstance(found, Path) and found.resolve() == skip:
                continue
            if isinstance(found, Item):
                yield found
            elif image_model:
                yield _image_item(found, max_image_bytes)
            else:
                yield from _text_items(found, max_line_bytes)


def _previous(out_path: Path | None) -> tuple[set[str], dict[str, str]]:
    """Hashes already answered, and job ids submitted but not yet collected, per hash."""
    done: set[str] = set()
    submitted: dict[str, str] = {}
    if out_path is None or not out_path.exists():
        return done, submitted
    for line in out_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            digest, status = record["input_hash"], record["status"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by an interrupted run: that input is simply redone
        if status == "ok":
            done.add(digest)
            submitted.pop(digest, None)
        elif status == "submitted" and record.get("job_id") and digest not in done:
            submitted[digest] = record["job_id"]
    return done, submitted


@dataclass
class _Writer:
    stream: IO[str]

    def write(self, record: dict[str, Any]) -> None:
        # One flushed line per input: an interrupted batch keeps every answer it had.
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.stream.flush()


def submit_files(
    client: FuseboxClient,
    model: str,
    args: list[str],
    out_path: Path | None = None,
    wait: bool = True,
    deadline: float | None = None,
    timeout: float = 600.0,
    console: Console | None = None,
    priority: int = BATCH_PRIORITY,
) -> BatchReport:
    """Submits every input of ``args`` for ``model``, one job each through
    :meth:`FuseboxClient.submit_input` (as :meth:`FuseboxClient.submit_batch` does), with
    the results file kept as the module's docstring says.

    Parameters:
      client: where to submit.
      model: the model (``ocr``, ``sentiment``, ``ner``).
      args: files, folders, glob patterns.
      out_path: the JSONL results file (appended); standard output when None.
      wait: wait for answers (else record ``submitted`` lines).
      deadline: per-job deadline in seconds from submission.
      timeout: seconds to wait for all answers; the rest stay ``submitted``.
      console: where progress and the summary go (standard error).
      priority: the jobs' priority (0 to 9); below interactive jobs by default.
    """
    console = console or Console(stderr=True)
    report = BatchReport()
    done, earlier = _previous(out_path)
    stream = out_path.open("a", encoding="utf-8") if out_path is not None else None
    writer = _Writer(stream or sys.stdout)
    # Only what collecting needs: the input's name and hash, never its content.
    pending: dict[str, tuple[str, str]] = {}
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            bar = progress.add_task(f"{model}: submitting", total=None)
            for item in collect_inputs(model, args, client.settings.max_image_bytes, exclude=out_path):
                report.inputs += 1
                base = {"input": item.source, "task": model}  # "task": the results format's name
                if item.error is not None:
                    writer.write({**base, "input_hash": None, "status": "rejected", "error": item.error})
                    report.bad_inputs += 1
                    progress.advance(bar)
                    continue
                digest = item.content_hash(model)
                base["input_hash"] = digest
                if digest in done:
                    report.skipped += 1
                    progress.advance(bar)
                    continue
                if digest in earlier:
                    handle = client.handle(earlier.pop(digest), model)
                    report.collected += 1
                else:
                    try:
                        assert item.content is not None
                        handle = client.submit_input(model, item.content, deadline=deadline, priority=priority)
                    except InputError as exc:
                        writer.write({**base, "status": "rejected", "error": str(exc), "error_type": type(exc).__name__})
                        report.bad_inputs += 1
                        progress.advance(bar)
                        continue
                    report.submitted += 1
                    # Written before any waiting: an interrupted run's re-run collects this
                    # job instead of submitting the input again.
                    writer.write({**base, "status": "submitted", "job_id": handle.id, "routed_to": handle.routed_to})
                if not wait:
                    progress.advance(bar)
                    continue
                pending[handle.id] = (item.source, digest)
            progress.update(bar, total=report.inputs)
            if wait and pending:
                progress.update(bar, description=f"{model}: answering")
                _collect(client, model, pending, writer, report, timeout, lambda: progress.advance(bar))
    finally:
        if stream is not None:
            stream.close()
    console.print(summary_table(report))
    return report


def _collect(
    client: FuseboxClient,
    model: str,
    pending: dict[str, tuple[str, str]],
    writer: _Writer,
    report: BatchReport,
    timeout: float,
    tick: Any,
) -> None:
    backend = client.app.backend
    try:
        # Redis result backend: one MGET per interval for all outstanding jobs.
        for job_id, meta in backend.get_many(list(pending), timeout=timeout, interval=0.1):
            source, digest = pending.pop(job_id)
            base = {"input": source, "input_hash": digest, "task": model, "job_id": job_id}
            if meta["status"] == "SUCCESS":
                result = JobResult.model_validate(meta["result"])
                writer.write({**base, "status": "ok", "degraded": result.degraded, "served_by": result.served_by,
                              "output": result.output})
                report.ok += 1
                report.degraded += int(result.degraded)
            else:
                exc = backend.exception_to_python(meta["result"])
                writer.write({**base, "status": "failed", "error": str(exc), "error_type": type(exc).__name__})
                report.failed += 1
            tick()
    except CeleryTimeout:
        pass
    for job_id, (source, digest) in pending.items():
        writer.write({"input": source, "input_hash": digest, "task": model, "job_id": job_id,
                      "status": "submitted", "note": f"not answered within {timeout:.0f}s; a re-run collects it"})
        report.pending += 1


def summary_table(report: BatchReport) -> Table:
    table = Table(title="batch")
    for column in ("inputs", "skipped", "submitted", "collected", "ok", "degraded", "failed", "rejected", "pending"):
        table.add_column(column, justify="right")
    r = report
    table.add_row(*(str(v) for v in (r.inputs, r.skipped, r.submitted, r.collected, r.ok, r.degraded,
                                      f"[red]{r.failed}[/]" if r.failed else "0",
                                      f"[red]{r.bad_inputs}[/]" if r.bad_inputs else "0", r.pending)))
    return table
