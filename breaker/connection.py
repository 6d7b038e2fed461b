"""The one place fusebox builds Redis clients: ``redis://``, ``rediss://``, ``unix://`` and
Redis Sentinel (``sentinel://``) URLs.

Every part that keeps something in Redis (the breaker store, payloads, the result cache,
parking, deadlines, heartbeats, stats, the API) calls :func:`redis_client`; the Celery app
asks :func:`celery_url` and :func:`celery_transport_options` how to hand the same URL to
kombu's ``sentinel://`` transport and to Celery's sentinel result backend. This module
imports neither Celery nor kombu.

A Sentinel URL names the sentinels, separated by ``;``, the way kombu and Celery write it,
plus the name of the master they watch::

    sentinel://[[user]:password@]host[:port][;sentinel://host[:port]...][/db]?master_name=NAME
        [&sentinel_password=...][&sentinel_username=...]

- the password (and user) in the URL are the **master's** (``requirepass`` / ACL of the
  Redis servers), as kombu and Celery read them;
- ``sentinel_password`` (and ``sentinel_username``) are the **sentinels'** own, when they
  run with ``requirepass``;
- the port defaults to 26379; credentials, ``/db`` and the query may be written on any
  one of the ``;``-separated parts (or repeated identically on each).

The client finds the master through the sentinels before each new connection and drops
connections to a master that was demoted (READONLY), so a failover looks to its users like
a short outage of the store.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from pydantic import BaseModel, ConfigDict, Field
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "sentinel"
DIRECT_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SENTINEL_PORT = 26379
#: At most this many seconds after the sentinels name a new master, a client built here
#: stops writing to the old one (see :class:`FollowingSentinelPool`).
MASTER_RECHECK_INTERVAL = 0.5
#: Seconds a broker or result-backend connection waits on one sentinel before asking the
#: next (Celery's own connections to the master keep Celery's timeouts).
CELERY_SENTINEL_TIMEOUT = 2.0
_QUERY_KEYS = ("master_name", "sentinel_password", "sentinel_username", "ssl", "ssl_cert_reqs", "ssl_ca_certs",
               "ssl_certfile", "ssl_keyfile")


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _data_retry() -> Retry:
    """redis-py's own default for a plain client (10 tries, 10 ms doubling to 1 s, about
    5 s in all), made explicit because a Sentinel-managed pool would otherwise not retry."""
    return Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), 10)


class SentinelAddress(BaseModel):
    """A Redis master found through Redis Sentinel, parsed from a ``sentinel://`` URL.

    Parameters:
      sentinels: ``(host, port)`` of each sentinel, in the URL's order.
      master_name: the name the sentinels monitor the master under (``sentinel monitor NAME``).
      db: database number on the master.
      username, password: the master's credentials (ACL user, ``requirepass``).
      sentinel_username, sentinel_password: the sentinels' own credentials, if they need any.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sentinels: tuple[tuple[str, int], ...] = Field(min_length=1)
    master_name: str = Field(min_length=1)
    db: int = Field(0, ge=0)
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: str | None = None
    ssl_cert_reqs: str | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def tls_kwargs(self) -> dict[str, Any]:
        """redis-py's TLS arguments, for the sentinels and the master alike (``?ssl=true``);
        empty without TLS. Verified unless ``ssl_cert_reqs`` says otherwise."""
        if (self.ssl or "").lower() not in ("1", "true", "yes"):
            return {}
        found = {k: getattr(self, k) for k in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if getattr(self, k)}
        return {"ssl": True, "ssl_cert_reqs": self.ssl_cert_reqs or "required", **found}

    def sentinel_kwargs(self, timeout: float) -> dict[str, Any]:
        """Connection arguments for the sentinels themselves (``timeout`` seconds each)."""
        kwargs: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **self.tls_kwargs()}
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        if self.sentinel_username is not None:
            kwargs["username"] = self.sentinel_username
        return kwargs


class FollowingSentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, which also asks the sentinels where the master is at most
    every ``master_recheck`` seconds when a connection is taken, and drops its idle
    connections (and, when they come back, the busy ones) to a master they no longer name.

    Why: redis-py asks the sentinels only when it opens a connection. After a coordinated
    failover (``SENTINEL FAILOVER``, or a master that was partitioned away and comes back)
    the old master keeps accepting writes on the connections it has until the sentinels
    demote it, which they do on their next look at it (up to 10 s later); everything
    written there in between is thrown away when it resyncs from the new master. With this
    pool fusebox's own clients move within ``master_recheck`` seconds. The check costs one
    sentinel round trip, on whichever call takes a connection first after the interval.

    Parameters:
      service_name, sentinel_manager: as for :class:`redis.sentinel.SentinelConnectionPool`.
      master_recheck: seconds between two questions to the sentinels.
      kwargs: connection arguments.
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        self.master_recheck = float(kwargs.pop("master_recheck", MASTER_RECHECK_INTERVAL))
        super().__init__(service_name, sentinel_manager, **kwargs)
        self._next_check = time.monotonic() + self.master_recheck

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.master_recheck
            try:
                self.get_master_address()  # disconnects idle connections if the master moved
            # Narrower than STORE_ERRORS on purpose: only sentinels that do not answer are
            # shrugged off here; any other error is news for the caller's own call.
            except (RedisConnectionError, RedisTimeoutError):
                pass  # no sentinel answers: keep what we have; a new connection will tell
        return super().get_connection(*args, **kwargs)


def is_sentinel_url(url: str) -> bool:
    """True when ``url`` names Redis through Sentinel."""
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def is_redis_url(url: str) -> bool:
    """True when ``url`` names a Redis server fusebox can use (directly or through Sentinel)."""
    scheme = url.strip().split("://", 1)[0].lower() if "://" in url else ""
    return scheme in DIRECT_SCHEMES or scheme == SENTINEL_SCHEME


def check_redis_url(url: str) -> str:
    """``url`` itself when fusebox can use it for Redis; a ``ValueError`` saying why not
    otherwise (a pydantic validator of the settings that hold Redis URLs)."""
    if is_sentinel_url(url):
        parse_sentinel_url(url)
    elif not is_redis_url(url):
        raise ValueError(f"unsupported Redis URL {redact(url)!r}: use redis://, rediss://, unix:// or sentinel://")
    return url


def _merge(found: dict[str, Any], key: str, value: Any, url: str) -> None:
    if value is None:
        return
    if key in found and found[key] != value:
        raise ValueError(f"sentinel URL {redact(url)!r} gives two different values for {key}")
    found[key] = value


def parse_sentinel_url(url: str) -> SentinelAddress:
    """Parses a ``sentinel://`` URL (see the module's documentation).

    Parameters:
      url: ``sentinel://host:port;sentinel://host2:port/db?master_name=NAME``.

    Raises ``ValueError`` with the reason (passwords redacted) for anything it cannot use:
    another scheme in one of the parts, a missing host or ``master_name``, a bad port or
    database, an unknown query parameter.
    """
    sentinels: list[tuple[str, int]] = []
    found: dict[str, Any] = {}
    for part in (p.strip() for p in url.split(";")):
        if not part:
            continue
        try:
            split = urlsplit(part)
            port = split.port
        except ValueError as exc:
            raise ValueError(f"bad sentinel URL {redact(url)!r}: {exc}") from None
        if split.scheme.lower() != SENTINEL_SCHEME:
            raise ValueError(f"bad sentinel URL {redact(url)!r}: every part must start with sentinel://")
        if not split.hostname:
            raise ValueError(f"bad sentinel URL {redact(url)!r}: a part names no host")
        sentinels.append((split.hostname, port or DEFAULT_SENTINEL_PORT))
        _merge(found, "username", unquote(split.username) if split.username else None, url)
        _merge(found, "password", unquote(split.password) if split.password is not None else None, url)
        path = split.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"bad sentinel URL {redact(url)!r}: the database must be a number, not {path!r}")
            _merge(found, "db", int(path), url)
        for key, values in parse_qs(split.query, keep_blank_values=True).items():
            if key not in _QUERY_KEYS:
                raise ValueError(
                    f"bad sentinel URL {redact(url)!r}: unknown parameter {key!r} (known: {', '.join(_QUERY_KEYS)})"
                )
            _merge(found, key, values[-1], url)
    if not sentinels:
        raise ValueError("bad sentinel URL: it names no sentinel")
    if not found.get("master_name"):
        raise ValueError(
            f"bad sentinel URL {redact(url)!r}: add ?master_name=NAME (the name the sentinels monitor)"
        )
    return SentinelAddress(sentinels=tuple(sentinels), **found)


_SECRET_PARAM = re.compile(r"(?i)([?&;][^=&;?]*(?:password|token|secret)[^=&;?]*=)[^&;]*")


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***``, for logs and error messages.

    It fails closed: when ``url`` parses cleanly (a scheme, at most one ``@`` per
    ``;``-separated part, a password without ``/ ? # ;``), only the passwords go (``user:***@``);
    otherwise everything between the scheme (or the start) and the last ``@`` goes, which
    may hide a host too but never a password. Query parameters whose name holds
    ``password``, ``token`` or ``secret`` (any case) are hidden as well.
    """
    url = _SECRET_PARAM.sub(r"\1***", url)
    if "@" not in url:
        return url
    clean = _redact_clean(url)
    if clean is not None:
        return clean
    scheme, sep, _ = url.partition("://")
    start = len(scheme) + len(sep) if sep and "@" not in scheme else 0
    return url[:start] + "***" + url[url.rindex("@"):]


def _redact_clean(url: str) -> str | None:
    """Per-part redaction keeping user names, or None when any part is not plainly a URL."""
    out = []
    for part in url.split(";"):
        if part.count("@") > 1 or "://" not in part.partition("@")[0]:
            if "@" in part:
                return None
            out.append(part)
            continue
        try:
            split = urlsplit(part)
            password = split.password
        except ValueError:
            return None
        if "@" in part and "@" not in split.netloc:
            return None  # the @ is in the path or query: not userinfo as we understand it
        if password is not None and any(c in password for c in "/?#;"):
            return None
        if "@" not in split.netloc:
            out.append(part)
            continue
        user = split.username or ""
        host = split.netloc.rsplit("@", 1)[1]
        creds = f"{user}:***" if password is not None else "***"  # a lone user name may be a token
        out.append(part.replace(split.netloc, f"{creds}@{host}", 1))
    return ";".join(out)


def redis_client(
    url: str, timeout: float, *, fail_fast: bool = True, master_recheck: float = MASTER_RECHECK_INTERVAL, **kwargs: Any
) -> redis.Redis:
    """A Redis client for ``url``: ``redis://``, ``rediss://``, ``unix://`` or ``sentinel://``.

    Parameters:
      url: where Redis is (see the module's documentation for Sentinel).
      timeout: seconds to connect and to answer; with Sentinel also the time each sentinel
        may take to name the master.
      fail_fast: no retries (the breaker's store: its callers fall back to a local breaker
        rather than wait); False keeps redis-py's default retries with backoff (data such
        as payloads and results, which had rather wait out a failover).
      master_recheck: with Sentinel, seconds between checks of where the master is
        (:class:`FollowingSentinelPool`).
      kwargs: more redis-py connection arguments (``decode_responses``, ...).
    """
    kwargs.setdefault("retry", _no_retry() if fail_fast else _data_retry())
    if is_sentinel_url(url):
        address = parse_sentinel_url(url)
        credentials = {k: v for k, v in (("username", address.username), ("password", address.password)) if v}
        # A sentinel that does not answer is skipped for the next one: never retry it.
        sentinel_kwargs = {**address.sentinel_kwargs(timeout), "retry": _no_retry()}
        sentinel = Sentinel(
            list(address.sentinels),
            sentinel_kwargs=sentinel_kwargs,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            **address.tls_kwargs(),
            **kwargs,
        )
        return sentinel.master_for(
            address.master_name, connection_pool_class=FollowingSentinelPool, db=address.db,
            master_recheck=master_recheck, **credentials,
        )
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in DIRECT_SCHEMES:
        raise ValueError(
            f"unsupported Redis URL {redact(url)!r}: use redis://, rediss://, unix:// or sentinel://"
        )
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, **kwargs)


#: Query parameters of a TLS URL that redis-py, kombu and Celery's result backend all read.
TLS_PARAMS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def with_tls(url: str, ca_certs: str | None = None, certfile: str | None = None, keyfile: str | None = None,
             cert_reqs: str = "required") -> str:
    """``url`` with its TLS options spelled out, so that every client made from it verifies
    the server the same way: redis-py, kombu's broker transport and Celery's result backend
    (kombu alone falls back to *no verification* for a bare ``rediss://``, and sends the
    password over it). Only ``rediss://`` URLs, and ``sentinel://`` ones with ``ssl=true``,
    are changed; what the URL already says wins over the arguments.

    Parameters:
      url: a Redis URL.
      ca_certs: the CA bundle that signs the server's certificate (the system's if None).
      certfile, keyfile: this client's certificate and key (servers with ``tls-auth-clients``).
      cert_reqs: ``required`` (the default: verify), ``optional`` or ``none``.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme != "rediss" and not (scheme == SENTINEL_SCHEME and _sentinel_tls(url)):
        return url
    base, _, query = url.partition("?")
    given = parse_qs(query, keep_blank_values=True)
    wanted = {"ssl_cert_reqs": cert_reqs, "ssl_ca_certs": ca_certs, "ssl_certfile": certfile, "ssl_keyfile": keyfile}
    extra = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in wanted.items() if v and k not in given)
    return base + "?" + "&".join(p for p in (query, extra) if p) if (query or extra) else url


def _sentinel_tls(url: str) -> bool:
    """True when a Sentinel URL asks for TLS (``ssl=true``): to the sentinels and the master."""
    query = url.partition("?")[2]
    return parse_qs(query).get("ssl", ["false"])[-1].lower() in ("1", "true", "yes")


def celery_url(url: str) -> str:
    """``url`` as kombu and Celery's result backend read it.

    A Sentinel URL becomes one ``sentinel://`` part per sentinel, each carrying the
    master's credentials and database (kombu reads them from the first part, Celery's
    backend from the first host), without the query, which Celery would otherwise pass on
    to redis-py; the rest goes into :func:`celery_transport_options`. Other URLs are
    returned unchanged.
    """
    if not is_sentinel_url(url):
        return url
    address = parse_sentinel_url(url)
    auth = ""
    if address.password is not None or address.username:
        auth = quote(address.username or "", safe="")
        if address.password is not None:
            auth += ":" + quote(address.password, safe="")
        auth += "@"
    return ";".join(f"sentinel://{auth}{host}:{port}/{address.db}" for host, port in address.sentinels)


def celery_transport_options(url: str) -> dict[str, Any]:
    """What kombu's ``sentinel://`` transport (``broker_transport_options``) and Celery's
    sentinel result backend (``result_backend_transport_options``) need beyond the URL:
    ``master_name`` and the sentinels' connection arguments. Empty for other URLs."""
    if not is_sentinel_url(url):
        return {}
    address = parse_sentinel_url(url)
    return {
        "master_name": address.master_name,
        "sentinel_kwargs": address.sentinel_kwargs(CELERY_SENTINEL_TIMEOUT),
    }


def celery_ssl(url: str) -> dict[str, Any] | None:
    """The TLS options of a ``sentinel://...?ssl=true`` URL's master connections, as
    Celery's ``broker_use_ssl`` / ``redis_backend_use_ssl`` take them (the query is not
    passed on to Celery); None for any other URL (a ``rediss://`` URL carries its own, see
    :func:`with_tls`)."""
    if not is_sentinel_url(url):
        return None
    tls = parse_sentinel_url(url).tls_kwargs()
    tls.pop("ssl", None)
    return tls or None
