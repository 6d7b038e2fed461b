"""Finding 7 of issue 26: no password, token or webhook secret in what fusebox prints about
a bad setting, a URL it cannot parse, or a webhook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.alerts import hook_label
from breaker.connection import redact
from workers.settings import Settings, Webhook

ROOT = Path(__file__).resolve().parents[2]
PW = "S3CRETPW"
BAD = {
    "FUSEBOX_REDIS_URL": f"rediss//:{PW}@redis.example:6380/0",  # a typo: no "://"
    "FUSEBOX_BROKER_URL": f"sentinel://:{PW}@s1:26379/0",  # no master_name
    "FUSEBOX_API_TOKEN": PW,  # too short
    "FUSEBOX_ALERT_WEBHOOKS": f"slack=ftp://hooks.example/{PW}",
}


def run(args: list[str], var: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), var: BAD[var], "COLUMNS": "300"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("var", sorted(BAD))
def test_a_refused_setting_is_named_without_its_value(var: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.from_env({var: BAD[var]})
    assert PW not in str(info.value) and PW not in repr([e["msg"] for e in info.value.errors()])


@pytest.mark.parametrize("args", [["fusebox", "doctor"], ["fusebox", "breaker", "list"], ["-m", "workers.probe"]],
                         ids=["doctor", "breaker-list", "probe"])
def test_the_commands_print_a_bad_redis_url_without_its_password(args: list[str]) -> None:
    command = [str(Path(sys.executable).parent / args[0]), *args[1:]] if args[0] == "fusebox" else [sys.executable, *args]
    result = run(command, "FUSEBOX_REDIS_URL")
    assert result.returncode != 0
    assert "FUSEBOX_REDIS_URL" in result.stdout + result.stderr or "redis_url" in result.stderr
    assert PW not in result.stdout + result.stderr


@pytest.mark.parametrize("url", [
    f"rediss//:{PW}@host:6379/0",                       # no ://
    f"redis://:pa;{PW}@host/0",                         # ; in the password
    f"redis://user:{PW}/x@host/0",                      # / in the password
    f"redis://:{PW}#x@host/0",                          # # in the password
    f"redis://:{PW}@@host/0",                           # two @
    f"sentinel://:x@a:1;sentinel://b:2/0?master_name=m&SENTINEL_PASSWORD={PW}",  # capitals
    f"redis://{PW}@host/0",                             # a user name alone may be a token
])
def test_redaction_fails_closed(url: str) -> None:
    shown = redact(url)
    assert PW not in shown and "***" in shown
    assert "host" in shown or "a:1" in shown  # still says where


def test_a_webhook_is_labelled_without_its_path() -> None:
    hook = Webhook(url=f"https://hooks.slack.com/services/T000/B000/{PW}")
    label = hook_label(hook)
    assert PW not in label and "hooks.slack.com" in label
    assert PW not in repr(hook)
