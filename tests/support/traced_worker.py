"""``celery -A tests.support.traced_worker worker``: the fusebox app with OpenTelemetry's
in-memory span exporter in every pool process; each process writes the spans it finished
to ``$FUSEBOX_TEST_SPANS_DIR/<pid>.json`` when it shuts down."""

from __future__ import annotations

import json
import os
from typing import Any

from celery import signals
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from workers import app  # noqa: F401 - the app celery -A finds here

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)


@signals.worker_process_shutdown.connect
def _dump(**_: Any) -> None:
    spans = [{"name": s.name, "attributes": dict(s.attributes or {})} for s in EXPORTER.get_finished_spans()]
    path = os.path.join(os.environ["FUSEBOX_TEST_SPANS_DIR"], f"{os.getpid()}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spans, f)
