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

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from celery.exceptions import TimeoutError as CeleryTimeout
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.batch_inputs import IMAGE_SUFFIXES, TEXT_SUFFIXES, Item, collect_inputs  # noqa: F401 - re-exported
from api.client import FuseboxClient
from breaker import InputError
from workers.jobs import BATCH_PRIORITY, JobResult


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


def open_results(out_path: Path) -> IO[str]:
    """The results file, opened for reading and appending, never through a symbolic link
    (a planted ``results.jsonl -> ~/.bashrc`` would get a JSON line appended, with a file
    name crafted to run a command) and only if it is a regular file.

    Raises:
      InputError: a link, or not a regular file, or it cannot be opened.
    """
    try:
        fd = os.open(out_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if os.path.islink(out_path):
            raise InputError(f"--out {out_path} is a symbolic link: not followed (name the file itself)") from None
        raise InputError(f"cannot open --out {out_path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"--out {out_path} is not a regular file")
    return os.fdopen(fd, "a+", encoding="utf-8")


def _previous(stream: IO[str] | None) -> tuple[set[str], dict[str, str]]:
    """Hashes already answered, and job ids submitted but not yet collected, per hash, from
    the results file (read from its start; writes still go to its end)."""
    done: set[str] = set()
    submitted: dict[str, str] = {}
    if stream is None:
        return done, submitted
    stream.seek(0)
    for line in stream.read().splitlines():
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
    stream = open_results(out_path) if out_path is not None else None
    done, earlier = _previous(stream)
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
