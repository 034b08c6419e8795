"""Distributed rate limiting in Redis: GCRA (a token bucket kept as one
timestamp per key), checked for the API key and its tenant in one atomic
script, on Redis's clock. Exact across any number of web processes: a
request is admitted only if both buckets have room, and only then are both
charged.

A bucket of ``limit`` per ``period`` admits a burst of ``limit`` and then one
request every ``period / limit``; over any window of length W it admits at
most ``limit + W * limit / period``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from core.redis import redis_client

logger = logging.getLogger(__name__)

# KEYS: bucket keys; with a gate, the gate's key first. ARGV: period in
# microseconds, 1 to charge an admitted request (0 only asks whether one would
# be admitted), the gate's period in microseconds (0: no gate) and limit, then
# one limit per bucket. A gate is checked first and never charged: with no
# room in it, nothing else is looked at (allowed = -1).
# Times are integer microseconds; flooring the stored time errs by < 1 us
# per request, never rounding a burst of ``limit`` down to ``limit - 1``.
# Returns {allowed, remaining (of the tightest bucket), its limit,
#          ms until that bucket is full again, ms until a retry can pass}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])  -- microseconds (exact in a double)
local period = tonumber(ARGV[1])
local charge = ARGV[2] == '1'
local gate_period = tonumber(ARGV[3])
local first = 1
if gate_period > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local allow_at = tat + gate_period / tonumber(ARGV[4]) - gate_period
  if allow_at > now then return {-1, 0, 0, 0, math.ceil((allow_at - now) / 1000)} end
  first = 2
end
local tats, intervals, limits = {}, {}, {}
local retry_after = 0
for i = first, #KEYS do
  local limit = tonumber(ARGV[i - first + 5])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i], intervals[i], limits[i] = tat, interval, limit
  local allow_at = tat + interval - period
  if allow_at > now and allow_at - now > retry_after then retry_after = allow_at - now end
end
local allowed = retry_after == 0 and 1 or 0
local remaining, tight_limit, reset = nil, 0, 0
for i = first, #KEYS do
  local tat = tats[i]
  if allowed == 1 and charge then
    tat = tat + intervals[i]
    redis.call('SET', KEYS[i], string.format('%d', math.floor(tat)), 'PX', math.ceil(period / 1000) + 1000)
  end
  local left = math.floor((period - (tat - now)) / intervals[i])
  if left < 0 then left = 0 end
  if remaining == nil or left < remaining then
    remaining, tight_limit, reset = left, limits[i], math.ceil((tat - now) / 1000)
  end
end
return {allowed, remaining, tight_limit, reset, math.ceil(retry_after / 1000)}
"""


@dataclass(frozen=True)
class Gate:
    """A bucket checked before the others and never charged by them (an
    address's authentication failures, charged where they happen)."""

    name: str
    limit: int
    period_s: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # until the tightest bucket is full again
    retry_after_s: int
    gate_closed: bool = False  # the gate had no room: the buckets were not looked at

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining), "RateLimit-Reset": str(self.reset_s)}


_registered: tuple[redis.Redis, redis.commands.core.Script] | None = None


def _script() -> redis.commands.core.Script:
    """The GCRA script on this process's client (registered once per client)."""
    global _registered
    client = redis_client()
    if _registered is None or _registered[0] is not client:
        _registered = (client, client.register_script(_GCRA))
    return _registered[1]


def rate_limit_check(*, buckets: dict[str, int], period_s: float = 60.0, charge: bool = True, gate: Gate | None = None) -> Decision | None:
    """Charge one request to every bucket (name -> limit per period) if all
    have room; with ``charge=False`` only say whether one would be admitted.
    With a ``gate``, one with no room refuses first (``gate_closed``), in the
    same round trip. None when Redis is unavailable: the API fails open
    (logged) rather than refusing every customer because a cache is down."""
    names = ([gate.name] if gate else []) + list(buckets)
    gate_args = [int(gate.period_s * 1_000_000), gate.limit] if gate else [0, 0]
    try:
        allowed, remaining, limit, reset_ms, retry_ms = _script()(
            keys=[f"mynah:rl:{name}" for name in names], args=[int(period_s * 1_000_000), int(charge), *gate_args, *buckets.values()]
        )
    except redis.RedisError:
        logger.warning("rate limiter unavailable; admitting the request")
        return None
    return Decision(
        allowed=allowed == 1,
        limit=int(limit),
        remaining=int(remaining),
        reset_s=-(-int(reset_ms) // 1000),
        retry_after_s=max(1, -(-int(retry_ms) // 1000)) if allowed != 1 else 0,
        gate_closed=allowed == -1,
    )
