"""Finding 5 of issue 26: a breaker reason (``--reason``, ``?reason=``) is operator text,
not markdown: it arrives at DingTalk and WeCom escaped and bounded; and the API and the CLI
refuse a reason over 500 characters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.alerts import AlertSender
from api.http import create_app
from breaker import Breakers, BreakerPolicy, BreakerSettings
from breaker.events import MAX_REASON
from tests.api.test_alerts import Receiver
from tests.support.fleet import wait_for
from workers.settings import Settings

CRAFTED = ("drill\n# Fake heading\n[reset it here](http://evil.example/login) "
           "![](http://track.example/pixel.png) <@all> <font color=red>x</font> **urgent**")
TOKEN = "alert-escaping-token-0123"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_a_markdown_reason_arrives_escaped(receiver: Receiver, redis_url: str, key_prefix: str,
                                           redis_client: redis.Redis) -> None:
    hooks = Settings(alert_webhooks=f"dingtalk={receiver.url('/ding')},wecom={receiver.url('/wecom')}").alert_webhooks
    sender = AlertSender(hooks, redis_client, key_prefix, backoff=0.05).start()
    breakers = Breakers.from_url(redis_url, settings=BreakerSettings(redis_url=redis_url, key_prefix=key_prefix),
                                 policies={"ocr": BreakerPolicy.for_tier("core")})
    try:
        breakers.wait_until_subscribed(10)
        breakers.add_listener(sender)
        breakers.get("ocr").trip(reason=CRAFTED)
        assert wait_for(lambda: receiver.count("/ding") == 1 and receiver.count("/wecom") == 1, 10)
    finally:
        sender.stop()
        breakers.close()
    for text in (receiver.bodies["/ding"][0]["markdown"]["text"], receiver.bodies["/wecom"][0]["markdown"]["content"]):
        reason = next(line for line in text.splitlines() if line.startswith("- reason:"))
        assert not any(line.lstrip().startswith("#") for line in text.splitlines())  # no injected heading
        assert "](" not in reason.replace("\\](", "").replace("\\]\\(", "")  # no link or image syntax left
        assert "<@all>" not in text and "<font" not in text and "&lt;@" in reason
        assert "**urgent**" not in reason and "\\*\\*urgent\\*\\*" in reason
        assert "http://evil.example" not in text  # not auto-linked either
        assert "evil" in reason and "Fake heading" in reason  # still readable


def test_a_long_reason_is_refused_by_the_api_and_the_cli(redis_url: str, key_prefix: str) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, api_token=TOKEN)
    with TestClient(create_app(settings)) as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        too_long = http.post("/breakers/ocr/trip", params={"reason": "x" * (MAX_REASON + 1)}, headers=auth)
        assert too_long.status_code == 422
        assert http.get("/breakers/ocr").json()["state"] == "closed"
    env = {"FUSEBOX_REDIS_URL": redis_url, "FUSEBOX_KEY_PREFIX": key_prefix, "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([str(Path(sys.executable).parent / "fusebox"), "breaker", "trip", "ocr",
                             "--reason", "y" * 60_000], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "at most 500" in result.stderr + result.stdout
