"""Job verbs: ``fusebox submit`` (a folder of images or a file of texts) and ``fusebox
cancel``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from api.cli.context import open_client
from api.cli.output import UserError, err, out, print_json
from breaker import InputError
from workers.jobs import BATCH_PRIORITY
from workers.models import MODELS


def submit(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or glob patterns; for text models .txt (one text "
                                                    "per line) or .jsonl ({\"text\": ...} or a JSON string per line).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="ocr, sentiment or ner "
                                                                  "(ocr when not given).")] = None,
    # The flag's first name, kept working for the scripts that use it.
    task: Annotated[Optional[str], typer.Option("--task", "-t", hidden=True)] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the answers and write them.")] = True,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results, appended as JSONL; inputs "
                                                                         "already answered there are skipped.")] = None,
    deadline: Annotated[Optional[float], typer.Option(help="Seconds after which a degraded answer is preferred.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for all answers.")] = 600.0,
    priority: Annotated[int, typer.Option(min=0, max=9, help="0 (least urgent) to 9; batches default below "
                                                             "interactive jobs (6).")] = BATCH_PRIORITY,
) -> None:
    """Submit a folder of images or a file of texts; results as JSONL, progress on screen.
    Exit status 1 when any input was rejected, failed, or was not answered in time."""
    from api.batch import submit_files

    if model is not None and task is not None:
        raise UserError("--model and --task are the same option: give one", 2)
    flag = "--task" if task is not None else "--model"
    chosen = model or task or "ocr"
    if chosen not in MODELS or chosen == "echo":
        raise UserError(f"{flag} must be one of: {', '.join(m for m in MODELS if m != 'echo')}", 2)
    if deadline is not None:
        from workers.inputs import check_deadline

        try:
            check_deadline(deadline)  # before anything is read or stored: nan, inf, 1e308
        except InputError as exc:
            raise UserError(f"--{exc}", 2) from None
    with open_client() as client:
        report = submit_files(client, chosen, paths, out_path=out_path, wait=wait, deadline=deadline,
                              timeout=timeout, console=err, priority=priority)
    if report.failed or report.bad_inputs or report.pending:
        raise typer.Exit(1)


def cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id, as submitted (a `job_id` of `fusebox submit`).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Cancel a queued or parked job: it is never run, and reads CANCELLED. Exit status 1
    for an unknown job or one that already started or finished."""
    from api.client import CannotCancel, UnknownJob

    with open_client() as client:
        try:
            outcome = client.cancel(job_id, reason="cancelled via CLI")
        except UnknownJob as exc:
            answer, code = {"job_id": job_id, "status": "unknown", "error": str(exc)}, 1
        except CannotCancel as exc:
            answer, code = {"job_id": job_id, "status": exc.status, "error": str(exc)}, 1
        else:
            answer, code = {"job_id": job_id, "status": "CANCELLED", "outcome": outcome}, 0
    if as_json:
        print_json(answer)
    elif code:
        err.print(f"{job_id}: {answer['error']}")
    else:
        out.print(f"{job_id}: {outcome}")
    if code:
        raise typer.Exit(code)
