"""The trained Paddle NLP models: held-out sentences through real workers, the fallbacks,
and a retrain on a small slice so that the training code cannot rot."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.nlp import corpora
from workers.nlp.serving import ModelMismatch, NerRunner, SentimentRunner, verify
from workers.nlp.artifacts import MODELS_DIR
from tests.support.fleet import Fleet

pytestmark = [pytest.mark.redis, pytest.mark.slow]

# Written for these tests (test_the_examples_were_never_trained_on checks they are in
# neither corpus), in the corpora's styles.
POSITIVE = "房间很干净，服务也很热情，早餐丰富，下次还会再来。"
NEGATIVE = "房间又小又脏，空调坏了也没人修，前台态度恶劣，再也不住了。"
PEOPLE_DAILY = "新华社北京十二月三十一日电，国家主席江泽民发表新年讲话。"


def held_out(split: str = "test") -> list[corpora.TaggedSentence]:
    return corpora.tagged_sentences(split)


def test_the_shipped_models_are_the_ones_their_metrics_describe() -> None:
    for name in ("sentiment", "ner"):
        metrics = verify(MODELS_DIR / name)
        assert metrics["model"] == name and "inference.pdiparams" in metrics["artifacts"]


def test_a_tampered_model_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "sentiment"
    shutil.copytree(MODELS_DIR / "sentiment", copy)
    with open(copy / "inference.pdiparams", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelMismatch, match="sha256 differs"):
        SentimentRunner(copy).load()


def test_a_model_trained_with_other_lexicons_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "sentiment"
    shutil.copytree(MODELS_DIR / "sentiment", copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["lexicons"]["sha256"] = "0" * 64
    (copy / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ModelMismatch, match="other sentiment lexicons"):
        SentimentRunner(copy).load()


def test_served_sentiment_scores_what_its_metrics_say() -> None:
    """The whole held-out split through the serving path (paddle.inference, features built
    at serving time) gives the accuracy training recorded, above snownlp's shipped model."""
    metrics = verify(MODELS_DIR / "sentiment")
    runner = SentimentRunner()
    runner.load()
    test = corpora.reviews("test")
    assert len(test) == metrics["test_reviews"]
    got = runner.predict([r.text for r in test])
    accuracy = sum((g["label"] == "positive") == r.positive for g, r in zip(got, test)) / len(test)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=6e-4)
    assert accuracy > metrics["snownlp_bayes_test_accuracy"]


def test_sentiment_on_held_out_reviews() -> None:
    runner = SentimentRunner()
    runner.load()
    test = corpora.reviews("test")
    # The clearest cases: short, strongly worded reviews from the held-out split.
    positives = [r.text for r in test if r.positive and any(w in r.text for w in ("非常好", "很满意", "推荐"))][:20]
    negatives = [r.text for r in test if not r.positive and any(w in r.text for w in ("太差", "失望", "不推荐"))][:20]
    assert len(positives) >= 10 and len(negatives) >= 10
    got = runner.predict(positives + negatives)
    right = sum(g["label"] == "positive" for g in got[: len(positives)]) + sum(
        g["label"] == "negative" for g in got[len(positives) :])
    assert right / len(got) >= 0.9, got
    mine = runner.predict([POSITIVE, NEGATIVE])
    assert [m["label"] for m in mine] == ["positive", "negative"]
    assert all(0.5 <= m["score"] <= 1 for m in mine)


def test_ner_on_held_out_people_daily() -> None:
    runner = NerRunner()
    runner.load()
    test = held_out()
    with_all = [s for s in test if {k for k, _, _ in s.entities()} >= {"PER", "LOC", "TIME"}][:30]
    assert len(with_all) >= 10
    found = runner.predict([s.chars for s in with_all])
    hits = total = 0
    for sentence, entities in zip(with_all, found):
        want = {(k, sentence.chars[a:b]) for k, a, b in sentence.entities()}
        got = {(e["type"], e["text"]) for e in entities}
        hits, total = hits + len(want & got), total + len(want)
    assert hits / total >= 0.75, (hits, total)
    (entities,) = runner.predict([PEOPLE_DAILY])
    got = {(e["type"], e["text"]) for e in entities}
    assert {("ORG", "新华社"), ("LOC", "北京"), ("PER", "江泽民")} <= got, got
    assert any(kind == "TIME" and "十二月" in text for kind, text in got)


def test_retrain_on_a_small_slice_end_to_end(tmp_path: Path) -> None:
    """train -> save -> load through the serving runners -> predict, on a few hundred
    examples: the pipeline works and the metrics describe the files written."""
    from training.train import main

    assert main(["--out", str(tmp_path), "--limit", "600", "--epochs", "2", "--no-baseline"]) == 0
    for name in ("sentiment", "ner"):
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert verify(tmp_path / name) == metrics
    sentiment = json.loads((tmp_path / "sentiment" / "metrics.json").read_text())
    assert sentiment["train_reviews"] == 600 and sentiment["test_accuracy"] > 0.55
    runner = SentimentRunner(tmp_path / "sentiment")
    runner.load()
    (out,) = runner.predict([POSITIVE])
    assert out["label"] in ("positive", "negative") and 0.5 <= out["score"] <= 1
    ner = NerRunner(tmp_path / "ner")
    ner.load()
    assert isinstance(ner.predict([PEOPLE_DAILY])[0], list)


def test_the_examples_were_never_trained_on() -> None:
    """The sentences above were written for these tests: in no split of either corpus."""
    reviews = {r.text for r in corpora.reviews()}
    sentences = {s.chars for s in corpora.tagged_sentences()}
    assert POSITIVE not in reviews and NEGATIVE not in reviews
    assert PEOPLE_DAILY not in sentences
    assert all(corpora.split_of(s.chars) == "test" for s in held_out()[:50])


@pytest.fixture(scope="module")
def nlp_fleet() -> Iterator[Fleet]:
    fleet = Fleet()
    del fleet.env["FUSEBOX_PRELOAD"]
    fleet.start(["sentiment", "ner"], "nlp")
    fleet.start(["fallback"], "cpu", FUSEBOX_PRELOAD="fallback.ner")
    yield fleet
    fleet.close()


def test_nlp_jobs_through_the_fleet(nlp_fleet: Fleet) -> None:
    fleet = nlp_fleet
    one = fleet.client.submit_sentiment(NEGATIVE).get(timeout=60)
    assert one.served_by == "model" and one.output["label"] == "negative"
    many = fleet.client.submit_sentiment([POSITIVE, NEGATIVE, POSITIVE]).get(timeout=60)
    assert [i["label"] for i in many.output["items"]] == ["positive", "negative", "positive"]
    ner = fleet.client.submit_ner(PEOPLE_DAILY).get(timeout=60)
    assert ("PER", "江泽民") in {(e["type"], e["text"]) for e in ner.output["entities"]}


def test_nlp_fallbacks(nlp_fleet: Fleet) -> None:
    fleet = nlp_fleet
    fleet.fault("sentiment", error_rate=1.0)
    fleet.fault("ner", error_rate=1.0)
    try:
        neutral = fleet.client.submit_sentiment("这本书还行吧", route="model").get(timeout=60)
        assert neutral.degraded and neutral.served_by == "fallback:neutral"
        assert neutral.output == {"label": "neutral", "score": 0.5, "positive": 0.5}
        rules = fleet.client.submit_ner(PEOPLE_DAILY + "增长百分之八", route="model").get(timeout=60)
        assert rules.degraded and rules.served_by == "fallback:gazetteer"
        got = {(e["type"], e["text"]) for e in rules.output["entities"]}
        assert {("ORG", "新华社"), ("LOC", "北京"), ("PER", "江泽民")} <= got, got
        assert ("TIME", "十二月三十一日") in got
    finally:
        fleet.clear_fault("sentiment")
        fleet.clear_fault("ner")


def test_nlp_input_errors(nlp_fleet: Fleet) -> None:
    from workers.errors import InvalidInput, InvalidJob

    client = nlp_fleet.client
    before = nlp_fleet.breaker("sentiment").snapshot()
    with pytest.raises(InvalidInput, match="empty text"):
        client.submit_sentiment("  ")
    with pytest.raises(InvalidInput, match="text too long"):
        client.submit_ner("长" * 10_001)
    with pytest.raises(InvalidInput, match="not UTF-8"):
        client.submit("sentiment", text="好评".encode("gbk"))
    with pytest.raises(InvalidInput, match=r"texts\[1\]: empty text"):
        client.submit_sentiment(["好", ""])
    with pytest.raises(InvalidJob, match="at most 64 texts"):
        client.submit_sentiment(["好"] * 65)
    after = nlp_fleet.breaker("sentiment").snapshot()
    assert after.totals == before.totals and after.window == before.window  # refused before any call
