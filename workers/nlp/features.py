"""The sentiment model's features, the same in training and in serving: character 1-3-grams,
word 1-2-grams (jieba), polarity-lexicon counts (``lexicon.py``), and the character 1-2-grams
of the last clause and of what follows the last 但/不过-style turn, where a review's verdict
usually sits (房间不错，但是太吵了)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from workers.nlp.lexicon import lexicon

MAX_CHARS = 400  # longer reviews are judged on their first 400 characters
_CLAUSE_BREAK = re.compile(r"[，。！？；,.!?;~～、\s]+")
# Where two start at the same place (但是, 但) the longer is taken, so that the turn word
# itself is not read as part of the verdict.
TURNS = ("但是", "但", "不过", "可是", "然而", "就是", "只是", "可惜")


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
    out |= lexicon().features(words)
    for prefix, part in _verdict_parts(text):
        for n in (1, 2):
            for i in range(len(part) - n + 1):
                out.add(prefix + part[i : i + n])
    return sorted(out)


def _verdict_parts(text: str) -> list[tuple[str, str]]:
    """The last clause (when there are several) and the text after the last turn word."""
    parts = []
    clauses = [c for c in _CLAUSE_BREAK.split(text) if c]
    if len(clauses) > 1:
        parts.append(("end:", clauses[-1]))
    at, length, _ = max((text.rfind(t), len(t), t) for t in TURNS)
    if at >= 0:
        parts.append(("turn:", text[at + length :]))
    return parts


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
