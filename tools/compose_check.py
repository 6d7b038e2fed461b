"""``./dev compose-check``: build the images and run docker-compose.yml's fleet in containers
on this machine, then drive it from the host the way a user would.

Steps (each failure ends the check with a clear message and a non-zero exit status, after
the fleet has been brought down with ``docker-compose down -v``):

1. ``dockerd``: used if one answers, else started here (as root) and stopped at the end.
2. The local base image (``fusebox-base:bookworm``), made once and then reused: no
   registry can be reached, so ``python:3.11-slim`` cannot be pulled; ``debootstrap
   --variant=minbase bookworm`` from the Debian mirror apt already uses, plus the
   certificate authorities this host trusts (``pip`` inside the build must reach PyPI the
   way the host does), ``docker import``-ed.
3. ``fusebox:local`` (the Dockerfile, CPU extras) and ``fusebox-redis:local``
   (docker/redis.Dockerfile), built with ``--network host``; Docker's layer cache makes a
   rebuild after a code change take seconds (the dependencies are a layer of their own).
4. ``docker-compose -f docker-compose.yml -f docker-compose.test.yml up -d``: host
   networking only, loopback ports 16379 (Redis), 18000 (API), 15555 (Flower); waits until
   every service's healthcheck says healthy.
5. From the host, with the Python client: OCR and NLP jobs answered by the model worker;
   ``fusebox breaker trip ocr``: every worker serving ``ocr`` stops consuming it (its
   heartbeat says so, and a job that waits for the model stays queued), a job submitted
   meanwhile gets a degraded answer from the fallback worker; ``fusebox breaker reset
   ocr``: they consume again and the waiting job is answered by the model.
6. ``/health/ready`` and ``/metrics`` of the API, Flower's API with its password (and a
   401 without it).

It prints one JSON line (the ``Report`` below) and exits 0 only if everything held.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "fusebox-check"
SUITE = "bookworm"
BASE_IMAGE = f"fusebox-base:{SUITE}"
IMAGE = "fusebox:local"
REDIS_IMAGE = "fusebox-redis:local"
# Loopback ports of docker-compose.test.yml: away from a Redis on 6379 and RabbitMQ on 5672.
PORTS = {"redis": 16379, "api": 18000, "flower": 15555}
# The services `up` starts, in this order in the report (replaced by those of the merged file).
SERVICES = ["redis", "worker-model", "worker-cpu", "flower", "api", "alerts"]
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.test.yml"]
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class CheckFailed(Exception):
    """A step of the check did not hold; the message says which and why."""


class Report(BaseModel):
    """The one JSON line the check prints.

    Parameters:
      images_built: the images built (or found up to date in the layer cache) by this run.
      services_healthy: compose services whose healthcheck said healthy.
      jobs, answered, lost: jobs submitted from the host, answered, never answered.
      trip_paused_all: after ``fusebox breaker trip ocr``, every worker serving ``ocr``
        stopped consuming it and a job waiting for the model stayed queued.
      recovered: after ``fusebox breaker reset ocr``, they consumed again and the waiting
        job was answered by the model.
      flower_ok: Flower's API answered with the password (401 without) and listed both
        workers and the jobs' tasks.
      seconds: wall time of the whole check.
      build_seconds: per image (``base`` when it was made in this run).
      image_mb: size of each image, in MB.
      error: what failed, when something did.
    """

    images_built: list[str] = Field(default_factory=list)
    services_healthy: list[str] = Field(default_factory=list)
    jobs: int = 0
    answered: int = 0
    lost: int = 0
    trip_paused_all: bool = False
    recovered: bool = False
    flower_ok: bool = False
    seconds: float = 0.0
    build_seconds: dict[str, float] = Field(default_factory=dict)
    image_mb: dict[str, int] = Field(default_factory=dict)
    error: str | None = None


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the JSON line."""
    print(f"==> {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float | None = None,
        quiet: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs a command; on failure raises CheckFailed with the tail of its output.

    Parameters:
      cmd: the command and its arguments.
      env: the environment (this process's by default).
      check: raise when the exit status is not 0.
      timeout: seconds before it is killed (a CheckFailed then).
      quiet: capture the output (shown only on failure) instead of passing it through.
    """
    try:
        proc = subprocess.run(cmd, env=env, text=True, timeout=timeout, cwd=kwargs.pop("cwd", ROOT),
                              stdout=subprocess.PIPE if quiet else sys.stderr,
                              stderr=subprocess.STDOUT if quiet else sys.stderr, **kwargs)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"`{' '.join(cmd[:4])} ...` took longer than {timeout} s") from None
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-30:])
        raise CheckFailed(f"`{' '.join(cmd[:6])}` exited with {proc.returncode}\n{tail}")
    return proc


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """True as soon as ``predicate()`` is, False if it never was within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


# -- 1. dockerd ----------------------------------------------------------------------------------


def docker_answers() -> bool:
    """A Docker daemon answers the ``docker`` client."""
    return shutil.which("docker") is not None and run(["docker", "info"], check=False, timeout=30).returncode == 0


@contextmanager
def dockerd() -> Iterator[None]:
    """A Docker daemon that answers: the running one, else one started here and stopped after
    (images stay in /var/lib/docker, so the layer cache outlives it)."""
    if docker_answers():
        yield
        return
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        raise CheckFailed("Docker is not installed (apt-get install docker.io docker-compose debootstrap)")
    if os.geteuid() != 0:
        raise CheckFailed("no dockerd answers, and starting one needs root")
    logfile = tempfile.NamedTemporaryFile(prefix="fusebox-dockerd-", suffix=".log", delete=False)
    log(f"starting dockerd (log: {logfile.name})")
    daemon = subprocess.Popen(["dockerd"], stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for(lambda: daemon.poll() is None and docker_answers(), 60, interval=1):
            raise CheckFailed(f"dockerd did not answer within 60 s (see {logfile.name})")
        yield
    finally:
        log("stopping the dockerd started for the check")
        daemon.terminate()  # dockerd stops its containers and containerd on SIGTERM
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)


# -- 2. the local base image ---------------------------------------------------------------------


def apt_mirror(suite: str = SUITE) -> str:
    """The Debian mirror apt already uses on this machine (deb822 ``*.sources`` or
    ``sources.list``), for ``suite``; deb.debian.org when none is found."""
    candidates: list[Path] = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
                if suite in fields.get("Suites", "").split() and "debian" in fields.get("URIs", ""):
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
                if m and m.group(2) == suite and "debian" in m.group(1):
                    return m.group(1)
    return DEFAULT_MIRROR


def ensure_base_image(report: Report) -> None:
    """Makes ``fusebox-base:bookworm`` unless Docker already has it (it is never rebuilt:
    ``docker rmi fusebox-base:bookworm`` to refresh it)."""
    if run(["docker", "image", "inspect", BASE_IMAGE], check=False).returncode == 0:
        log(f"{BASE_IMAGE}: cached")
        return
    if shutil.which("debootstrap") is None:
        raise CheckFailed("debootstrap is missing (apt-get install debootstrap)")
    mirror = apt_mirror()
    log(f"making {BASE_IMAGE} with debootstrap from {mirror} (once)")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fusebox-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], timeout=900)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        # Trust what this host trusts: where egress goes through a TLS proxy, its CA is in
        # /usr/local/share/ca-certificates (kept when the image installs ca-certificates)
        # and in the bundle that pip is pointed at.
        local_cas = Path("/usr/local/share/ca-certificates")
        changes = ["CMD [\"/bin/bash\"]"]
        if local_cas.is_dir():
            shutil.copytree(local_cas, rootfs / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.is_file():
            (rootfs / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
            shutil.copy(bundle, rootfs / "etc/ssl/certs/ca-certificates.crt")
            changes.append(f"ENV PIP_CERT={bundle}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        args = [a for c in changes for a in ("-c", c)]
        imported = subprocess.run(["docker", "import", *args, "-", BASE_IMAGE], stdin=tar.stdout,
                                  capture_output=True, text=True)
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise CheckFailed(f"docker import failed: {imported.stderr.strip()}")
    report.build_seconds["base"] = round(time.monotonic() - start, 1)


# -- 3. the images ---------------------------------------------------------------------------------


def build(tag: str, dockerfile: str, context: str, report: Report, *args: str) -> None:
    """``docker build --network host`` (the classic builder: its layer cache is the one
    docker-compose 1.x uses too) on the local base; records seconds and size."""
    log(f"building {tag}")
    start = time.monotonic()
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    run(["docker", "build", "--network", "host", "-t", tag, "-f", dockerfile, "--build-arg", f"BASE={BASE_IMAGE}",
         *args, context], env=env, timeout=3600)
    report.build_seconds[tag] = round(time.monotonic() - start, 1)
    report.images_built.append(tag)
    size = run(["docker", "image", "inspect", "-f", "{{.Size}}", tag]).stdout.strip()
    report.image_mb[tag] = round(int(size) / 1e6)


# -- 4. the fleet ------------------------------------------------------------------------------------


def compose_env() -> dict[str, str]:
    """The variables the compose files interpolate: images, loopback ports, passwords."""
    return {
        **os.environ,
        "FLOWER_PASSWORD": FLOWER_PASSWORD,
        "FUSEBOX_API_TOKEN": API_TOKEN,
        **REDIS_PASSWORDS,  # required by docker-compose.yml (the check's Redis keeps its default user)
        "FUSEBOX_IMAGE": IMAGE,
        "FUSEBOX_REDIS_IMAGE": REDIS_IMAGE,
        "FUSEBOX_TEST_REDIS_PORT": str(PORTS["redis"]),
        "FUSEBOX_TEST_API_PORT": str(PORTS["api"]),
        "FUSEBOX_TEST_FLOWER_PORT": str(PORTS["flower"]),
    }


FLOWER_PASSWORD = secrets.token_urlsafe(12)
API_TOKEN = secrets.token_urlsafe(24)  # FUSEBOX_API_TOKEN: at least 16 characters
REDIS_PASSWORDS = {f"REDIS_{who}_PASSWORD": secrets.token_hex(16) for who in ("WORKER", "API", "FLOWER")}

MERGED: Path | None = None  # the merged compose file the fleet runs from (see merged_compose_file)


def merged_compose_file(directory: Path) -> Path:
    """docker-compose.yml with docker-compose.test.yml on top, as one file, less the
    published ``ports`` of host-networked services.

    docker-compose 1.x merges list fields such as ``ports`` (an override cannot remove
    them), and refuses ``network_mode: host`` together with port bindings, which Docker
    would discard anyway: the services listen on the host's own ports. So the check runs
    what ``docker-compose config`` makes of the two files, minus those bindings.

    Parameters:
      directory: where to write it (a temporary directory of the check).
    """
    import yaml

    global SERVICES
    run(["docker-compose", "-f", COMPOSE_FILES[0], "config", "-q"], env=compose_env())  # the file users run, GPU too
    files = [a for f in COMPOSE_FILES for a in ("-f", f)]
    config = yaml.safe_load(run(["docker-compose", "-p", PROJECT, *files, "config"], env=compose_env()).stdout)
    for service in config["services"].values():
        if service.get("network_mode") == "host":
            service.pop("ports", None)
    # What `up` starts (an alerts service too, once uncommented), in the order of SERVICES.
    started = [name for name, service in config["services"].items() if not service.get("profiles")]
    SERVICES = sorted(started, key=lambda n: (SERVICES.index(n) if n in SERVICES else len(SERVICES), n))
    path = directory / "docker-compose.check.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def compose(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``docker-compose`` on the merged file, as project ``fusebox-check``.

    Parameters:
      args: the docker-compose command and its options.
      check: raise CheckFailed when it fails.
      timeout: seconds it may take.
    """
    assert MERGED is not None
    return run(["docker-compose", "-p", PROJECT, "--project-directory", str(ROOT), "-f", str(MERGED), *args],
               env=compose_env(), check=check, timeout=timeout)


def port_taken(port: int) -> bool:
    """Parameters:
      port: a loopback port; True when something already listens there.
    """
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def container_states() -> dict[str, tuple[str, str]]:
    """service -> (status, health) of the project's containers."""
    ids = compose("ps", "-q", "--all", check=False).stdout.split()
    if not ids:
        return {}
    fmt = '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} ' \
          '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}'
    out = run(["docker", "inspect", "-f", fmt, *ids], check=False).stdout
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def wait_healthy(report: Report, timeout: float) -> None:
    """Until every service's healthcheck says healthy; fails at once if a container exits."""
    end = time.monotonic() + timeout
    while True:
        states = container_states()
        dead = {s: st for s, st in states.items() if st[0] in ("exited", "dead")}
        if dead:
            raise CheckFailed(f"container(s) stopped: {dead}")
        healthy = sorted(s for s, (_, health) in states.items() if health == "healthy")
        if set(SERVICES) <= set(healthy):
            report.services_healthy = [s for s in SERVICES if s in healthy]
            return
        if time.monotonic() >= end:
            raise CheckFailed(f"not healthy within {timeout:.0f} s: {states}")
        time.sleep(2)


# -- 5. and 6. driving it from the host ---------------------------------------------------------


def host_env() -> dict[str, str]:
    """What a host process needs to talk to the fleet (this checkout first on the path)."""
    return {
        **os.environ,
        "FUSEBOX_REDIS_URL": f"redis://127.0.0.1:{PORTS['redis']}/0",
        "FUSEBOX_KEY_PREFIX": "fusebox",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }


def sample_at_least(metrics: str, name: str, labels: dict[str, str], least: float) -> bool:
    """Whether the Prometheus text has a sample ``name`` with these labels (in any order,
    others allowed) whose value is at least ``least``."""
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}") + 1]))
        if all(found.get(k) == v for k, v in labels.items()) and float(line.rsplit(" ", 1)[1]) >= least:
            return True
    return False


def fusebox_cli(*args: str) -> str:
    """Runs the ``fusebox`` console script of this Python's environment."""
    exe = Path(sys.executable).parent / "fusebox"
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-c", "from api.cli import main; main()", *args]
    return run(cmd, env=host_env(), timeout=60).stdout


def exercise(report: Report) -> None:
    """Jobs, a trip and a reset, health, metrics and Flower, from the host."""
    os.environ.update({k: v for k, v in host_env().items() if k.startswith("FUSEBOX_")})
    import httpx
    from api import samples
    from api.client import FuseboxClient
    from breaker.connection import redis_client
    from breaker.keyspace import Keyspace
    from workers.settings import Settings

    settings = Settings.from_env()
    r = redis_client(settings.redis_url, 5, fail_fast=False)
    handles: list[Any] = []
    results: dict[str, Any] = {}

    def answer(handle: Any, timeout: float = 180) -> Any:
        result = handle.get(timeout=timeout)
        results[handle.id] = result
        return result

    def submitted(handle: Any) -> Any:
        handles.append(handle)
        report.jobs = len(handles)
        return handle

    def consuming(queue: str) -> dict[str, bool]:
        """Each live worker serving ``queue``: does it consume it now (its heartbeat)?"""
        beats = [json.loads(v) for k in r.scan_iter(Keyspace(settings.key_prefix).heartbeat("*")) if (v := r.get(k))]
        return {b["hostname"]: queue in b["consuming"] for b in beats if queue in b["queues"]}

    client = FuseboxClient(settings)
    try:
        # OCR and NLP jobs, answered by the model worker in its container.
        log("submitting OCR and NLP jobs")
        ocr = [submitted(client.submit_ocr(samples.invoice(seed))) for seed in range(3)]
        positive = submitted(client.submit_sentiment("质量很好，物流也快，非常满意，下次还来买"))
        negative = submitted(client.submit_sentiment("太差了，用了两天就坏了，客服也不理人，很失望"))
        ner = submitted(client.submit_ner("李鹏总理十二月三十一日在人民大会堂发表新年讲话。"))
        for handle in ocr:
            result = answer(handle)
            if result.degraded or result.served_by != "model" or not result.output["key_fields"].get("dates"):
                raise CheckFailed(f"OCR job not answered by the model with its date: {result.model_dump()}")
        labels = (answer(positive).output.get("label"), answer(negative).output.get("label"))
        if labels != ("positive", "negative"):
            raise CheckFailed(f"sentiment answers {labels}, expected ('positive', 'negative')")
        entities = answer(ner).output
        if "李鹏" not in json.dumps(entities, ensure_ascii=False):
            raise CheckFailed(f"NER did not find 李鹏: {entities}")

        # Trip ocr with the CLI: the worker in its container stops consuming ocr.
        log("fusebox breaker trip ocr")
        fusebox_cli("breaker", "trip", "ocr", "--reason", "compose-check")
        if not wait_for(lambda: (c := consuming("ocr")) and not any(c.values()), 30):
            raise CheckFailed(f"workers still consume ocr after the trip: {consuming('ocr')}")
        waiting = submitted(client.submit_ocr(samples.invoice(100), wait=True))  # waits for the model
        degraded = submitted(client.submit_ocr(samples.invoice(101)))  # routed to the fallback
        result = answer(degraded)
        if not result.degraded or not result.served_by.startswith("fallback"):
            raise CheckFailed(f"OCR during the trip not answered by the fallback: {result.model_dump()}")
        time.sleep(3)  # heartbeats every 2 s: a worker that consumed would have taken the job by now
        # Through kombu, as the workers see it (priority lists included: a plain LLEN of the
        # queue's key misses every job sent with a priority).
        from workers.broker import queue_depths

        queued = queue_depths(settings, ["ocr"])["ocr"]
        report.trip_paused_all = waiting.status == "PENDING" and queued == 1 and not any(consuming("ocr").values())
        if not report.trip_paused_all:
            raise CheckFailed(f"during the trip: waiting job {waiting.status}, {queued} queued, {consuming('ocr')}")

        # Reset: consumption resumes and the waiting job is answered by the model.
        log("fusebox breaker reset ocr")
        fusebox_cli("breaker", "reset", "ocr", "--reason", "compose-check")
        resumed = wait_for(lambda: bool(c := consuming("ocr")) and all(c.values()), 30)
        result = answer(waiting)
        after = answer(submitted(client.submit_ocr(samples.invoice(102))))
        report.recovered = resumed and result.served_by == "model" and after.served_by == "model"
        if not report.recovered:
            raise CheckFailed(f"after the reset: consuming {consuming('ocr')}, waiting job {result.served_by}, "
                              f"next job {after.served_by}")
        report.answered = len(results)

        # The API: readiness (every queue served by a live worker) and metrics.
        api = f"http://127.0.0.1:{PORTS['api']}"
        ready = httpx.get(f"{api}/health/ready", timeout=10)
        if ready.status_code != 200:
            raise CheckFailed(f"/health/ready answered {ready.status_code}: {ready.text[:500]}")
        metrics = httpx.get(f"{api}/metrics", timeout=10).text
        if not sample_at_least(metrics, "fusebox_breaker_transitions_total", {"model": "ocr", "to": "open"}, 1):
            raise CheckFailed("/metrics does not count the ocr trip")
        if not sample_at_least(metrics, "fusebox_jobs_total", {"model": "ocr", "served_by": "model"}, 1):
            raise CheckFailed("/metrics does not count the OCR jobs")

        # Flower, with its password: the tasks it saw (from the workers' events), by name
        # and by worker. (Its /api/workers asks the workers live, with a 1 s timeout that a
        # busy 2-core machine misses: the events are the steadier witness.)
        flower = f"http://127.0.0.1:{PORTS['flower']}"
        auth = ("admin", FLOWER_PASSWORD)
        denied = httpx.get(f"{flower}/api/tasks", timeout=10).status_code
        seen: dict[str, set[str]] = {}

        def flower_saw_everything() -> bool:
            tasks = httpx.get(f"{flower}/api/tasks", auth=auth, timeout=10).json()
            seen["tasks"] = {t.get("name") for t in tasks.values() if t.get("state") == "SUCCESS"}
            seen["workers"] = {str(t.get("worker", "")).split("@")[0] for t in tasks.values()}
            return ({"fusebox.ocr", "fusebox.sentiment", "fusebox.ner", "fusebox.fallback.ocr"} <= seen["tasks"]
                    and {"model", "fallback"} <= seen["workers"])

        report.flower_ok = denied == 401 and wait_for(flower_saw_everything, 20)
        if not report.flower_ok:
            raise CheckFailed(f"Flower: {denied} without the password, saw {seen}")
    finally:
        report.answered = len(results)
        report.lost = report.jobs - report.answered
        client.close()
        r.close()


# -- the whole check ---------------------------------------------------------------------------------


def check(report: Report, rebuild_only: bool = False) -> None:
    """Every step, with the fleet brought down (volumes too) whatever happens.

    Parameters:
      report: filled in as the steps go.
      rebuild_only: build the images and stop.
    """
    global MERGED
    with dockerd():
        ensure_base_image(report)
        build(IMAGE, "Dockerfile", ".", report)
        build(REDIS_IMAGE, "docker/redis.Dockerfile", "docker", report)
        if rebuild_only:
            return
        with tempfile.TemporaryDirectory(prefix="fusebox-compose-") as tmp:
            MERGED = merged_compose_file(Path(tmp))
            compose("down", "-v", "--remove-orphans", check=False)  # leftovers of an interrupted run
            taken = {name: port for name, port in PORTS.items() if port_taken(port)}
            if taken:
                raise CheckFailed(f"loopback port(s) already in use: {taken}")
            try:
                log("docker-compose up")
                compose("up", "-d", "--no-build", timeout=300)
                wait_healthy(report, timeout=300)
                log(f"healthy: {', '.join(report.services_healthy)}")
                exercise(report)
            except BaseException:
                print(compose("logs", "--no-color", "--tail", "40", check=False).stdout, file=sys.stderr)
                raise
            finally:
                log("docker-compose down -v")
                compose("down", "-v", "--remove-orphans", check=False)


def main(argv: list[str] | None = None) -> int:
    """Parameters:
      argv: ``--build-only`` builds the images and stops there.
    """
    parser = argparse.ArgumentParser(prog="./dev compose-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-only", action="store_true", help="build the images, run nothing")
    args = parser.parse_args(argv)
    report = Report()
    start = time.monotonic()

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM too: the fleet still comes down, dockerd stops

    signal.signal(signal.SIGTERM, interrupted)
    try:
        check(report, rebuild_only=args.build_only)
    except CheckFailed as exc:
        report.error = str(exc).splitlines()[0]
        print(f"compose-check failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        report.error = "interrupted"
    except Exception as exc:  # noqa: BLE001 - a job that timed out, an HTTP error...: still one JSON line
        report.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        print(f"compose-check failed: {exc!r}", file=sys.stderr)
    report.seconds = round(time.monotonic() - start, 1)
    print(report.model_dump_json(), flush=True)
    return 1 if report.error else 0


if __name__ == "__main__":
    sys.exit(main())
