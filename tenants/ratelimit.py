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

# KEYS: bucket keys. ARGV: period in microseconds, 1 to charge an admitted
# request (0 only asks whether one would be admitted), then one limit per key.
# Times are integer microseconds; flooring the stored time errs by < 1 us
# per request, never rounding a burst of ``limit`` down to ``limit - 1``.
# Returns {allowed, remaining (of the tightest bucket), its limit,
#          ms until that bucket is full again, ms until a retry can pass}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])  -- microseconds (exact in a double)
local period = tonumber(ARGV[1])
local charge = ARGV[2] == '1'
local tats, intervals = {}, {}
local retry_after = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i + 2])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i], intervals[i] = tat, interval
  local allow_at = tat + interval - period
  if allow_at > now and allow_at - now > retry_after then retry_after = allow_at - now end
end
local allowed = retry_after == 0 and 1 or 0
local remaining, tight_limit, reset = nil, 0, 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i + 2])
  local tat = tats[i]
  if allowed == 1 and charge then
    tat = tat + intervals[i]
    redis.call('SET', key, string.format('%d', math.floor(tat)), 'PX', math.ceil(period / 1000) + 1000)
  end
  local left = math.floor((period - (tat - now)) / intervals[i])
  if left < 0 then left = 0 end
  if remaining == nil or left < remaining then
    remaining, tight_limit, reset = left, limit, math.ceil((tat - now) / 1000)
  end
end
return {allowed, remaining, tight_limit, reset, math.ceil(retry_after / 1000)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # until the tightest bucket is full again
    retry_after_s: int

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


def rate_limit_check(*, buckets: dict[str, int], period_s: float = 60.0, charge: bool = True) -> Decision | None:
    """Charge one request to every bucket (name -> limit per period) if all
    have room; with ``charge=False`` only say whether one would be admitted.
    None when Redis is unavailable: the API fails open (logged) rather than
    refusing every customer because a cache is down."""
    names = list(buckets)
    try:
        allowed, remaining, limit, reset_ms, retry_ms = _script()(
            keys=[f"mynah:rl:{name}" for name in names], args=[int(period_s * 1_000_000), int(charge), *buckets.values()]
        )
    except redis.RedisError:
        logger.warning("rate limiter unavailable; admitting the request")
        return None
    return Decision(
        allowed=bool(allowed),
        limit=int(limit),
        remaining=int(remaining),
        reset_s=-(-int(reset_ms) // 1000),
        retry_after_s=max(1, -(-int(retry_ms) // 1000)) if not allowed else 0,
    )
