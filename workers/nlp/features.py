"""The sentiment model's features: character 1-3-grams and word 1-2-grams (jieba), the
same in training and in serving."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

MAX_CHARS = 400  # longer reviews are judged on their first 400 characters


@lru_cache(maxsize=1)
def _jieba():  # type: ignore[no-untyped-def]
    import jieba  # type: ignore[import-untyped]

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()  # loads its bundled dictionary once per process
    return jieba


def features(text: str) -> list[str]:
    """Distinct n-gram features of one text, in a stable order."""
    text = text[:MAX_CHARS]
    out = set()
    for n in (1, 2, 3):
        for i in range(len(text) - n + 1):
            out.add("c:" + text[i : i + n])
    words = [w for w in _jieba().lcut(text) if w.strip()]
    for n in (1, 2):
        for i in range(len(words) - n + 1):
            out.add("w:" + "|".join(words[i : i + n]))
    return sorted(out)


class FeatureVocab:
    """Feature strings to ids; 0 pads (and stands for every feature not kept in training)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.index = {name: i + 1 for i, name in enumerate(names)}

    def __len__(self) -> int:
        return len(self.names) + 1

    def encode(self, feature_lists: Iterable[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        rows = [[self.index[f] for f in fs if f in self.index] or [0] for fs in feature_lists]
        lengths = np.array([len(r) for r in rows], dtype="int64")
        ids = np.zeros((len(rows), int(lengths.max())), dtype="int64")
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        return ids, lengths

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.names, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> FeatureVocab:
        return cls(json.loads(path.read_text(encoding="utf-8")))
