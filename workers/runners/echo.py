"""A model that answers at once with what it was given: the breaker, the fleet-wide pause,
the fallbacks and fault injection can be drilled on it without loading Paddle."""

from __future__ import annotations

from typing import Any

from workers.runners.base import ModelRunner


class EchoRunner(ModelRunner):
    name = "echo"

    def _load(self) -> None:
        pass

    def run(self, inputs: list[str], options: dict[str, Any]) -> dict[str, Any]:
        return {"items": [{"text": text, "length": len(text)} for text in inputs]}
