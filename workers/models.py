"""The models fusebox serves: for each, its queue and breaker name, breaker policy, input
kind, how to build its runner, and how its fallback answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from breaker.policy import BreakerPolicy
from workers.errors import UnknownModel
from workers.runners.base import ModelRunner
from workers.settings import Settings

FALLBACK_QUEUE = "fallback"


def _device(s: Settings) -> str:
    """This pool process's device (one GPU per process with FUSEBOX_DEVICE=gpu), with
    Paddle's GPU memory flags exported before Paddle is imported."""
    from workers.gpu import export_paddle_memory_flags, process_device

    if s.device != "cpu":
        export_paddle_memory_flags(s.gpu_allocator, s.gpu_memory_fraction)
    return process_device(s.device)


def _ocr_runner(s: Settings) -> ModelRunner:
    from workers.runners.ocr import OcrRunner

    det, rec = s.ocr_model_dirs()
    return OcrRunner(det, rec, s.ocr_det_name, s.ocr_rec_name, device=_device(s), cpu_threads=s.cpu_threads,
                     onednn=s.ocr_onednn, det_max_side=s.ocr_det_max_side or None,
                     low_confidence=s.ocr_low_confidence)


def _ocr_cpu_runner(s: Settings) -> ModelRunner:
    """The degraded path: the same mobile models on CPU, on a shrunken image."""
    from workers.runners.ocr import OcrRunner

    det, rec = s.ocr_model_dirs()
    return OcrRunner(det, rec, s.ocr_det_name, s.ocr_rec_name, device="cpu", cpu_threads=s.cpu_threads,
                     max_side=s.fallback_ocr_max_side, onednn=s.ocr_onednn,
                     low_confidence=s.ocr_low_confidence)


def _sentiment_runner(s: Settings) -> ModelRunner:
    from workers.nlp.serving import SentimentRunner

    return SentimentRunner(s.nlp_models_dir / "sentiment", device=_device(s), threads=s.cpu_threads)


def _ner_runner(s: Settings) -> ModelRunner:
    from workers.nlp.serving import NerRunner

    return NerRunner(s.nlp_models_dir / "ner", device=_device(s), threads=s.cpu_threads)


def _ner_rules(s: Settings) -> ModelRunner:
    from workers.nlp.rules import GazetteerTagger

    return GazetteerTagger(s.nlp_models_dir / "ner")


def _echo_runner(s: Settings) -> ModelRunner:
    from workers.runners.echo import EchoRunner

    return EchoRunner()


@dataclass(frozen=True)
class ModelSpec:
    """One model.

    Parameters:
      name: model, queue and breaker name.
      input: ``image`` (uploaded bytes) or ``text``.
      policy: the breaker policy this code configures (a policy stored in Redis wins).
      runner: builds the model's runner, once per worker process.
      fallback_runner: builds the degraded path's runner, if the fallback has one.
      max_text_chars: longest accepted text, for text models.
      max_batch: most texts in one job, for text models.
      options: the job options the model accepts (any other is an ``InvalidJob``).
      drill: a model for drills and tests (``echo``), not served in production: readiness
        does not wait for a worker of its queue.
    """

    name: str
    input: Literal["image", "text"]
    policy: BreakerPolicy
    runner: Callable[[Settings], ModelRunner]
    fallback_runner: Callable[[Settings], ModelRunner] | None = None
    max_text_chars: int = 10_000
    max_batch: int = 64
    options: tuple[str, ...] = field(default=())
    drill: bool = False

    @property
    def task(self) -> str:
        return f"fusebox.{self.name}"

    @property
    def fallback_task(self) -> str:
        return f"fusebox.fallback.{self.name}"

    @property
    def queue(self) -> str:
        return self.name

    @property
    def bypass_queue(self) -> str:
        """Jobs of whitelisted callers: consumed by every model worker, never paused."""
        return f"{self.name}.bypass"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # PaddleOCR PP-OCRv5: text lines with boxes, plus key fields.
        ModelSpec(
            name="ocr",
            input="image",
            # A core model: trips at 40 %. CPU OCR takes seconds per page, so the timeouts
            # are generous; GPU hosts may tighten them live (`fusebox breaker set`). Pages
            # above 4 megapixels get proportionally longer (a big page is the caller's load).
            policy=BreakerPolicy.for_tier("core", call_timeout=30.0, slow_call_duration=15.0,
                                          max_wait_in_half_open=120.0, reference_megapixels=4.0),
            runner=_ocr_runner,
            fallback_runner=_ocr_cpu_runner,
            options=("text_hint",),
        ),
        # Chinese reviews, positive or negative with a score: logistic regression over
        # character and word n-grams and polarity-lexicon counts (workers/nlp/features.py),
        # run by paddle.inference (workers/nlp/serving.py).
        ModelSpec(
            name="sentiment",
            input="text",
            # Nice to have: tolerate noise, cut off fast, retry soon.
            policy=BreakerPolicy.for_tier("auxiliary"),
            runner=_sentiment_runner,
        ),
        # A Paddle character BiGRU tagger: persons, places, organisations, times.
        ModelSpec(
            name="ner",
            input="text",
            # Core: trips early, recovers carefully. A text takes milliseconds on CPU.
            policy=BreakerPolicy.for_tier("core", call_timeout=10.0, slow_call_duration=2.0),
            runner=_ner_runner,
            fallback_runner=_ner_rules,
        ),
        # Answers with its input at once: drills the breaker without Paddle.
        ModelSpec(
            name="echo",
            input="text",
            policy=BreakerPolicy(minimum_calls=10, failure_rate_threshold=0.5, window=30, wait_in_open=5.0,
                                 permitted_calls_in_half_open=2, call_timeout=2.0, max_wait_in_half_open=10.0,
                                 slow_call_duration=1.0),
            runner=_echo_runner,
            drill=True,
        ),
    )
}


def spec_for(name: str) -> ModelSpec:
    """The model called ``name``.

    Parameters:
      name: the model's name (``ocr``, ``sentiment``...).

    Raises:
      UnknownModel: no model has that name.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModel(name, MODELS) from None
