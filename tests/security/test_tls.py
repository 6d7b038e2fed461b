"""Finding 3 of issue 26: a ``rediss://`` URL is verified by every client fusebox makes from
it (the breaker's and data clients, kombu's broker transport, Celery's result backend),
against the system's CAs or ``FUSEBOX_REDIS_TLS_CA_CERTS``; a self-signed Redis is refused
unless its CA is given. A real redis-server with TLS, certificates made by openssl."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.services import find_redis_server, free_port
from breaker.connection import redis_client
from workers.app import make_app
from workers.broker import queue_depths
from workers.settings import Settings

PASSWORD = "tls-test-password"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, its certificate signed by a CA of this test's own."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a certificate")
    where = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
             "-subj", "/CN=fusebox-test-ca", cwd=where)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=where)
    (where / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "ext", cwd=where)
    port = free_port()
    proc = subprocess.Popen([find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", "server.pem", "--tls-key-file", "server.key",
                             "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no", "--requirepass", PASSWORD,
                             "--save", "", "--appendonly", "no"], cwd=where, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.skip(f"this redis-server has no TLS: {(proc.stdout.read() if proc.stdout else '')[-300:]}")
            try:
                redis.Redis(port=port, password=PASSWORD, ssl=True, ssl_ca_certs=str(where / "ca.pem")).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield port, where / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _refused(call) -> str:  # type: ignore[no-untyped-def]
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - each client raises its own kind
        return f"{type(exc).__name__}: {exc}"
    return ""


def test_a_self_signed_redis_is_refused_by_every_client(tls_redis: tuple[int, Path]) -> None:
    port, _ = tls_redis
    s = Settings(redis_url=f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", key_prefix="tls-refused")
    app = make_app(s)
    for name, call in (("breaker client", lambda: redis_client(s.redis_url, 2).ping()),
                       ("broker", lambda: queue_depths(s, ["echo"], timeout=3)),
                       ("result backend", lambda: app.backend.client.ping())):
        why = _refused(call)
        assert "certificate verify failed" in why.lower(), f"the {name} connected to an unverified Redis: {why!r}"


def test_with_its_ca_every_client_connects(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    s = Settings.from_env({"FUSEBOX_REDIS_URL": f"rediss://:{PASSWORD}@127.0.0.1:{port}/0",
                           "FUSEBOX_REDIS_TLS_CA_CERTS": str(ca), "FUSEBOX_KEY_PREFIX": "tls-ok"})
    assert redis_client(s.redis_url, 2).ping()
    assert queue_depths(s, ["echo"], timeout=5) == {"echo": 0}
    app = make_app(s)
    assert app.backend.client.ping()
    app.backend.store_result("tls-job", {"ok": 1}, "SUCCESS")
    assert app.AsyncResult("tls-job").result == {"ok": 1}


def test_turning_verification_off_takes_an_explicit_word(tls_redis: tuple[int, Path]) -> None:
    port, _ = tls_redis
    s = Settings(redis_url=f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=none", key_prefix="tls-none")
    assert redis_client(s.redis_url, 2).ping()
    assert queue_depths(s, ["echo"], timeout=5) == {"echo": 0}


def test_sentinel_urls_carry_tls_to_the_sentinels_and_the_master() -> None:
    """``sentinel://...?ssl=true``: verified TLS to the sentinels (their connection arguments)
    and to the master (Celery's broker_use_ssl / redis_backend_use_ssl), with the CA given.
    (Checked on the configuration: no TLS Sentinel is started here.)"""
    s = Settings(redis_url="sentinel://:pw@a:1;sentinel://b:2/0?master_name=m&ssl=true", redis_tls_ca_certs="/ca.pem")
    conf = make_app(s).conf
    for ssl in (conf.broker_use_ssl, conf.redis_backend_use_ssl):
        assert ssl == {"ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem"}
    sentinels = conf.broker_transport_options["sentinel_kwargs"]
    assert sentinels["ssl"] is True and sentinels["ssl_cert_reqs"] == "required" and sentinels["ssl_ca_certs"] == "/ca.pem"
    client = redis_client(s.redis_url, 1)
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
    plain = make_app(Settings(redis_url="sentinel://a:1/0?master_name=m")).conf
    assert not plain.broker_use_ssl and "ssl" not in plain.broker_transport_options["sentinel_kwargs"]
