"""The typer app of the ``fusebox`` command, assembled from one module per verb group."""

from __future__ import annotations

import typer

from api.cli import alerts, breakers, chaos, jobs, ops, workers

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
app.command("workers")(workers.show_workers)
app.add_typer(workers.worker_app, name="worker")
