"""The docs' tables are the ones generated from the code (settings in README.md, keys in
docs/architecture.md), and the settings object reads what its table says."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tools import doc_tables
from workers.settings import Settings


@pytest.mark.parametrize("table", doc_tables.TABLES, ids=lambda t: t.name)
def test_docs_tables_are_generated_from_the_code(table: doc_tables.Table) -> None:
    text = table.file.read_text(encoding="utf-8")
    assert text == table.replaced(text), "run: python -m tools.doc_tables --write"


def test_every_row_names_a_variable_the_settings_read() -> None:
    rows = list(Settings.variables())
    assert len(rows) == len(Settings.model_fields)
    for var, _shown, description in rows:
        assert var.startswith("FUSEBOX_") and description, var
    # Each documented variable really sets its field (a few sample values per type).
    samples = {"FUSEBOX_API_PORT": ("api_port", "9001", 9001),
               "FUSEBOX_BREAKER_REDIS_TIMEOUT": ("breaker_redis_timeout", "0.2", 0.2),
               "FUSEBOX_OTEL": ("otel", "1", True),
               "FUSEBOX_PRELOAD": ("preload", "none", "none")}
    documented = {var for var, _, _ in rows}
    for var, (field, raw, value) in samples.items():
        assert var in documented
        assert getattr(Settings.from_env({var: raw}), field) == value


def test_environment_precedence_and_empty_values() -> None:
    celery = {"CELERY_BROKER_URL": "amqp://guest@h//", "CELERY_RESULT_BACKEND": "redis://b:6379/1"}
    assert Settings.from_env(celery).broker == "amqp://guest@h//"
    assert Settings.from_env({**celery, "FUSEBOX_BROKER_URL": "redis://mine:6379/0"}).broker == "redis://mine:6379/0"
    assert Settings.from_env({"BROKER_URL": "redis://not-ours:6379/0"}).broker == "redis://127.0.0.1:6379/0"
    assert Settings.from_env({"FUSEBOX_API_PORT": ""}).api_port == 8000  # empty counts as unset
    assert Settings.from_env({"FUSEBOX_API_PORT": "1"}, api_port=2).api_port == 2  # arguments win


def test_breaker_share_and_refusals() -> None:
    s = Settings.from_env({"FUSEBOX_BREAKER_REDIS_TIMEOUT": "0.3", "FUSEBOX_KEY_PREFIX": "blue"})
    share = s.breaker_settings()
    assert (share.redis_timeout, share.key_prefix, share.redis_url) == (0.3, "blue", s.redis_url)
    with pytest.raises(ValidationError, match="breaker_redis_timeout"):
        Settings.from_env({"FUSEBOX_BREAKER_REDIS_TIMEOUT": "soon"})
    with pytest.raises(ValidationError, match="extra"):
        Settings(no_such_setting=1)


def test_webhooks_parse_from_one_variable() -> None:
    hooks = Settings.from_env({"FUSEBOX_ALERT_WEBHOOKS": "https://j/x, dingtalk:SEC1=https://d/y,wecom=https://w/z"})
    assert [(h.format, h.url, h.secret) for h in hooks.alert_webhooks] == [
        ("json", "https://j/x", None), ("dingtalk", "https://d/y", "SEC1"), ("wecom", "https://w/z", None)]
    assert "SEC1" not in repr(hooks.alert_webhooks) and "https://d/y" not in repr(hooks.alert_webhooks)
