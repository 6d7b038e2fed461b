"""Finding 2 of issue 26: a client without a token must not make the server read a body,
and nobody may make it read more than FUSEBOX_API_MAX_BODY. Against a real ``fusebox
serve`` (uvicorn) process, whose resident memory is read from /proc."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.services import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "guard-test-token-0123456789"
BODY = 100 * 1024 * 1024
CHUNK = 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(redis_url: str) -> Iterator[tuple[int, int]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FUSEBOX_REDIS_URL": redis_url, "FUSEBOX_API_TOKEN": TOKEN,
           "FUSEBOX_KEY_PREFIX": f"guard-{port}", "FUSEBOX_API_PORT": str(port)}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "fusebox"), "serve"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def live() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        assert wait_for(live, 60), "fusebox serve did not answer"
        yield proc.pid, port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def post_huge(port: int, headers: dict[str, str], chunked: bool) -> tuple[str, float, int]:
    """POSTs a 100 MB body to /jobs, 1 MB at a time, until the server answers; returns the
    status line, the seconds until it came and the bytes sent by then."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = {"Host": "x", "Content-Type": "application/json", **headers,
            **({"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(BODY)})}
    start = time.monotonic()
    sock.sendall(("POST /jobs HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode())
    sent, answer = 0, b""
    chunk = b"[" * CHUNK
    try:
        while sent < BODY:
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall((f"{CHUNK:x}\r\n".encode() + chunk + b"\r\n") if chunked else chunk)
            sent += CHUNK
        if chunked and sent >= BODY:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        answer = sock.recv(4096)
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - start
    sock.close()
    return answer.split(b"\r\n", 1)[0].decode(), elapsed, sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_huge_body_without_a_token_is_refused_unread(server: tuple[int, int], chunked: bool) -> None:
    pid, port = server
    before = rss_mb(pid)
    status, seconds, sent = post_huge(port, {}, chunked)
    assert status.split(" ")[1] == "401", status
    assert seconds < 1.0, f"401 after {seconds:.1f} s"
    assert sent < BODY // 4  # the answer came long before the body was through
    assert rss_mb(pid) - before < 50


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_with_a_token_too(server: tuple[int, int], chunked: bool) -> None:
    pid, port = server
    before = rss_mb(pid)
    status, seconds, sent = post_huge(port, {"Authorization": f"Bearer {TOKEN}"}, chunked)
    assert status.split(" ")[1] == "413", status
    assert sent <= 40 * CHUNK  # refused at FUSEBOX_API_MAX_BODY (32 MiB), not at the end
    assert rss_mb(pid) - before < 50
    # and the server still answers
    assert httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5).status_code == 200


def test_an_image_is_sized_before_it_is_decoded(server: tuple[int, int]) -> None:
    _, port = server
    big = "A" * (28 * 1024 * 1024)  # 21 MiB once decoded: over FUSEBOX_MAX_IMAGE_BYTES, under the body limit
    response = httpx.post(f"http://127.0.0.1:{port}/jobs", json={"model": "ocr", "image_base64": big},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert response.status_code == 413 and "FUSEBOX_MAX_IMAGE_BYTES" in response.text
