"""The demo's traffic: which models, which one fails, the live policy that makes the story
fit in a minute, and the endless mix of jobs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from api import samples

#: The model whose every call fails during the fault.
FAULTY = "sentiment"
DEMO_MODELS = ("ocr", "sentiment", "ner")
#: The model served by two workers, one of which gets a sick device (a CUDA-style error on
#: every call) before the fault above: it is ejected alone while the model keeps serving.
SICK_MODEL = "ner"
#: Short ejections (docs/devices.md), so that the sick device's return fits in the story:
#: the first lasts 3 s, a second (a probe that failed) 6 s. (``sentiment`` runs on one
#: device: its model fault ejects nothing, since a model's only healthy device is never
#: ejected by the rules, and its breaker trips as the story needs.)
DEVICE_ENV = {"FUSEBOX_DEVICE_EJECTION_TIME": "3", "FUSEBOX_DEVICE_MAX_EJECTION_TIME": "6"}
#: Small windows and short waits, so that the story fits in a minute; set live, like an
#: operator's ``fusebox breaker set``.
DEMO_POLICY = {"minimum_calls": 6, "window": 10, "wait_in_open": 3.0, "wait_in_open_multiplier": 1.5,
               "permitted_calls_in_half_open": 2}

#: One job: its model and its input (PNG bytes for OCR, a text otherwise).
Job = tuple[str, Any]


def traffic(total: int, phase: Callable[[], str]) -> Iterator[Job]:
    """An endless mix: 1 page in 8 for OCR, the rest reviews and news sentences; during
    the fault half the reviews repeat earlier ones (the cache answers those).

    Parameters:
      total: the jobs the demo means to submit (the held-out texts drawn cover it).
      phase: the story's current phase (read at each job).
    """
    n = total + 50
    reviews, news = samples.reviews(n), samples.news_sentences(n)
    pages = [samples.invoice(i) if i % 2 == 0 else samples.id_card(i) for i in range(6)]
    for i in itertools.count():
        if i % 8 == 0:
            yield "ocr", pages[(i // 8) % len(pages)]
        elif i % 2 == 1:
            text = reviews[i] if not (phase().startswith("fault") and i % 4 == 1) else reviews[i % 24]
            yield "sentiment", text
        else:
            yield "ner", news[i]


def sick_device_traffic(seed: int = 23) -> Iterator[Job]:
    """The jobs of the sick-device act: news sentences for :data:`SICK_MODEL` only, apart
    from the plan's (the act lasts as long as the device takes to leave and come back).

    Parameters:
      seed: picks the sentences.
    """
    return (("ner", text) for text in itertools.cycle(samples.news_sentences(60, seed=seed)))


def extra_probe(seed: int) -> Job:
    """One more job for the faulty model, once the plan's are spent: without new jobs
    nobody would find out that the model is back.

    Parameters:
      seed: picks the review.
    """
    return FAULTY, samples.reviews(1, seed=seed)[0]
