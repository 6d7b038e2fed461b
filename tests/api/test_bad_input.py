"""Bad input a new user tries, rejected with a clear error before anything is stored: the
Python client, ``POST /jobs`` and ``fusebox submit``, against a real Redis (no worker is
needed: nothing here may reach one)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.batch import collect_inputs
from api.http import create_app
from api.samples import invoice
from tests.api.conftest import TOKEN, cli_env, fusebox_command
from tests.support.fleet import Fleet
from workers.errors import InvalidJob

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
BAD_DEADLINES = [math.nan, math.inf, -math.inf, 1e308, 0.0, -1.0, 8 * 24 * 3600.0]


@pytest.fixture(scope="module")
def store() -> Iterator[Fleet]:
    """A Redis and a client of their own, and no worker."""
    fleet = Fleet()
    yield fleet
    fleet.close()


def _keys(fleet: Fleet) -> set[bytes]:
    return set(fleet.db.keys("*"))


def fusebox(fleet: Fleet, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*fusebox_command(), *args], env=cli_env(fleet), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("deadline", BAD_DEADLINES)
def test_client_rejects_non_finite_and_absurd_deadlines_before_storing_anything(store: Fleet, deadline: float) -> None:
    before = _keys(store)
    with pytest.raises(InvalidJob, match="deadline"):
        store.client.submit_sentiment("好评", deadline=deadline)
    with pytest.raises(InvalidJob, match="deadline"):
        store.client.submit_ocr(invoice(1), deadline=deadline)  # its image must not be stored either
    assert _keys(store) == before


def test_a_deadline_within_the_limit_is_accepted(store: Fleet) -> None:
    handle = store.client.submit_sentiment("好评", deadline=6 * 24 * 3600)
    assert handle.routed_to == "model"
    store.db.delete("sentiment")


@pytest.fixture
def http(store: Fleet) -> Iterator[TestClient]:
    with TestClient(create_app(store.settings.model_copy(update={"api_token": TOKEN}), client=store.client)) as client:
        yield client


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e308", "0", "691200"])
def test_http_rejects_bad_deadlines_with_422(http: TestClient, store: Fleet, raw: str) -> None:
    before = _keys(store)
    for body in (f'{{"model": "sentiment", "text": "好评", "deadline": {raw}}}',
                 f'{{"model": "ocr", "image_base64": "{__import__("base64").b64encode(invoice(2)).decode()}", '
                 f'"deadline": {raw}}}'):
        response = http.post("/jobs", content=body.encode(), headers=AUTH)
        assert response.status_code == 422, response.text
        assert "deadline" in response.text
    assert _keys(store) == before


def test_http_lone_surrogate_field_name_is_a_422_not_a_500(http: TestClient, store: Fleet) -> None:
    before = _keys(store)
    response = http.post("/jobs", content=b'{"model":"sentiment","text":"abc","\\udcff":1}', headers=AUTH)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"][0] == "body" and detail[0]["msg"], detail
    # A lone surrogate in a value, and a NaN in a nested field, are 4xx too.
    response = http.post("/jobs", content=b'{"model":"sentiment","text":"\\udcff"}', headers=AUTH)
    assert response.status_code == 422, response.text
    response = http.post("/jobs", content=b'{"model":"sentiment","text":"abc","wait":NaN}', headers=AUTH)
    assert response.status_code == 422, response.text
    assert _keys(store) == before


@pytest.mark.parametrize("raw", ["nan", "inf", "1e308", "-5"])
def test_cli_rejects_bad_deadlines_before_reading_or_storing(store: Fleet, tmp_path: Path, raw: str) -> None:
    (tmp_path / "good.txt").write_text("质量很好\n", encoding="utf-8")
    before = _keys(store)
    result = fusebox(store, "submit", str(tmp_path / "good.txt"), "--model", "sentiment", "--deadline", raw,
                     "--out", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "deadline" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _keys(store) == before and not (tmp_path / "out.jsonl").exists()


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_cli_rejects_a_fifo_without_opening_it_for_good(store: Fleet, tmp_path: Path) -> None:
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    # Before: open() blocked until a writer came, forever (the subprocess timeout would fire).
    result = fusebox(store, "submit", str(fifo), "--model", "ocr", "--no-wait", "--out", str(out), timeout=60)
    assert result.returncode == 1, result.stderr
    [record] = _records(out)
    assert record["status"] == "rejected" and "FIFO" in record["error"]
    texts = tmp_path / "reviews.txt"
    os.mkfifo(texts)
    [item] = list(collect_inputs("sentiment", [str(texts)]))
    assert item.error is not None and "FIFO" in item.error


def test_huge_files_are_rejected_by_size_before_being_read(store: Fleet, tmp_path: Path) -> None:
    # Sparse: 300 MB on paper, nothing on disk.
    huge = tmp_path / "big.png"
    with open(huge, "wb") as f:
        f.truncate(300 * 1024 * 1024)
    out = tmp_path / "out.jsonl"
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    run = subprocess.run([sys.executable, "-c", probe, *fusebox_command(), "submit", str(huge), "--model", "ocr",
                          "--no-wait", "--out", str(out)], env=cli_env(store), capture_output=True, text=True,
                         timeout=120)
    peak_mib = int(run.stdout.strip().splitlines()[-1]) / 1024
    [record] = _records(out)
    assert record["status"] == "rejected" and "too large" in record["error"], record
    assert peak_mib < 250, peak_mib  # before: the whole file was read (~650 MB RSS)

    # One 300 MB "line" of text: cut off at the limit, read past in bounded pieces.
    (tmp_path / "big.txt").write_bytes(b"")
    with open(tmp_path / "big.txt", "wb") as f:
        f.truncate(300 * 1024 * 1024)
    items = list(collect_inputs("sentiment", [str(tmp_path / "big.txt")]))
    assert len(items) == 1 and items[0].error is not None and "longer than" in items[0].error


def test_empty_text_file_and_empty_folder_are_both_rejected(store: Fleet, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_text("\n  \n\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    for target in ("empty.txt", "blank.jsonl", "folder"):
        out = tmp_path / f"{target}.out.jsonl"
        result = fusebox(store, "submit", str(tmp_path / target), "--model", "sentiment", "--out", str(out))
        assert result.returncode == 1, (target, result.stderr)
        [record] = _records(out)
        assert record["status"] == "rejected", record
        assert ("no texts" if target != "folder" else "no .jsonl/.txt") in record["error"]
