"""Where trained models live and how their files are checked (shared by training, in the
top-level ``training`` package, and serving, which never imports it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"
NER_MAX_LEN = 190  # a sentence cut (corpora.MAX_SENTENCE) plus its last word's overrun


def sha256(path: Path) -> str:
    """The file's SHA-256, in hex (what metrics.json records for each artifact)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
