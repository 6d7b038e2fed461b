"""Webhook alerts against a local HTTP server: formats, one per transition, retries, never
blocking the breaker's caller."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from api.alerts import AlertSender
from api.settings import ApiSettings, Webhook
from breaker import Breakers, BreakerPolicy, BreakerSettings
from tests.support.fleet import wait_for


class Receiver:
    """A local webhook receiver: records bodies by path; can fail or block on purpose."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.fail_first = 0
        self.release = threading.Event()
        self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.release.wait(30)
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.bodies.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def count(self, path: str) -> int:
        return len(self.bodies.get(path, []))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.release.set()
    r.server.shutdown()


@pytest.fixture
def breakers(redis_url: str, key_prefix: str) -> Iterator[Breakers]:
    settings = BreakerSettings(redis_url=redis_url, key_prefix=key_prefix)
    b = Breakers.from_url(redis_url, settings=settings, policies={"ocr": BreakerPolicy.for_tier("core")})
    b.wait_until_subscribed(10)
    yield b
    b.close()


def sender(receiver: Receiver, redis_client: redis.Redis, prefix: str, **kwargs: Any) -> AlertSender:
    hooks = ApiSettings(webhooks=f"{receiver.url('/generic')},dingtalk={receiver.url('/ding')},"
                                 f"wecom={receiver.url('/wecom')}").webhooks
    return AlertSender(hooks, redis_client, prefix, backoff=0.05, **kwargs)


def test_one_alert_per_transition_in_each_format_even_with_two_senders(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Two replicas of `fusebox serve`, both listening: the claims in Redis keep it to one.
    a, b = sender(receiver, redis_client, key_prefix).start(), sender(receiver, redis_client, key_prefix).start()
    breakers.add_listener(a)
    breakers.add_listener(b)
    breakers.get("ocr").trip(reason="drill")
    breakers.get("ocr").reset(reason="drill over")
    assert wait_for(lambda: all(receiver.count(p) == 2 for p in ("/generic", "/ding", "/wecom")), 10)
    wait_for(lambda: False, 0.5)  # time for a duplicate to show up, if there were one
    assert all(receiver.count(p) == 2 for p in ("/generic", "/ding", "/wecom"))
    a.stop()
    b.stop()

    # Two senders share the work, so arrival order is theirs; the epochs give the real one.
    generic = sorted(receiver.bodies["/generic"], key=lambda e: e["event"]["epoch"])
    assert [(e["event"]["from_state"], e["event"]["to_state"]) for e in generic] == [("closed", "open"), ("open", "closed")]
    assert "ocr: closed -> open (drill)" in generic[0]["text"]
    ding = next(d for d in receiver.bodies["/ding"] if "closed -> open" in d["markdown"]["title"])
    assert ding["msgtype"] == "markdown" and "ocr" in ding["markdown"]["title"] and "drill" in ding["markdown"]["text"]
    wecom = [w["markdown"]["content"] for w in receiver.bodies["/wecom"]]
    assert sorted("closed → open" in c for c in wecom) == [False, True]


def test_retries_with_backoff_until_the_receiver_answers(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str
) -> None:
    receiver.fail_first = 2
    hook = AlertSender([Webhook(url=receiver.url("/generic"))], redis_client, key_prefix, retries=4,
                       backoff=0.05).start()
    breakers.add_listener(hook)
    breakers.get("ocr").trip(reason="flaky receiver")
    assert wait_for(lambda: receiver.count("/generic") == 1, 10)
    assert (hook.sent, hook.failed) == (1, 0)
    hook.stop()


def test_gives_up_after_its_retries_and_counts_it(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str
) -> None:
    receiver.fail_first = 100
    hook = AlertSender([Webhook(url=receiver.url("/generic"))], redis_client, key_prefix, retries=3,
                       backoff=0.01).start()
    breakers.add_listener(hook)
    breakers.get("ocr").trip(reason="dead receiver")
    assert wait_for(lambda: hook.failed == 1, 10)
    assert hook.sent == 0 and receiver.count("/generic") == 0
    hook.stop()


def test_a_hanging_receiver_never_blocks_the_breaker(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str
) -> None:
    receiver.release.clear()  # the receiver holds every request until released
    hook = AlertSender([Webhook(url=receiver.url("/generic"))], redis_client, key_prefix).start()
    breakers.add_listener(hook)
    breaker = breakers.get("ocr")
    breaker.trip(reason="receiver hangs")
    breaker.reset(reason="still hanging")
    # Both transitions happened, and the breaker answers, while the receiver still holds the first alert.
    assert breaker.snapshot().totals.get("to_closed", 0) >= 1
    assert receiver.count("/generic") == 0
    receiver.release.set()
    assert wait_for(lambda: receiver.count("/generic") == 2, 10)
    hook.stop()
