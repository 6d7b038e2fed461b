"""The ``fusebox`` command: the typer app, assembled from one module per verb group.

    fusebox demo [--jobs N] [--json]                 the whole story, on a fresh machine
    fusebox submit PATH... --model ocr|sentiment|ner a folder of images, a file of texts
    fusebox cancel JOB_ID [--json]                   cancel a queued or parked job
    fusebox breakers [--json]                        every breaker, at a glance
    fusebox breaker trip|reset|disable|metrics-only|force-open NAME
    fusebox breaker set NAME --failure-rate-threshold 0.4 ...   live, no restart
    fusebox breaker clear-policy NAME | history [NAME]
    fusebox breaker what-if NAME --failure-rate-threshold 0.3 ...   replay 24 h against a policy
    fusebox chaos NAME --error-rate 0.5 --latency 2 --hang [--for 10m] | --off
    fusebox serve                                    HTTP: health, metrics, breaker page
    fusebox alerts [test]                            the alert service; a test message to every webhook
    fusebox doctor [--json]                          Redis, broker, store, a worker per queue, faults left on

Errors the user can fix (bad input, Redis not answering, an unknown breaker) print one line
and exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from pydantic import ValidationError

from api.cli.output import UserError, err
from breaker import STORE_ERRORS, InputError, StoreUnavailable


def bad_setting(exc: ValidationError) -> str:
    """The first refused ``FUSEBOX_*`` variable, named as the user set it, and why."""
    first = exc.errors()[0]
    field = str(first["loc"][0]).upper() if first["loc"] else ""
    if not field:
        return str(first["msg"])
    # workers.settings.Settings.variables() knows the names, but it cannot be imported
    # here: importing any workers module builds the Celery app, which reads the very
    # settings that were refused. The rule is the same: FUSEBOX_ + the field in capitals,
    # and a field read under an alias (CELERY_BROKER_URL) keeps that name.
    variable = field if field.startswith(("FUSEBOX_", "CELERY_")) else f"FUSEBOX_{field}"
    return f"{variable}: {first['msg']}"


def main() -> None:
    """The console script: typer (which prints usage errors and exits 2 itself), with the
    errors a user can fix printed as one line instead of a traceback."""
    try:
        # Importing the verbs imports the workers' Celery app, which reads the settings:
        # a bad FUSEBOX_* variable surfaces here, as one line.
        from api.cli.commands import app
        from api.services import ServiceError
    except ValidationError as exc:
        fail(f"bad setting {bad_setting(exc)}", 2)
    try:
        app()
    except UserError as exc:
        fail(str(exc), exc.code)
    except InputError as exc:
        fail(str(exc), 2)
    except StoreUnavailable as exc:  # an operator action needs the store, which stopped answering
        fail(f"{exc} (FUSEBOX_REDIS_URL)", 1)
    except STORE_ERRORS as exc:
        fail(f"{type(exc).__name__}: {exc}", 1)
    except ServiceError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def fail(message: str, code: int) -> NoReturn:
    """Prints one error line (no traceback) and exits with ``code``."""
    err.print(f"[red]error:[/] {message}")
    sys.exit(code)
