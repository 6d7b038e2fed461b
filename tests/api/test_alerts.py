"""Webhook alerts against a local HTTP server: formats, one per transition, retries, never
blocking the breaker's caller."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from api.alerts import AlertSender
from api.services import free_port
from breaker import Breakers, BreakerPolicy, BreakerSettings
from tests.api.conftest import fusebox_command
from tests.support.fleet import wait_for
from workers.settings import Settings, Webhook


class Receiver:
    """A local webhook receiver: records bodies (and query strings) by path; answers as
    DingTalk and WeCom do (HTTP 200, ``{"errcode": 0}``) unless told otherwise; can fail,
    answer scripted errcodes, or hold requests on purpose."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.queries: dict[str, list[dict[str, str]]] = {}
        self.hits: dict[str, int] = {}
        self.fail_first = 0
        self.errcodes: dict[str, list[int]] = {}  # per path: errcodes to answer first, in order
        self.hold: set[str] = set()  # paths whose requests are held until release is set
        self.hold_first: set[str] = set()
        self.drop_first: set[str] = set()  # paths whose first request's connection is cut unanswered  # paths whose first request is held for good, never recorded
        self.release = threading.Event()
        self.release.set()
        self.forever = threading.Event()
        self.unhold = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                path, _, query = self.path.partition("?")
                receiver.hits[path] = receiver.hits.get(path, 0) + 1
                if path in receiver.drop_first and receiver.hits[path] == 1:
                    self.close_connection = True  # the receiver dies mid-request: no answer at all
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if path in receiver.hold_first and receiver.hits[path] == 1:
                    receiver.forever.wait(60)  # a request whose sender dies meanwhile
                    return
                receiver.release.wait(30)
                if path in receiver.hold:
                    receiver.unhold.wait(30)
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                codes = receiver.errcodes.get(path)
                code = codes.pop(0) if codes else 0
                if code == 0:
                    receiver.bodies.setdefault(path, []).append(body)
                    receiver.queries.setdefault(path, []).append(dict(urllib.parse.parse_qsl(query)))
                answer = json.dumps({"errcode": code, "errmsg": "ok" if code == 0 else f"error {code}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

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
    r.forever.set()
    r.unhold.set()
    r.server.shutdown()


@pytest.fixture
def breakers(redis_url: str, key_prefix: str) -> Iterator[Breakers]:
    settings = BreakerSettings(redis_url=redis_url, key_prefix=key_prefix)
    b = Breakers.from_url(redis_url, settings=settings, policies={"ocr": BreakerPolicy.for_tier("core")})
    b.wait_until_subscribed(10)
    yield b
    b.close()


def sender(receiver: Receiver, redis_client: redis.Redis, prefix: str, **kwargs: Any) -> AlertSender:
    hooks = Settings(alert_webhooks=f"{receiver.url('/generic')},dingtalk={receiver.url('/ding')},"
                                 f"wecom={receiver.url('/wecom')}").alert_webhooks
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


# -- at least once, errcodes, signatures, independence (issue 13) -----------------------------------


def _alert_keys(redis_client: redis.Redis, prefix: str) -> dict[str, str]:
    return {k.decode(): redis_client.get(k).decode() for k in redis_client.scan_iter(f"{prefix}:alerted:*")}


def test_errcode_failures_are_retried_when_retryable_and_reported_otherwise(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # DingTalk's rate limit twice, then accepted; WeCom's "invalid webhook url" for good.
    receiver.errcodes = {"/ding": [130101, 130101], "/wecom": [93000], "/keyword": [310000]}
    hooks = Settings(alert_webhooks=f"dingtalk={receiver.url('/ding')},wecom={receiver.url('/wecom')},"
                                 f"dingtalk={receiver.url('/keyword')}").alert_webhooks
    hook = AlertSender(hooks, redis_client, key_prefix, retries=4, backoff=0.05).start()
    breakers.add_listener(hook)
    breakers.get("ocr").trip(reason="errcodes")
    assert wait_for(lambda: hook.sent + hook.failed == 3, 15)
    hook.stop()
    assert (hook.sent, hook.failed) == (1, 2)  # before: all three counted as sent
    assert receiver.count("/ding") == 1 and receiver.hits["/ding"] == 3
    assert receiver.hits["/wecom"] == 1 and receiver.hits["/keyword"] == 1  # not retried: never succeeds
    problems = " ".join(hook.last_problem.values())
    assert "errcode 93000" in problems and "errcode 310000" in problems
    marks = sorted(_alert_keys(redis_client, key_prefix).values())
    assert marks == ["delivered", "failed", "failed"]
    assert "errcode 93000" in caplog.text


def test_dingtalk_signed_robot_gets_timestamp_and_sign(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str
) -> None:
    secret = "SEC0123456789abcdef"
    [hook] = Settings(alert_webhooks=f"dingtalk:{secret}={receiver.url('/ding')}?access_token=tok").alert_webhooks
    assert hook.secret == secret and "SEC" not in repr(hook) and "tok" not in repr(hook)
    sender = AlertSender([hook], redis_client, key_prefix, backoff=0.05).start()
    breakers.add_listener(sender)
    breakers.get("ocr").trip(reason="signed")
    assert wait_for(lambda: receiver.count("/ding") == 1, 10)
    sender.stop()
    query = receiver.queries["/ding"][0]
    assert query["access_token"] == "tok"
    # DingTalk's documented check: base64(HMAC-SHA256(secret, "<timestamp>\n<secret>")).
    expected = base64.b64encode(hmac.new(secret.encode(), f"{query['timestamp']}\n{secret}".encode(),
                                         hashlib.sha256).digest()).decode()
    assert query["sign"] == expected
    assert abs(int(query["timestamp"]) - time.time() * 1000) < 60_000


def test_a_dead_hook_does_not_delay_the_others_and_no_token_is_logged(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.hold = {"/dead"}
    hooks = [Webhook(url=receiver.url("/dead?access_token=TOKEN-DEAD")),
             Webhook(url=f"http://127.0.0.1:{free_port()}/refused?key=TOKEN-REFUSED"),
             Webhook(url=receiver.url("/live?access_token=TOKEN-LIVE"))]
    sender = AlertSender(hooks, redis_client, key_prefix, retries=3, backoff=0.05, timeout=30).start()
    breakers.add_listener(sender)
    breakers.get("ocr").trip(reason="one dead hook")
    breakers.get("ocr").reset(reason="still dead")
    # Both alerts reach the live hook while the first is still held by the dead one.
    assert wait_for(lambda: receiver.count("/live") == 2, 10)
    assert receiver.count("/dead") == 0 and receiver.hits.get("/dead") == 1
    assert wait_for(lambda: sender.failed == 2, 10)  # the refused one, given up twice
    receiver.unhold.set()
    assert wait_for(lambda: receiver.count("/dead") == 2, 20)
    sender.stop()
    assert "TOKEN-" not in caplog.text and "127.0.0.1 #" in caplog.text and "/refused" not in caplog.text


def test_a_sender_that_dies_mid_delivery_is_taken_over(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    # `fusebox alerts` claims the alert and posts it; the receiver never answers; kill -9.
    receiver.hold_first = {"/generic"}
    env = {**os.environ, "FUSEBOX_REDIS_URL": redis_url, "FUSEBOX_KEY_PREFIX": key_prefix,
           "FUSEBOX_ALERT_WEBHOOKS": receiver.url("/generic"), "FUSEBOX_ALERT_LEASE": "2"}
    service = subprocess.Popen([*fusebox_command(), "alerts"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    survivor = AlertSender([Webhook(url=receiver.url("/generic"))], redis_client, key_prefix, backoff=0.05,
                           timeout=1, lease=2)
    try:
        assert wait_for(lambda: service.poll() is None and _service_ready(redis_client, key_prefix), 60)
        breakers.get("ocr").trip(reason="sender dies")
        assert wait_for(lambda: receiver.hits.get("/generic") == 1, 20)  # the service's post, held
        leases = _alert_keys(redis_client, key_prefix)
        assert [v.startswith("lease:") for v in leases.values()] == [True]  # the service holds it
        # Another sender hears of it (here: from the stream, as one starting now would).
        survivor.start()
        assert survivor.replay(breakers.history(None, 10), 600) == 1
        os.killpg(service.pid, signal.SIGKILL)
        service.wait(10)
        # The lease runs out; the survivor, which heard the same transition, takes over.
        assert wait_for(lambda: receiver.count("/generic") == 1, 20)
        assert wait_for(lambda: list(_alert_keys(redis_client, key_prefix).values()) == ["delivered"], 5)
        assert survivor.taken_over == 1 and survivor.sent == 1
        wait_for(lambda: False, 0.5)
        assert receiver.count("/generic") == 1 and receiver.hits["/generic"] == 2
    finally:
        survivor.stop()
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait(10)


def _service_ready(redis_client: redis.Redis, prefix: str) -> bool:
    """`fusebox alerts` subscribed: the events channel has a subscriber besides ours."""
    channels = redis_client.pubsub_numsub(*[c for c in redis_client.pubsub_channels(f"{prefix}*")])
    return any(n >= 2 for _, n in channels)


def test_a_starting_sender_replays_what_was_not_delivered_and_only_that(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str
) -> None:
    breakers.get("ocr").trip(reason="while no sender ran")
    breakers.get("ocr").reset(reason="still none")
    first = AlertSender([Webhook(url=receiver.url("/generic"))], redis_client, key_prefix, backoff=0.05).start()
    assert first.replay(breakers.history(None, 100), 600) == 2
    assert wait_for(lambda: receiver.count("/generic") == 2, 10)
    first.stop()
    second = AlertSender([Webhook(url=receiver.url("/generic"))], redis_client, key_prefix, backoff=0.05).start()
    assert second.replay(breakers.history(None, 100), 600) == 2
    wait_for(lambda: False, 0.5)
    second.stop()
    assert receiver.count("/generic") == 2 and second.sent == 0  # delivered marks: no duplicates
    assert AlertSender([], redis_client, key_prefix).replay(breakers.history(None, 100), 0) == 0


def test_fusebox_alerts_test_reports_each_hook(receiver: Receiver, redis_url: str, key_prefix: str) -> None:
    receiver.errcodes = {"/keyword": [310000] * 10}
    env = {**os.environ, "FUSEBOX_REDIS_URL": redis_url, "FUSEBOX_KEY_PREFIX": key_prefix,
           "FUSEBOX_ALERT_WEBHOOKS": f"wecom={receiver.url('/wecom?key=SECRET-KEY')},"
                                     f"dingtalk={receiver.url('/keyword?access_token=SECRET-TOKEN')}"}
    result = subprocess.run([*fusebox_command(), "alerts", "test", "--message", "hello on-call", "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    results = json.loads(result.stdout)["results"]
    assert [r["ok"] for r in results] == [True, False]
    assert "errcode 310000" in results[1]["problem"] and results[1]["attempts"] == 1
    assert "SECRET" not in result.stdout + result.stderr
    assert "hello on-call" in receiver.bodies["/wecom"][0]["markdown"]["content"]

    env["FUSEBOX_ALERT_WEBHOOKS"] = receiver.url("/generic")
    ok = subprocess.run([*fusebox_command(), "alerts", "test"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "ok" in ok.stdout, ok.stderr
    assert receiver.bodies["/generic"][0]["test"] is True
    none = subprocess.run([*fusebox_command(), "alerts", "test"], env={**env, "FUSEBOX_ALERT_WEBHOOKS": ""},
                          capture_output=True, text=True, timeout=60)
    assert none.returncode == 2 and "FUSEBOX_ALERT_WEBHOOKS" in none.stderr and "Traceback" not in none.stderr


def test_a_receiver_that_dies_mid_request_gets_the_alert_again(
    receiver: Receiver, breakers: Breakers, redis_client: redis.Redis, key_prefix: str
) -> None:
    receiver.drop_first = {"/ding"}
    [hook] = Settings(alert_webhooks=f"dingtalk={receiver.url('/ding')}").alert_webhooks
    sender = AlertSender([hook], redis_client, key_prefix, backoff=0.05).start()
    breakers.add_listener(sender)
    breakers.get("ocr").trip(reason="receiver drops the connection")
    assert wait_for(lambda: receiver.count("/ding") == 1, 10)
    sender.stop()
    assert receiver.hits["/ding"] == 2 and (sender.sent, sender.failed) == (1, 0)
    assert list(_alert_keys(redis_client, key_prefix).values()) == ["delivered"]
