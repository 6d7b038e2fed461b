"""The fleet's breaker store: Redis, with every decision taken by one Lua script call.

Scripts live as ``.lua`` files in ``lua/`` beside this module; the shared Lua is prepended
to each. They are registered once per client and called by SHA (redis-py loads them again
by itself if the server forgot them, after a restart).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import redis
from redis.exceptions import NoScriptError

from breaker.backend import BreakerBackend, RecordRequest
from breaker.backends.redis_counters import RedisCounters
from breaker.backends.scripts import SCRIPTS, STANDALONE_SCRIPTS, script_source
from breaker.errors import OutcomeUncertain, ScriptFailed
from breaker.events import BreakerEvent
from breaker.failsafe import is_script_bug
from breaker.policy import BreakerPolicy
from breaker.ramp import RampStatus
from breaker.keyspace import Keyspace
from breaker.state import (
    Admission,
    BreakerSnapshot,
    Control,
    RecordResult,
    State,
    StateView,
    Ticket,
    WindowStats,
)

log = logging.getLogger(__name__)

@lru_cache(maxsize=64)
def _policy_json(policy: BreakerPolicy) -> str:
    return policy.model_dump_json()


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class RedisBackend(RedisCounters, BreakerBackend):
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

    def __init__(
        self,
        client: redis.Redis,
        keys: Keyspace | None = None,
        stream_maxlen: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys or Keyspace()
        self.stream_maxlen = stream_maxlen
        self._clock = clock
        #: Breakers whose stored policy the scripts refused, with why (see common.lua).
        self.policy_problems: dict[str, str] = {}
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS + STANDALONE_SCRIPTS}

    # -- script calls -------------------------------------------------------------------

    def _args(self, name: str, policy: BreakerPolicy, who: str, *extra: Any) -> list[Any]:
        fixed = "" if self._clock is None else str(int(self._clock() * 1000))
        return [name, who, fixed, self.keys.events, self.stream_maxlen, _policy_json(policy), *extra]

    def _run(self, script: str, name: str, policy: BreakerPolicy, who: str, *extra: Any) -> dict[str, Any]:
        return self._call(script, name, self._args(name, policy, who, *extra))

    def _call(self, script: str, name: str, args: list[Any]) -> dict[str, Any]:
        try:
            raw = self._scripts[script](keys=self.keys.breaker(name), args=args)
        except redis.ResponseError as exc:
            raise self._script_error(script, name, exc) from exc
        return self._reply(name, raw)

    @staticmethod
    def _script_error(script: str, name: str, exc: redis.ResponseError) -> redis.ResponseError:
        """A Lua runtime error names its script and breaker; a refusal (OOM, READONLY...)
        stays what it is."""
        if is_script_bug(exc):
            failed = ScriptFailed(script, name, str(exc))
            failed.__cause__ = exc
            return failed
        return exc

    def _reply(self, name: str, raw: Any) -> dict[str, Any]:
        reply = json.loads(raw)
        problem = reply.get("policy_problem")
        if problem:
            if self.policy_problems.get(name) != problem:
                log.error("breaker %s: %s", name, problem)
            self.policy_problems[name] = problem
        elif name in self.policy_problems:
            del self.policy_problems[name]
        return reply

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

    def _record_args(self, group: Sequence[RecordRequest], batch: str = "") -> list[Any]:
        """One script call's arguments for outcomes that share a breaker and a ticket epoch
        (and, for a probe, its permit: probes are never grouped)."""
        first = group[0]
        t = first.ticket
        pairs: list[Any] = []
        for r in group:
            pairs += [r.outcome.value, repr(r.duration * 1000)]
        return self._args(first.name, first.policy, first.who, t.epoch, t.incarnation,
                          "" if t.permit is None else t.permit, batch, *pairs)

    def _results(self, reply: dict[str, Any]) -> list[RecordResult]:
        view = self._view_fields(reply)
        return [
            RecordResult(applied=bool(applied), slow=bool(slow),
                         **{**view, "state": State(state), "epoch": int(epoch), "open_until_ms": int(open_until)})
            for applied, slow, state, epoch, open_until in zip(
                reply["applied"], reply["slow"], reply["states"], reply["epochs"], reply["open_untils"])
        ]

    def record(self, request: RecordRequest) -> RecordResult:
        return self._results(self._call("record", request.name, self._record_args([request])))[0]

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

    def _pipelined(self, groups: Sequence[Sequence[RecordRequest]], batches: Sequence[str]) -> list[Any]:
        sha = self._scripts["record"].sha
        pipe = self.client.pipeline(transaction=False)
        for group, batch in zip(groups, batches):
            keys = self.keys.breaker(group[0].name)
            pipe.evalsha(sha, len(keys), *keys, *self._record_args(group, batch))
        return pipe.execute(raise_on_error=False)

    def record_many(self, requests: Sequence[RecordRequest]) -> list[RecordResult]:
        """Every outcome in one pipelined round trip, grouped into as few script calls as
        the rules allow; each call is atomic and judges its outcomes in order."""
        results: list[RecordResult] = []
        for answer in self.record_each(requests):
            if isinstance(answer, Exception):
                raise answer
            results.append(answer)
        return results

    def record_each(self, requests: Sequence[RecordRequest]) -> list[RecordResult | Exception]:
        """Like :meth:`record_many`, but a script call that Redis refused (out of memory, a
        read-only replica, a script error) answers its own outcomes with the error while
        the others keep their results: the caller records only the refused ones elsewhere,
        and nothing is counted twice.

        Raises:
          OutcomeUncertain: the connection failed (a timeout, a reset) and whether the
            calls ran is unknown; it carries each outcome's batch id, which the store
            remembers for the calls that did run (:meth:`applied_batches`).
        """
        groups = self._groups(requests)
        batches = [os.urandom(8).hex() for _ in groups]
        try:
            if len(groups) == 1:
                try:
                    reply = self._call("record", groups[0][0].name, self._record_args(groups[0], batches[0]))
                except redis.ResponseError as exc:
                    return [exc] * len(groups[0])
                return list(self._results(reply))
            replies = self._pipelined(groups, batches)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                # The server lost its script cache (a restart). NOSCRIPT means that nothing
                # ran, so loading the script and sending those again counts nothing twice.
                self.client.script_load(self._scripts["record"].script)
                again = self._pipelined([groups[i] for i in missing], [batches[i] for i in missing])
                for i, reply in zip(missing, again):
                    replies[i] = reply
        # Narrower than STORE_ERRORS on purpose: only a lost connection leaves it unknown
        # whether the scripts ran; any other Redis error is a clear answer, passed on as is.
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            ids = [batch for group, batch in zip(groups, batches) for _ in group]
            raise OutcomeUncertain(exc, ids) from exc
        answers: list[RecordResult | Exception] = []
        for group, reply in zip(groups, replies):
            if isinstance(reply, redis.ResponseError):
                answers += [self._script_error("record", group[0].name, reply)] * len(group)
            elif isinstance(reply, Exception):
                raise OutcomeUncertain(reply, [b for g, b in zip(groups, batches) for _ in g]) from reply
            else:
                answers += self._results(self._reply(group[0].name, reply))
        return answers

    def applied_batches(self, name: str, batches: Sequence[str]) -> set[str]:
        """Which of these record batches of breaker ``name`` the store ran."""
        if not batches:
            return set()
        scores = self.client.zmscore(self.keys.breaker(name)[6], list(batches))
        return {batch for batch, score in zip(batches, scores) if score is not None}

    def control(
        self, name: str, policy: BreakerPolicy, action: Control, who: str, reason: str = ""
    ) -> BreakerEvent:
        reply = self._run("control", name, policy, who, action.target.value, reason or f"operator: {action.value}")
        return BreakerEvent.model_validate(reply)

    def snapshot(self, name: str, policy: BreakerPolicy) -> BreakerSnapshot:
        reply = self._run("snapshot", name, policy, "")
        stored, fleet = reply.get("stored_policy"), reply.get("fleet_policy")
        if stored:
            effective = BreakerPolicy.from_redis(stored)
        elif fleet:
            effective = _fleet_policy(fleet, policy)
        else:
            effective = policy
        return BreakerSnapshot(
            name=name,
            changed_at_ms=int(reply["changed_at_ms"]),
            consecutive_trips=int(reply["consecutive_trips"]),
            window=WindowStats.model_validate({**reply["window"], "minimum_calls": effective.minimum_calls}),
            probes_outstanding=int(reply["probes_outstanding"]),
            probe_calls=int(reply["probe_calls"]),
            probe_failures=int(reply["probe_failures"]),
            consecutive_failures=int(reply.get("consecutive_failures") or 0),
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
                epoch=int(epoch or 0),
                incarnation=int(incarnation or 0),
                open_until_ms=int(open_until or 0),
                now_ms=now_ms,
            )
        return now_ms, views

    def get_policy(self, name: str) -> BreakerPolicy | None:
        """The operator's stored policy when it is usable, else the fleet default (the
        policy of the process that created the breaker), else None."""
        keys = self.keys.breaker(name)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys[3])
        pipe.hget(keys[0], "default_policy")
        fields, fleet = pipe.execute()
        if fields:
            try:
                return BreakerPolicy.from_redis(fields)
            except ValueError:
                pass  # the scripts refuse it too and judge with the fleet default
        return _fleet_policy(fleet, None) if fleet else None

    def set_policy(self, name: str, policy: BreakerPolicy, who: str) -> None:
        flat = [x for pair in policy.to_redis().items() for x in pair]
        reply = self._run("policy", name, policy, who, "set", *flat)
        if "error" in reply:
            raise ValueError(reply["error"])

    def clear_policy(self, name: str, who: str, default: BreakerPolicy | None = None) -> None:
        self._run("policy", name, default or BreakerPolicy(), who, "clear")

    def merge(self, name: str, policy: BreakerPolicy, who: str, window: WindowStats, local_open: bool,
              totals: dict[str, int], batch: str, basis: tuple[int, int] | None = None) -> StateView:
        """Hands back what this process decided on its own while the store was unreachable
        (see ``lua/merge.lua``); returns the breaker's state after it. ``batch`` makes it
        idempotent: a hand-back the store already ran is not counted again. ``basis`` is the
        shared (incarnation, epoch) the outcomes were admitted under: the window judges them
        only while the breaker is still there (None: unknown, judged)."""
        pairs = [x for item in totals.items() for x in item]
        incarnation, epoch = basis if basis is not None else ("", "")
        reply = self._run("merge", name, policy, who, window.calls, window.failures, window.slow,
                          "1" if local_open else "0", batch, incarnation, epoch, *pairs)
        return StateView(**self._view_fields(reply))

    def probe(self, who: str) -> None:
        """Raises unless the store runs a script that writes (see ``lua/probe.lua``)."""
        self._scripts["probe"](keys=[self.keys.store_probe], args=[who])

    def names(self) -> list[str]:
        return sorted(_decode(n) for n in self.client.smembers(self.keys.breakers))

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
        keys = [*base, *self.keys.ramp(name)]
        default = BreakerPolicy.model_fields["slow_start"].default
        raw = script(keys=keys, args=self._args(name, policy, "", action, arg, repr(default)))
        return RampStatus.model_validate(json.loads(raw))

    def history(self, name: str | None = None, count: int = 100) -> list[BreakerEvent]:
        # Read back further than `count` when filtering by name: other breakers' events
        # share the stream.
        entries = self.client.xrevrange(self.keys.events, count=count if name is None else count * 20)
        events = [parse_stream_entry(entry_id, fields) for entry_id, fields in entries]
        events = [e for e in events if e is not None and (name is None or e.breaker == name)]
        return list(reversed(events[:count]))


@lru_cache(maxsize=64)
def _fleet_policy_json(raw: str) -> BreakerPolicy | None:
    try:
        return BreakerPolicy.model_validate_json(raw)
    except ValueError:
        return None


def _fleet_policy(raw: Any, fallback: BreakerPolicy | None) -> BreakerPolicy | None:
    policy = _fleet_policy_json(_decode(raw))
    return policy if policy is not None else fallback


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
