"""Findings 8 and 10 of issue 26 over HTTP: who may do what (job answers behind the token,
faults behind the operator's), per-token caller names in the audit, a minimum token
length, and nested ``options`` refused before the upload is stored."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.http import create_app
from api.samples import invoice
from workers.settings import Settings

TOKEN, ALICE, OPERATOR = "api-token-0123456789", "alice-token-0123456789", "operator-token-0123456789"


@pytest.fixture
def http(redis_url: str, key_prefix: str) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, api_token=TOKEN, api_tokens=f"alice={ALICE}",
                        api_chaos_token=OPERATOR)
    with TestClient(create_app(settings)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_each_token_is_audited_under_its_caller(http: TestClient) -> None:
    by_alice = http.post("/breakers/ocr/trip", params={"reason": "drill"}, headers=bearer(ALICE)).json()
    by_token = http.post("/breakers/ocr/reset", headers=bearer(TOKEN)).json()
    assert by_alice["event"]["who"] == "http:alice" and by_token["event"]["who"] == "http"
    events = http.get("/events", params={"breaker": "ocr"}).json()["events"]
    assert [e["who"] for e in events[:2]] == ["http", "http:alice"]


def test_job_answers_and_faults_need_their_own_token(http: TestClient) -> None:
    assert http.get("/jobs/some-job").status_code == 401  # an ID card's OCR is nobody's business
    assert http.get("/jobs/some-job", headers=bearer(ALICE)).status_code == 404
    for token in (TOKEN, ALICE):
        assert http.post("/chaos/ocr", json={"error_rate": 1}, headers=bearer(token)).status_code == 401
    assert http.post("/chaos/ocr", json={"error_rate": 1}, headers=bearer(OPERATOR)).status_code == 200
    assert http.delete("/chaos/ocr", headers=bearer(OPERATOR)).status_code == 200
    assert http.post("/breakers/ocr/trip", headers=bearer(OPERATOR)).status_code == 401  # and nothing else


def test_reads_opened_only_when_asked_for(redis_url: str, key_prefix: str) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, api_token=TOKEN, api_open_reads=True)
    with TestClient(create_app(settings)) as http:
        assert http.get("/jobs/some-job").status_code == 404
        assert http.post("/breakers/ocr/trip").status_code == 401


@pytest.mark.parametrize("field", ["api_token", "api_chaos_token", "api_tokens"])
def test_short_tokens_are_refused(field: str) -> None:
    value = "bob=short" if field == "api_tokens" else "short"
    with pytest.raises(ValidationError, match="16"):
        Settings(**{field: value})


def test_deep_options_are_refused_before_the_image_is_stored(http: TestClient, redis_client: redis.Redis,
                                                             key_prefix: str) -> None:
    options: dict = {}
    deepest = options
    for _ in range(600):
        deepest["x"] = {}
        deepest = deepest["x"]
    image = base64.b64encode(invoice(1)).decode()
    response = http.post("/jobs", json={"model": "ocr", "image_base64": image, "options": options},
                         headers=bearer(TOKEN))
    assert response.status_code == 422 and "nest" in response.text
    assert list(redis_client.scan_iter(f"{key_prefix}:payload:*")) == []  # no orphan upload


def test_the_operator_token_is_not_an_api_token() -> None:
    with pytest.raises(ValidationError, match="must differ"):
        Settings(api_token=OPERATOR, api_chaos_token=OPERATOR)
    with pytest.raises(ValidationError, match="must differ"):
        Settings(api_tokens=f"ops={OPERATOR}", api_chaos_token=OPERATOR)
