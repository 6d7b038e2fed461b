"""The demo's jobs: submitted, then their answers polled from the result backend and
counted as they arrive."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

from api.client import FuseboxClient, JobHandle
from api.demo.plan import Job
from workers.jobs import JobResult


class JobTracker:
    """Every job submitted, which still wait, and the answers so far; written by the
    submitting thread and the poller, read by the display (under ``lock``).

    Parameters:
      client: where jobs go and answers come from.
    """

    def __init__(self, client: FuseboxClient) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.handles: dict[str, JobHandle] = {}
        self.pending: set[str] = set()
        self.submitted = 0
        self.served_by: Counter[str] = Counter()
        self.by_model: dict[str, Counter[str]] = {}
        self.degraded = 0
        self.degraded_ids: set[str] = set()
        self.errors = 0
        self.latest: deque[str] = deque(maxlen=6)

    def submit(self, job: Job) -> str:
        """Submits one job (routed by its breaker, as any producer's); returns its id.

        Parameters:
          job: its model and input.
        """
        model, payload = job
        handle = self.client.submit(model, **({"image": payload} if model == "ocr" else {"text": payload}))
        with self.lock:
            self.handles[handle.id] = handle
            self.pending.add(handle.id)
        self.submitted += 1
        return handle.id

    def poll(self, stop: threading.Event) -> None:
        """Reads finished jobs' results in batches (one MGET per round) until ``stop``.

        Parameters:
          stop: set when the demo is over.
        """
        backend = self.client.app.backend
        while not stop.is_set():
            with self.lock:
                ids = list(self.pending)
            for first in range(0, len(ids), 200):
                chunk = ids[first : first + 200]
                try:
                    values = backend.mget([backend.get_key_for_task(i) for i in chunk])
                except Exception:  # noqa: BLE001 - Redis hiccup: try again next round
                    break
                for job_id, value in zip(chunk, values):
                    if value is None:
                        continue
                    meta = backend.decode_result(value)
                    if meta["status"] in ("SUCCESS", "FAILURE"):
                        self._account(job_id, meta)
            time.sleep(0.1)

    def _account(self, job_id: str, meta: dict[str, Any]) -> None:
        handle = self.handles[job_id]
        with self.lock:
            self.pending.discard(job_id)
            counts = self.by_model.setdefault(handle.model, Counter())
            if meta["status"] != "SUCCESS":
                self.errors += 1
                counts["error"] += 1
                return
            result = JobResult.model_validate(meta["result"])
            self.served_by[result.served_by] += 1
            counts[result.served_by] += 1
            self.degraded += int(result.degraded)
            if result.degraded:
                self.degraded_ids.add(job_id)
            self.latest.append(describe(result))

    def wait_answers(self, timeout: float) -> None:
        """Returns when every job is answered, or after ``timeout`` seconds.

        Parameters:
          timeout: seconds.
        """
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.1)


def describe(result: JobResult) -> str:
    """One answer as a line of the display: model, who served it, what it said.

    Parameters:
      result: the answer.
    """
    output = result.output
    if result.model == "ocr":
        fields = ", ".join(f"{k}={v}" for k, v in (output.get("key_fields") or {}).items() if v)
        what = (output.get("text") or "").replace("\n", " | ")[:60] + (f"  [{fields}]" if fields else "")
    elif result.model == "sentiment":
        what = f"{output.get('label')} {output.get('score')}"
    else:
        what = ", ".join(f"{e['type']}:{e['text']}" for e in output.get("entities", [])[:4]) or "(no entities)"
    return f"{result.model:<9} {result.served_by:<18} {what}"
