"""The Python client beyond single jobs: batches, NLP helpers, routing at submit time."""

from __future__ import annotations

from breaker import State
from tests.support.fleet import Fleet, wait_for
from workers.errors import InvalidInput


def test_submit_batch_keeps_going_past_bad_inputs(fleet: Fleet) -> None:
    texts = ["质量很好，非常满意", "", "太差了，要求退货", "x" * 100_000]
    batch = fleet.client.submit_batch("sentiment", texts)
    assert [s.index for s in batch] == [0, 1, 2, 3]
    assert [s.ok for s in batch] == [True, False, True, False]
    assert isinstance(batch[1].error, InvalidInput) and "empty" in str(batch[1].error)
    labels = [s.handle.get(timeout=30).output["label"] for s in batch if s.handle is not None]
    assert labels == ["positive", "negative"]


def test_submit_nlp_picks_the_model_and_results_are_typed(fleet: Fleet) -> None:
    result = fleet.client.submit_nlp("新华社北京一月五日电，李鹏总理在人民大会堂会见了客人。", model="ner").get(timeout=30)
    kinds = {e["type"] for e in result.output["entities"]}
    assert {"PER", "LOC"} <= kinds and result.model == "ner" and not result.degraded


def test_open_breaker_routes_at_submission_unless_the_job_waits(fleet: Fleet) -> None:
    fleet.breaker("sentiment").trip(reason="client test")
    assert wait_for(lambda: fleet.client.breakers.get("sentiment").state == State.OPEN, 5)
    routed = fleet.client.submit_sentiment("物流很快，包装完好")
    assert routed.routed_to == "fallback"
    answer = routed.get(timeout=20)
    assert answer.degraded and answer.served_by.startswith(("fallback", "cache"))
    waiting = fleet.client.submit_sentiment("物流很快，包装完好", wait=True)
    assert waiting.routed_to == "model"
