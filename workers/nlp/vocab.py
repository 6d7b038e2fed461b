"""Character vocabularies: what turns text into model input, saved with each model."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

PAD, UNK = 0, 1


class Vocab:
    """Characters to ids; 0 pads, 1 stands for any character not seen in training."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = chars
        self.index = {c: i + 2 for i, c in enumerate(chars)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> Vocab:
        counts = Counter(ch for text in texts for ch in text)
        return cls(sorted(ch for ch, n in counts.items() if n >= min_count))

    def __len__(self) -> int:
        return len(self.chars) + 2

    def encode(self, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids (int64, batch x longest) and lengths (int64); texts cut at max_len."""
        lengths = np.array([max(1, min(len(t), max_len)) for t in texts], dtype="int64")
        ids = np.zeros((len(texts), int(lengths.max())), dtype="int64")
        for row, text in enumerate(texts):
            for col, ch in enumerate(text[:max_len]):
                ids[row, col] = self.index.get(ch, UNK)
        return ids, lengths

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"chars": "".join(self.chars)}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(list(json.loads(path.read_text(encoding="utf-8"))["chars"]))
