"""The ``fusebox`` command: the typer app, assembled from one module per verb group.

    fusebox demo [--jobs N] [--json]                 the whole story, on a fresh machine
    fusebox submit PATH... --model ocr|sentiment|ner a folder of images, a file of texts
    fusebox cancel JOB_ID [--json]                   cancel a queued or parked job
    fusebox breakers [--json]                        every breaker, at a glance
    fusebox breaker trip|reset|disable|metrics-only|force-open NAME
    fusebox breaker set NAME --failure-rate-threshold 0.4 ...   live, no restart
    fusebox breaker clear-policy NAME | history [NAME]
    fusebox chaos NAME --error-rate 0.5 --latency 2 --hang [--for 10m] | --off
    fusebox serve                                    HTTP: health, metrics, breaker page
    fusebox alerts [test]                            the alert service; a test message to every webhook
    fusebox doctor [--json]                          Redis, broker, store, a worker per queue, faults left on

Errors the user can fix (bad input, Redis not answering, an unknown breaker) print one line
and exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import sys

import typer

from api.cli import alerts, breakers, chaos, jobs, ops
from api.cli.output import UserError, err
from api.services import ServiceError
from breaker import STORE_ERRORS, InputError, StoreUnavailable

app = typer.Typer(
    name="fusebox",
    help="Asynchronous OCR/NLP jobs behind a distributed circuit breaker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# In the order `fusebox --help` has always listed them.
app.command("demo")(ops.demo)
app.command("submit")(jobs.submit)
app.command("cancel")(jobs.cancel)
app.command("breakers")(breakers.show_breakers)
app.command("chaos")(chaos.chaos)
app.command("doctor")(ops.doctor)
app.command("serve")(ops.serve)
app.add_typer(breakers.breaker_app, name="breaker")
app.add_typer(alerts.alerts_app, name="alerts")


def main() -> None:
    """The console script: typer (which prints usage errors and exits 2 itself), with the
    errors a user can fix printed as one line instead of a traceback."""
    try:
        app()
    except UserError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(exc.code)
    except InputError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except StoreUnavailable as exc:
        # An operator action that needs the shared breaker store, which stopped answering.
        err.print(f"[red]error:[/] {exc} (FUSEBOX_REDIS_URL)")
        sys.exit(1)
    except STORE_ERRORS as exc:
        err.print(f"[red]error:[/] {type(exc).__name__}: {exc}")
        sys.exit(1)
    except ServiceError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
