"""How fusebox's Celery app behaves inside someone else's process: which broker it uses,
whether it takes over the current app, and how its queues are bound."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workers.app import FALLBACK_QUEUE, make_app, queue_names
from workers.settings import Settings

HOST = "amqp://host:host@host-broker:5672/host"


def test_importing_the_client_keeps_the_host_applications_current_app() -> None:
    code = (
        "from celery import Celery, current_app\n"
        "host = Celery('host-project'); host.set_current()\n"
        "import api.client, workers.tasks\n"
        "client_app = api.client.make_app()\n"
        "print(current_app.main)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "host-project"


def test_fusebox_settings_decide_the_broker_over_celerys_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", HOST)
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://host-backend:6379/9")
    s = Settings.from_env({"FUSEBOX_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
                                 "FUSEBOX_REDIS_URL": "redis://127.0.0.1:6379/3"})
    app = make_app(s)
    assert app.conf.broker_read_url == app.conf.broker_write_url == s.broker
    assert app.connection_for_write().as_uri(include_password=False) == "amqp://guest:**@127.0.0.1:5672//"
    assert app.connection_for_read().as_uri(include_password=False) == "amqp://guest:**@127.0.0.1:5672//"
    assert app.backend.url == "redis://127.0.0.1:6379/3"


def test_celerys_broker_variable_is_read_when_fusebox_names_none() -> None:
    s = Settings.from_env({"CELERY_BROKER_URL": HOST, "CELERY_RESULT_BACKEND": "redis://b:6379/1"})
    assert s.broker == HOST and s.results == "redis://b:6379/1"
    both = Settings.from_env({"CELERY_BROKER_URL": HOST, "FUSEBOX_BROKER_URL": "redis://mine:6379/0"})
    assert both.broker == "redis://mine:6379/0"


def test_a_read_url_naming_another_broker_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_READ_URL", HOST)
    with pytest.raises(ValueError, match="CELERY_BROKER_READ_URL=amqp://host:\\*\\*\\*@host-broker"):
        make_app(Settings())


def test_every_queue_has_its_own_exchange_and_routing_key() -> None:
    queues = {q.name: q for q in make_app(Settings()).amqp.queues.values()}
    assert set(queues) == set(queue_names())
    for name, queue in queues.items():
        assert (queue.exchange.name, queue.exchange.type, queue.routing_key) == (name, "direct", name)
    assert FALLBACK_QUEUE in queues
