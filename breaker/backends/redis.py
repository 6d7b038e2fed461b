"""The fleet's breaker store: Redis, with every decision taken by one Lua script call.

Scripts live as ``.lua`` files in ``lua/`` beside this module; ``common.lua`` is prepended
to each. They are registered once per client and called by SHA (redis-py loads them again
by itself if the server forgot them, after a restart).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from breaker.backend import BreakerBackend, RecordRequest
from breaker.events import BreakerEvent
from breaker.policy import BreakerPolicy
from breaker.ramp import RampStatus
from breaker.state import (
    Admission,
    BreakerSnapshot,
    Control,
    RecordResult,
    State,
    StateView,
    Ticket,
    WindowStats,
    check_name,
)

SCRIPTS = ("admit", "record", "control", "snapshot")


@lru_cache(maxsize=None)
def script_source(name: str) -> str:
    """The full source of one script: ``common.lua`` followed by ``<name>.lua``."""
    lua = resources.files("breaker.backends").joinpath("lua")
    return lua.joinpath("common.lua").read_text() + "\n" + lua.joinpath(f"{name}.lua").read_text()


@lru_cache(maxsize=64)
def _policy_json(policy: BreakerPolicy) -> str:
    return policy.model_dump_json()


@dataclass(frozen=True)
class KeySpace:
    """Where one deployment's breakers live in Redis.

    Parameters:
      prefix: the first part of every key and of the events channel, so that several
        deployments (or test runs) can share one Redis.
    """

    prefix: str = "fusebox"

    def breaker(self, name: str) -> list[str]:
        """The six keys every script takes, in the order ``common.lua`` names them."""
        base = f"{self.prefix}:breaker:{check_name(name)}"
        return [base, f"{base}:window", f"{base}:permits", f"{base}:policy", self.names, self.stream]

    @property
    def names(self) -> str:
        return f"{self.prefix}:breakers"

    @property
    def stream(self) -> str:
        return f"{self.prefix}:events"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:events"


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class RedisBackend(BreakerBackend):
    """Breakers in Redis, shared by every process that uses the same key prefix.

    Parameters:
      client: a redis-py client. Give it short socket timeouts (see
        :func:`breaker.settings.redis_client`): the callers fall back to a local breaker
        when a call fails, so a slow Redis must fail fast rather than stall a worker.
      keys: the key space (prefix).
      stream_maxlen: roughly how many events the history stream keeps.
      clock: None (the default and the only production setting) to decide on Redis
        ``TIME``; tests pass a manual clock (seconds) to step time without sleeping.
    """

    local = False

    def __init__(
        self,
        client: redis.Redis,
        keys: KeySpace | None = None,
        stream_maxlen: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys or KeySpace()
        self.stream_maxlen = stream_maxlen
        self._clock = clock
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS}

    # -- script calls -------------------------------------------------------------------

    def _args(self, name: str, policy: BreakerPolicy, who: str, *extra: Any) -> list[Any]:
        fixed = "" if self._clock is None else str(int(self._clock() * 1000))
        return [name, who, fixed, self.keys.channel, self.stream_maxlen, _policy_json(policy), *extra]

    def _run(self, script: str, name: str, policy: BreakerPolicy, who: str, *extra: Any) -> dict[str, Any]:
        raw = self._scripts[script](keys=self.keys.breaker(name), args=self._args(name, policy, who, *extra))
        return json.loads(raw)

    @staticmethod
    def _view_fields(reply: dict[str, Any]) -> dict[str, Any]:
        return {
            "state": State(reply["state"]),
            "epoch": int(reply["epoch"]),
            "incarnation": int(reply["incarnation"]),
            "open_until_ms": int(reply["open_until_ms"]),
            "now_ms": int(reply["now_ms"]),
        }

    def admit(self, name: str, policy: BreakerPolicy, who: str) -> Admission:
        reply = self._run("admit", name, policy, who, "admit")
        view = self._view_fields(reply)
        if not reply["admitted"]:
            return Admission(admitted=False, retry_after=reply.get("retry_after"), **view)
        ticket = Ticket(
            breaker=name,
            epoch=view["epoch"],
            incarnation=view["incarnation"],
            state=view["state"],
            permit=reply.get("permit"),
        )
        return Admission(admitted=True, ticket=ticket, **view)

    def advance(self, name: str, policy: BreakerPolicy, who: str) -> StateView:
        return StateView(**self._view_fields(self._run("admit", name, policy, who, "advance")))

    def _record_args(self, group: Sequence[RecordRequest]) -> list[Any]:
        """One script call's arguments for outcomes that share a breaker and a ticket epoch
        (and, for a probe, its permit: probes are never grouped)."""
        first = group[0]
        t = first.ticket
        pairs: list[Any] = []
        for r in group:
            pairs += [r.outcome.value, repr(r.duration * 1000)]
        return self._args(first.name, first.policy, first.who, t.epoch, t.incarnation,
                          "" if t.permit is None else t.permit, *pairs)

    def _results(self, reply: dict[str, Any]) -> list[RecordResult]:
        view = self._view_fields(reply)
        return [
            RecordResult(applied=bool(applied), slow=bool(slow),
                         **{**view, "state": State(state), "epoch": int(epoch), "open_until_ms": int(open_until)})
            for applied, slow, state, epoch, open_until in zip(
                reply["applied"], reply["slow"], reply["states"], reply["epochs"], reply["open_untils"])
        ]

    def record(self, request: RecordRequest) -> RecordResult:
        raw = self._scripts["record"](keys=self.keys.breaker(request.name), args=self._record_args([request]))
        return self._results(json.loads(raw))[0]

    @staticmethod
    def _groups(requests: Sequence[RecordRequest]) -> list[list[RecordRequest]]:
        """Consecutive outcomes of one breaker, epoch and incarnation go in one call; a
        probe (with its permit) always goes alone."""
        groups: list[list[RecordRequest]] = []
        for r in requests:
            last = groups[-1][0] if groups else None
            if (
                last is not None
                and r.ticket.permit is None
                and last.ticket.permit is None
                and (r.name, r.ticket.epoch, r.ticket.incarnation) == (last.name, last.ticket.epoch, last.ticket.incarnation)
            ):
                groups[-1].append(r)
            else:
                groups.append([r])
        return groups

    def _pipelined(self, groups: Sequence[Sequence[RecordRequest]]) -> list[Any]:
        sha = self._scripts["record"].sha
        pipe = self.client.pipeline(transaction=False)
        for group in groups:
            keys = self.keys.breaker(group[0].name)
            pipe.evalsha(sha, len(keys), *keys, *self._record_args(group))
        return pipe.execute(raise_on_error=False)

    def record_many(self, requests: Sequence[RecordRequest]) -> list[RecordResult]:
        """Every outcome in one pipelined round trip, grouped into as few script calls as
        the rules allow; each call is atomic and judges its outcomes in order."""
        groups = self._groups(requests)
        if len(groups) == 1:
            keys = self.keys.breaker(groups[0][0].name)
            return self._results(json.loads(self._scripts["record"](keys=keys, args=self._record_args(groups[0]))))
        replies = self._pipelined(groups)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # The server lost its script cache (a restart). NOSCRIPT means that nothing
            # ran, so loading the script and sending those again counts nothing twice.
            self.client.script_load(self._scripts["record"].script)
            for i, reply in zip(missing, self._pipelined([groups[i] for i in missing])):
                replies[i] = reply
        results: list[RecordResult] = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            results += self._results(json.loads(reply))
        return results

    def control(
        self, name: str, policy: BreakerPolicy, action: Control, who: str, reason: str = ""
    ) -> BreakerEvent:
        reply = self._run("control", name, policy, who, action.target.value, reason or f"operator: {action.value}")
        return BreakerEvent.model_validate(reply)

    def snapshot(self, name: str, policy: BreakerPolicy) -> BreakerSnapshot:
        reply = self._run("snapshot", name, policy, "")
        stored = reply.get("stored_policy")
        effective = BreakerPolicy.from_redis(stored) if stored else policy
        return BreakerSnapshot(
            name=name,
            changed_at_ms=int(reply["changed_at_ms"]),
            consecutive_trips=int(reply["consecutive_trips"]),
            window=WindowStats.model_validate(reply["window"]),
            probes_outstanding=int(reply["probes_outstanding"]),
            probe_calls=int(reply["probe_calls"]),
            probe_failures=int(reply["probe_failures"]),
            totals={k: int(v) for k, v in (reply["totals"] or {}).items()},
            policy=effective,
            **self._view_fields(reply),
        )

    # -- plain reads and writes ---------------------------------------------------------

    def views(self, names: Sequence[str]) -> tuple[int, dict[str, StateView]]:
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        for name in names:
            pipe.hmget(self.keys.breaker(name)[0], "state", "epoch", "incarnation", "open_until")
        (seconds, micros), *rows = pipe.execute()
        now_ms = int(self._clock() * 1000) if self._clock else int(seconds) * 1000 + int(micros) // 1000
        views: dict[str, StateView] = {}
        for name, (state, epoch, incarnation, open_until) in zip(names, rows):
            if state is None:
                continue
            views[name] = StateView(
                state=State(_decode(state)),
                epoch=int(epoch),
                incarnation=int(incarnation),
                open_until_ms=int(open_until),
                now_ms=now_ms,
            )
        return now_ms, views

    def get_policy(self, name: str) -> BreakerPolicy | None:
        fields = self.client.hgetall(self.keys.breaker(name)[3])
        return BreakerPolicy.from_redis(fields) if fields else None

    def _policy_changed(self, pipe: Any, name: str, who: str) -> None:
        event = BreakerEvent(kind="policy", breaker=name, who=who).model_dump_json(exclude_defaults=True)
        pipe.xadd(self.keys.stream, {"event": event}, maxlen=self.stream_maxlen, approximate=True)
        pipe.publish(self.keys.channel, event)

    def set_policy(self, name: str, policy: BreakerPolicy, who: str) -> None:
        key = self.keys.breaker(name)[3]
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=policy.to_redis())
            pipe.sadd(self.keys.names, name)
            self._policy_changed(pipe, name, who)
            pipe.execute()

    def clear_policy(self, name: str, who: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.breaker(name)[3])
            self._policy_changed(pipe, name, who)
            pipe.execute()

    def names(self) -> list[str]:
        return sorted(_decode(n) for n in self.client.smembers(self.keys.names))

    # -- slow start (breaker.ramp) --------------------------------------------------------------

    def ramp(self, name: str, policy: BreakerPolicy, action: str, arg: str = "") -> RampStatus:
        """One slow-start action on breaker ``name``, atomically (``ramp.lua``).

        Parameters:
          name: the breaker.
          policy: the caller's configured policy (a stored one wins).
          action: ``arm`` (``arg``: the current HALF_OPEN epoch),
            ``acquire`` / ``release`` (``arg``: the caller's slot token), or ``status``.
          arg: see ``action``.
        """
        script = self.__dict__.get("_ramp_script")
        if script is None:
            script = self.__dict__["_ramp_script"] = self.client.register_script(script_source("ramp"))
        base = self.keys.breaker(name)
        keys = [*base, f"{base[0]}:ramp", f"{base[0]}:slots"]
        default = BreakerPolicy.model_fields["slow_start"].default
        raw = script(keys=keys, args=self._args(name, policy, "", action, arg, repr(default)))
        return RampStatus.model_validate(json.loads(raw))

    def history(self, name: str | None = None, count: int = 100) -> list[BreakerEvent]:
        # Read back further than `count` when filtering by name: other breakers' events
        # share the stream.
        entries = self.client.xrevrange(self.keys.stream, count=count if name is None else count * 20)
        events = [parse_stream_entry(entry_id, fields) for entry_id, fields in entries]
        events = [e for e in events if e is not None and (name is None or e.breaker == name)]
        return list(reversed(events[:count]))


def parse_event(payload: bytes | str, **extra: Any) -> BreakerEvent | None:
    """An event from its JSON payload (pub/sub message or stream entry), or None if it is
    not one of ours."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict):
            return None
        data.update(extra)
        return BreakerEvent.model_validate(data)
    except ValueError:
        return None


def parse_stream_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> BreakerEvent | None:
    payload = fields.get(b"event", fields.get("event"))
    if payload is None:
        return None
    return parse_event(payload, stream_id=_decode(entry_id))
