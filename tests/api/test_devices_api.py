"""``fusebox workers``, ``fusebox worker eject|restore``, ``fusebox chaos --worker
--device-fault`` and their HTTP equivalents, on a real Redis (device records written as the
workers write them; no worker needed)."""

from __future__ import annotations

import json
import time
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from api.http import create_app
from workers.devices.rules import EjectionRules
from workers.devices.store import DeviceStore
from workers.faults import Faults
from workers.settings import Settings

pytestmark = pytest.mark.redis
TOKEN = "t0ken-for-the-tests"
OPERATOR = "operator-t0ken-for-the-tests"


@pytest.fixture
def store(redis_client: redis.Redis, key_prefix: str) -> DeviceStore:
    store = DeviceStore(redis_client, key_prefix, EjectionRules())
    store.seen("ner", ["w1@h/cpu0", "w2@h/cpu0", "w3@h/cpu0", "w4@h/cpu0"])
    store.record("ner", "w1@h/cpu0", False, "w1@h", "OSError: (External) CUDA error(700)")
    store.record("ner", "w2@h/cpu0", True, "w2@h")
    store.eject("ner", "w1@h/cpu0", "device fault")
    return store


def fusebox(redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FUSEBOX_REDIS_URL": redis_url, "FUSEBOX_KEY_PREFIX": prefix, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_workers_cli_shows_the_ejected_device(store: DeviceStore, redis_url: str, key_prefix: str) -> None:
    view = json.loads(fusebox(redis_url, key_prefix, "workers", "--json").stdout)
    rows = {(d["model"], d["device"]): d for d in view["devices"]}
    sick = rows[("ner", "w1@h/cpu0")]
    assert sick["state"] == "ejected" and sick["reason"] == "device fault" and sick["ejections"] == 1
    assert 0 < sick["next_probe_in"] <= 30 and sick["failures"] == 1
    assert rows[("ner", "w2@h/cpu0")]["state"] == "healthy"
    assert view["ejected"] == {"ner": ["w1@h/cpu0"]}
    table = fusebox(redis_url, key_prefix, "workers")
    assert table.returncode == 0 and "w1@h/cpu0" in table.stdout and "ejected" in table.stdout


def test_operator_eject_and_restore(store: DeviceStore, redis_url: str, key_prefix: str) -> None:
    done = fusebox(redis_url, key_prefix, "worker", "restore", "w1@h", "--json")
    assert done.returncode == 0, done.stderr
    assert [d["state"] for d in json.loads(done.stdout)["devices"]] == ["healthy"]
    assert store.ejected("ner") == {}
    # an operator's ejection is not capped: two of four (one already) and a third
    for name in ("w2@h", "w3@h", "w4@h"):
        assert fusebox(redis_url, key_prefix, "worker", "eject", name).returncode == 0
    assert len(store.ejected("ner")) == 3
    missing = fusebox(redis_url, key_prefix, "worker", "eject", "nobody@nowhere")
    assert missing.returncode == 1 and "no device or worker named" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_http_workers_and_targeted_chaos(store: DeviceStore, redis_url: str, key_prefix: str) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, api_token=TOKEN, api_chaos_token=OPERATOR)
    auth = {"Authorization": f"Bearer {OPERATOR}"}  # ejecting and fault injection take the operator's token
    with TestClient(create_app(settings)) as http:
        view = http.get("/workers").json()
        assert view["ejected"] == {"ner": ["w1@h/cpu0"]}
        metrics = http.get("/metrics").text
        assert 'fusebox_device_ejected{model="ner",worker="w1@h/cpu0"} 1.0' in metrics
        assert 'fusebox_device_ejections_total{model="ner",reason="device_fault"} 1.0' in metrics
        assert http.post("/workers/w1@h/restore").status_code in (401, 403)
        job_token = {"Authorization": f"Bearer {TOKEN}"}  # the token that submits jobs cannot eject
        assert http.post("/workers/w1@h/restore", headers=job_token).status_code == 401
        restored = http.post("/workers/w1@h/restore", headers=auth)
        assert restored.status_code == 200 and restored.json()["devices"][0]["state"] == "healthy"
        assert http.post("/workers/nobody/eject", headers=auth).status_code == 404
        on = http.post("/chaos/ner", json={"device_fault": True, "worker": "w2@h", "for_seconds": 30}, headers=auth)
        assert on.status_code == 200 and on.json()["fault"] == {"device_fault": True}
        assert on.json()["worker"] == "w2@h"
    faults = Faults(redis.Redis.from_url(redis_url), key_prefix)
    assert faults.get("ner", "w2@h").device_fault and not faults.get("ner").active  # that worker only


def test_chaos_cli_targets_one_worker(redis_url: str, key_prefix: str) -> None:
    done = fusebox(redis_url, key_prefix, "chaos", "ner", "--device-fault", "--worker", "w3@h", "--for", "30s",
                   "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["fault"] == {"device_fault": True}
    faults = Faults(redis.Redis.from_url(redis_url), key_prefix)
    assert faults.get("ner", "w3@h").device_fault and not faults.get("ner").active
    assert fusebox(redis_url, key_prefix, "chaos", "ner", "--worker", "w3@h", "--off").returncode == 0
    assert not faults.get("ner", "w3@h").active


def test_an_alert_per_ejection_and_per_return_once_with_two_senders(redis_client: redis.Redis,
                                                                       key_prefix: str) -> None:
    from api.device_alerts import DeviceAlertSender, DeviceEventFeed
    from tests.api.test_alerts import Receiver
    from tests.support.waiting import wait_for

    receiver = Receiver()
    hooks = Settings(alert_webhooks=f"{receiver.url('/generic')},dingtalk={receiver.url('/ding')}").alert_webhooks
    feeds = [DeviceEventFeed(DeviceAlertSender(hooks, redis_client, key_prefix, backoff=0.05), redis_client,
                             key_prefix, replay=60).start() for _ in range(2)]  # two replicas of the service
    try:
        store = DeviceStore(redis_client, key_prefix, EjectionRules())
        store.seen("ner", ["w1@h/gpu0", "w2@h/gpu0"])
        assert store.eject("ner", "w1@h/gpu0", "device fault").ejected
        assert not store.eject("ner", "w2@h/gpu0", "device fault").ejected  # refused by the cap: no alert
        assert store.restore("ner", "w1@h/gpu0")
        assert wait_for(lambda: receiver.count("/generic") == 2 and receiver.count("/ding") == 2, 10)
        time.sleep(0.5)  # no duplicate arrives late
        assert receiver.count("/generic") == 2 and receiver.count("/ding") == 2
        texts = [b["text"] for b in receiver.bodies["/generic"]]
        assert texts == ["fusebox device w1@h/gpu0: ejected from ner (device fault)",
                         "fusebox device w1@h/gpu0: returned from ner (probe succeeded)"]
        # markdown-escaped like every alert's text (api/alert_format.py): no '@' that could mention
        assert "🔴 w1@\u200dh/gpu0: ejected from ner" in receiver.bodies["/ding"][0]["markdown"]["text"]
    finally:
        for feed in feeds:
            feed.stop()
        receiver.server.shutdown()


def test_the_breaker_page_shows_an_ejected_device(store: DeviceStore, redis_url: str, key_prefix: str) -> None:
    import shutil
    import threading

    import uvicorn

    from api.services import free_port
    from tests.support.waiting import wait_for

    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("needs Debian's chromium and chromium-driver (./dev installs them)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(redis_url=redis_url, key_prefix=key_prefix)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    assert wait_for(lambda: server.started, 10)
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(f"http://127.0.0.1:{port}/")

        def ner_card() -> str:
            return str(browser.execute_script(
                "const c = document.querySelector(`[data-breaker='ner'] [data-ejected]`);"
                "return c ? c.textContent : '';"))

        assert wait_for(lambda: "w1@h/cpu0" in ner_card(), 10), ner_card()
        store.restore("ner", "w1@h/cpu0")
        assert wait_for(lambda: ner_card() == "", 5)
    finally:
        browser.quit()
        server.should_exit = True
