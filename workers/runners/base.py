"""What every model runner offers the guarded tasks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class ModelRunner(ABC):
    """Loads one model and runs it.

    ``load`` is called once per worker process, after the fork (never in the parent, whose
    memory every child would otherwise share copy-on-write until it is written, and whose
    threads do not survive the fork). ``run`` takes an already validated input and returns
    the model's output as a JSON-able dict.
    """

    name: str

    def __init__(self) -> None:
        self.loaded = False

    @abstractmethod
    def _load(self) -> None: ...

    def load(self) -> None:
        if not self.loaded:
            self._load()
            self.loaded = True

    @abstractmethod
    def run(self, inputs: Any, options: dict[str, Any]) -> dict[str, Any]: ...
