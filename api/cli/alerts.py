"""``fusebox alerts``: the alert service (no subcommand), and ``fusebox alerts test``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from api.cli.context import fusebox_settings, require_redis
from api.cli.output import Json, UserError, err, out, print_json
from breaker.connection import redis_client
from workers.models import MODELS
from workers.settings import Settings

alerts_app = typer.Typer(help="Breaker alerts to webhooks: the service (no subcommand), or `test`.",
                         invoke_without_command=True)


def _alert_sender(settings: Settings) -> Any:
    from api.alerts import AlertSender

    if not settings.alert_webhooks:
        raise UserError("no webhooks: set FUSEBOX_ALERT_WEBHOOKS (format=url,...)", 2)
    client = redis_client(settings.redis_url, 5, fail_fast=False)
    return AlertSender(settings.alert_webhooks, client, settings.key_prefix, retries=settings.alert_retries,
                       lease=settings.alert_lease)


def _device_feed(settings: Settings) -> Any:
    from api.device_alerts import DeviceAlertSender, DeviceEventFeed

    client = redis_client(settings.redis_url, 5, fail_fast=False)
    sender = DeviceAlertSender(settings.alert_webhooks, client, settings.key_prefix, retries=settings.alert_retries,
                               lease=settings.alert_lease)
    return DeviceEventFeed(sender, client, settings.key_prefix, settings.alert_replay)


@alerts_app.callback()
def alerts(ctx: typer.Context) -> None:
    """Run the alert service: one message per breaker transition to every webhook of
    FUSEBOX_ALERT_WEBHOOKS, needing no HTTP server. Any number of these (and of `fusebox
    serve`) share the work: each alert is delivered once, and taken over if its sender
    dies. Stops on SIGTERM or Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    import signal
    import threading

    from api.alerts import hook_label
    from breaker import Breakers

    settings = fusebox_settings()
    require_redis(settings)
    sender = _alert_sender(settings)
    breakers = Breakers.from_url(settings.redis_url, settings=settings.breaker_settings(),
                                 policies={name: spec.policy for name, spec in MODELS.items()})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for name in MODELS:
            breakers.get(name)
        breakers.wait_until_subscribed(5.0)
        sender.start()
        devices = _device_feed(settings).start()  # an alert per device ejection and return
        remove = breakers.add_listener(sender)
        replayed = sender.replay(breakers.history(None, 1000), settings.alert_replay)
        err.print(f"fusebox alerts: sending to {', '.join(hook_label(h) for h in settings.alert_webhooks)}; "
                  f"{replayed} transition(s) of the last {settings.alert_replay:.0f}s re-checked")
        while not stop.wait(1.0):
            pass
        remove()
    finally:
        sender.stop()
        if "devices" in locals():
            devices.stop()
        breakers.close()
    err.print(f"fusebox alerts: stopped ({sender.sent} sent, {sender.failed} failed, {sender.dropped} dropped)")


@alerts_app.command("test")
def alerts_test(
    message: Annotated[str, typer.Option(help="The text to send.")] = "fusebox alert test",
    as_json: Json = False,
) -> None:
    """Send a test message to every webhook now; exit status 1 if any did not accept it
    (DingTalk and WeCom errcodes included: a bad token, keyword or signature shows here)."""
    settings = fusebox_settings()
    sender = _alert_sender(settings)
    results = sender.send_test(message)
    if as_json:
        print_json({"results": [{"hook": r.hook, "ok": r.ok, "attempts": r.attempts, "problem": r.problem}
                                for r in results]})
    else:
        for r in results:
            out.print(f"{r.hook}: " + ("[green]ok[/]" if r.ok else f"[red]failed[/] after {r.attempts} attempt(s): "
                                                                   f"{r.problem}"))
    if not all(r.ok for r in results):
        raise typer.Exit(1)
