"""A log of model calls, kept when FUSEBOX_TRACE_MODEL_CALLS=1: when each started, in which
breaker state and epoch, on which worker, and when it ended. Drills and tests read it to
prove that no model call starts after a trip except the permitted probes, and how many
calls were in flight at any instant. (Not OpenTelemetry: that is workers.tracing.)"""

from __future__ import annotations

import time

import redis

from breaker.keyspace import Keyspace
from breaker.state import Ticket


class CallLog:
    """Parameters:
      client: Redis.
      prefix: key prefix.
      maxlen: about how many calls (and ends) a model's streams keep.
    """

    def __init__(self, client: redis.Redis, prefix: str, maxlen: int = 10_000) -> None:
        self.client, self.prefix, self.maxlen = client, prefix, maxlen
        self.keys = Keyspace(prefix)

    def key(self, model: str) -> str:
        return self.keys.model_calls(model)[0]

    def started(self, model: str, ticket: Ticket, job_id: str, worker: str) -> None:
        self.client.xadd(
            self.key(model),
            {
                "at": repr(time.time()),
                "state": ticket.state.value,
                "epoch": ticket.epoch,
                "permit": "" if ticket.permit is None else ticket.permit,
                "job": job_id,
                "worker": worker,
            },
            maxlen=self.maxlen,
            approximate=True,
        )

    def ended(self, model: str, job_id: str) -> None:
        """A model call ended (returned, raised, or its process was killed at the hard
        limit): with :meth:`started`, drills count the calls in flight at any instant."""
        self.client.xadd(self.keys.model_calls(model)[1], {"at": repr(time.time()), "job": job_id},
                         maxlen=self.maxlen, approximate=True)
