"""fusebox's distributed circuit breaker: one breaker per model, shared by every worker
through Redis, with a local fail-safe. It imports neither Celery nor Paddle.

Start at :class:`Breakers`::

    from breaker import Breakers, BreakerPolicy

    breakers = Breakers.from_url("redis://127.0.0.1:6379/0", policies={"ocr": BreakerPolicy.for_tier("core")})
    with breakers.guard("ocr"):
        run_the_model()
"""

from breaker.circuit import CircuitBreaker
from breaker.errors import (
    STORE_ERRORS,
    BreakerError,
    CallNotPermitted,
    CallTimeout,
    ExceptionClassifier,
    FuseboxError,
    InputError,
    StoreUnavailable,
)
from breaker.events import BreakerEvent, Listener
from breaker.policy import TIERS, BreakerPolicy
from breaker.registry import Breakers, StoreHealth
from breaker.settings import BreakerSettings
from breaker.state import BreakerSnapshot, Control, Outcome, State, Ticket, WindowStats

__all__ = [
    "STORE_ERRORS",
    "TIERS",
    "BreakerError",
    "BreakerEvent",
    "BreakerPolicy",
    "BreakerSettings",
    "BreakerSnapshot",
    "Breakers",
    "CallNotPermitted",
    "CallTimeout",
    "CircuitBreaker",
    "Control",
    "ExceptionClassifier",
    "FuseboxError",
    "InputError",
    "Listener",
    "Outcome",
    "State",
    "StoreHealth",
    "StoreUnavailable",
    "Ticket",
    "WindowStats",
]
