"""Finding 9 of issue 26: two fleets on one Redis, each with its own FUSEBOX_KEY_PREFIX and
nothing else set, must not share queues or results."""

from __future__ import annotations

import redis

from workers.app import make_app
from workers.broker import purge, queue_depths
from workers.settings import Settings


def test_fleets_with_their_own_key_prefix_do_not_share_a_queue(redis_url: str, key_prefix: str,
                                                                 redis_client: redis.Redis) -> None:
    a = Settings(redis_url=redis_url, key_prefix=f"{key_prefix}-a")
    b = Settings(redis_url=redis_url, key_prefix=f"{key_prefix}-b")
    assert a.broker_keys == f"{key_prefix}-a:" and b.broker_keys == f"{key_prefix}-b:"
    app = make_app(a)
    try:
        app.send_task("fusebox.isolation-probe", args=[1], queue="echo")
        assert queue_depths(a, ["echo"]) == {"echo": 1}
        assert queue_depths(b, ["echo"]) == {"echo": 0}  # b's workers would never see a's job
        result = app.AsyncResult("isolation-probe")
        app.backend.store_result(result.id, {"answer": 1}, "SUCCESS")
        assert make_app(b).AsyncResult(result.id).state == "PENDING"  # nor read a's results
        assert make_app(a).AsyncResult(result.id).state == "SUCCESS"
    finally:
        purge(a, ["echo"])
        app.close()
    for key in redis_client.scan_iter(f"{key_prefix}-*", count=1000):
        redis_client.delete(key)


def test_no_prefix_only_when_asked_for() -> None:
    assert Settings(key_prefix="x", broker_key_prefix="none").broker_keys == ""
    assert Settings(key_prefix="x", broker_key_prefix="y.").broker_keys == "y."
    conf = make_app(Settings(key_prefix="x")).conf
    assert conf.broker_transport_options["global_keyprefix"] == "x:"
    assert conf.result_backend_transport_options["global_keyprefix"] == "x:"
