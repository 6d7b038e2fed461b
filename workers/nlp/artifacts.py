"""Where trained models live and how their files are checked (shared by training and
serving, without either importing the other)."""

from __future__ import annotations

import hashlib
from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"
NER_MAX_LEN = 190  # a sentence cut (corpora.MAX_SENTENCE) plus its last word's overrun
ARTIFACTS = ("inference.json", "inference.pdiparams", "vocab.json", "features.json", "labels.json",
             "gazetteer.json", "metrics.json")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
