"""Character error rate: how far an OCR answer is from the text that was drawn."""

from __future__ import annotations


def normalise(text: str) -> str:
    """What the comparison ignores: whitespace (OCR drops the spaces between Chinese and Latin
    runs, and line breaks are layout) and the full-width yen sign PP-OCR reads ¥ as."""
    return "".join(text.split()).replace("￥", "¥")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(truth: str, read: str) -> float:
    """Edit distance over the truth's length, after ``normalise``; 1.0 for a blank answer."""
    expected = normalise(truth)
    return edit_distance(expected, normalise(read)) / max(1, len(expected))
