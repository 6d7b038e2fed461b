"""OpenTelemetry: the breaker's decisions as attributes of each task's span.

Optional (the ``tracing`` extra: ``opentelemetry-sdk`` and
``opentelemetry-instrumentation-celery``). With ``FUSEBOX_OTEL=1`` every worker process
instruments Celery after the fork (the instrumentation's own advice for prefork pools), so
each job has a ``run/fusebox.<model>`` span, linked to the producer's ``apply_async`` span.
Where spans go is OpenTelemetry's business: set a TracerProvider (as the tests do) or run
the worker under ``opentelemetry-instrument`` with the usual ``OTEL_*`` variables.

Attributes fusebox adds to the task's span:

    fusebox.breaker            the model's breaker
    fusebox.breaker.state      its state when the job was decided
    fusebox.breaker.decision   admitted | probe | rejected | bypass | deadline
    fusebox.breaker.outcome    success | failure | timeout | ignored (what was recorded)
    fusebox.served_by          model | cache | fallback:<how>
    fusebox.degraded           true when not answered by the model now

Without the package, :func:`note` does nothing and costs a function call.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

try:
    from opentelemetry import trace as _trace
except ImportError:  # the extra is not installed
    _trace = None  # type: ignore[assignment]


def enabled() -> bool:
    """Whether this worker instruments Celery (``FUSEBOX_OTEL``)."""
    from workers.settings import settings

    return settings().otel


def instrument() -> bool:
    """Instruments Celery in this process; False (and a warning) without the extra."""
    try:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError:
        log.warning("FUSEBOX_OTEL is set but the `tracing` extra is not installed; no spans")
        return False
    instrumentor = CeleryInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    return True


def note(**attributes: Any) -> None:
    """Adds ``fusebox.*`` attributes to the current span, if one is recording."""
    if _trace is None:
        return
    span = _trace.get_current_span()
    if not span.is_recording():
        return
    values = {}
    for key, value in attributes.items():
        if value is None:
            continue
        name = "fusebox." + key.replace("__", ".")
        values[name] = value.value if hasattr(value, "value") else value
    span.set_attributes(values)
