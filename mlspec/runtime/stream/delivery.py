"""Redis Streams delivery for one streaming serve block: read, reclaim, and commit atomically.

Every serve block has one consumer group on its input stream (`mlspec.<serve>`); each process
is one consumer of it (`--consumer`, default host-pid: a pod's name in Kubernetes). An entry read
by a consumer stays in the group's pending list until that consumer commits it. A commit is one
Lua script, so it happens whole or not at all: for each entry still pending *for this consumer*
it appends the result (to the output stream) or the rejection (to the dead-letter stream) and
acknowledges the entry. An entry another consumer claimed meanwhile is skipped, and one already
acknowledged is not pending any more; so each entry is written to the output or dead-letter
stream once, even when a slow consumer's entries are reclaimed by another (the `event_id` field
names the input entry, should a reader still want to deduplicate, e.g. after a Redis failover
that lost an acknowledgement).

A consumer that dies leaves its entries pending; the others (and its successor) claim entries
idle for longer than `claim_idle_ms` with XAUTOCLAIM, at start and then periodically, and score
them. Input, output and dead-letter streams must live on one Redis (not spread over a cluster's
slots), since the commit touches all three.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["COMMIT_LUA", "Delivery", "Entry", "Outgoing"]

log = logging.getLogger("mlspec.stream")

# KEYS = [input, output, dead letter]; ARGV = [group, consumer, output maxlen (0: none), then per entry:
# id, target ("o" | "d"), n, n field/value items]. Returns the ids that were not pending for this consumer.
COMMIT_LUA = """
local skipped = {}
local i = 4
while i <= #ARGV do
  local id, target, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #mine == 1 then
    local args = {target == 'o' and KEYS[2] or KEYS[3]}
    if target == 'o' and ARGV[3] ~= '0' then
      args[#args + 1] = 'MAXLEN'
      args[#args + 1] = '~'
      args[#args + 1] = ARGV[3]
    end
    args[#args + 1] = '*'
    for j = 1, n do
      args[#args + 1] = ARGV[i + 2 + j]
    end
    redis.call('XADD', unpack(args))
    redis.call('XACK', KEYS[1], ARGV[1], id)
  else
    skipped[#skipped + 1] = id
  end
  i = i + 3 + n
end
return skipped
"""

Entry = tuple[str, dict[bytes, bytes] | None]  # (id, fields); fields None: deleted from the stream


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What to commit for one input entry: an output or a dead-letter entry (field/value pairs)."""

    id: str
    dead: bool
    fields: Sequence[tuple[str, str]]


class Delivery:
    """The consumer-group operations of one consumer on one input stream (redis-py client)."""

    def __init__(self, client: Any, input_stream: str, output_stream: str, dead_stream: str, group: str,
                 consumer: str, *, claim_idle_ms: int = 30_000, output_maxlen: int = 0) -> None:
        self.r = client
        self.input, self.output, self.dead = input_stream, output_stream, dead_stream
        self.group, self.consumer = group, consumer
        self.claim_idle_ms = claim_idle_ms
        self.output_maxlen = output_maxlen
        self._commit = client.register_script(COMMIT_LUA)
        self._claim_from = "0-0"

    def ensure_group(self, start: str = "0") -> bool:
        """Create the group (and the stream) if missing; True when it was created now."""
        import redis

        try:
            self.r.xgroup_create(self.input, self.group, id=start, mkstream=True)
            return True
        except redis.ResponseError as e:
            if "BUSYGROUP" in str(e):
                return False
            raise

    def read_own_pending(self, count: int) -> list[Entry]:
        """Entries delivered to this consumer and not committed (after an error, or a restart
        under the same consumer name); a deleted one comes back with fields None."""
        return self._entries(self.r.xreadgroup(self.group, self.consumer, {self.input: "0"}, count=count))

    def read_new(self, count: int, block_ms: int) -> list[Entry]:
        return self._entries(self.r.xreadgroup(self.group, self.consumer, {self.input: ">"}, count=count,
                                               block=block_ms))

    def claim_stale(self, count: int) -> tuple[list[Entry], list[str]]:
        """Claim entries idle in other consumers' pending lists for longer than claim_idle_ms.
        Returns them and the ids of entries deleted from the stream meanwhile (Redis drops those
        from the pending list itself). One call scans up to `count` entries, resuming next time."""
        reply = self.r.xautoclaim(self.input, self.group, self.consumer, self.claim_idle_ms,
                                  start_id=self._claim_from, count=count)
        nxt, entries = reply[0], reply[1]
        deleted = [_text(i) for i in reply[2]] if len(reply) > 2 else []
        self._claim_from = _text(nxt)
        return [(_text(i), f) for i, f in entries], deleted

    def commit(self, outgoing: Sequence[Outgoing]) -> list[str]:
        """Write each result and acknowledge its entry, atomically; the ids skipped (not pending for
        this consumer any more: claimed by another, or already committed)."""
        if not outgoing:
            return []
        args: list[str | int] = [self.group, self.consumer, self.output_maxlen]
        for o in outgoing:
            args.extend((o.id, "d" if o.dead else "o", 2 * len(o.fields)))
            for name, value in o.fields:
                args.extend((name, value))
        skipped = self._commit(keys=[self.input, self.output, self.dead], args=args)
        return [_text(s) for s in skipped]

    def group_info(self) -> dict[str, int | None]:
        """pending and lag of the group (lag None when Redis cannot tell, e.g. before 7.0)."""
        for g in self.r.xinfo_groups(self.input):
            if _text(g.get("name", b"")) == self.group:
                lag = g.get("lag")
                return {"pending": int(g.get("pending", 0)), "lag": int(lag) if lag is not None else None}
        return {"pending": 0, "lag": None}

    def _entries(self, reply: Any) -> list[Entry]:
        if not reply:  # RESP2 (the client's default): [[stream, [(id, fields), ...]]]
            return []
        return [(_text(i), f) for i, f in reply[0][1]]


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
