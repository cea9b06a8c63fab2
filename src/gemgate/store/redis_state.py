"""Runtime state that several gemgate instances share through Redis (`GEMGATE_REDIS_URL`).

What is shared, and how it stays off the hot path:
- Events (a credential cooling down or found broken, keys or credentials changed) are
  published once and applied by every instance to its own in-memory state, so the pool never
  asks Redis anything while it picks a credential.
- Admission of a key with request or token limits is one script call: the rpm window, the tpm
  window and the tokens reserved by requests under way on every instance, checked and updated
  together. Keys without limits never touch Redis.
- A paced credential's turns (gemini_official accounts) are claimed in one script call, so
  its concurrency cap and spacing hold over all instances together.
- Thought signatures are written as they are issued (fire and forget) and read only for a
  replayed tool call this instance has not seen.

Redis going away never stops serving: every call falls back to the instance's own state, the
outage is logged once, and the instance rejoins when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from gemgate.services.admission import Refused

log = logging.getLogger("gemgate.redis")

EVENTS = "events"
# A reservation whose request never settled (its instance died) stops counting after this.
RESERVATION_TTL_MS = 10 * 60 * 1000
WINDOW_MS = 60_000

# KEYS: rpm window, tpm window, reservations. ARGV: now (ms), rpm, tpm, tokens to reserve,
# request id, quota, tokens used so far (the store's count), reservation ttl.
# Returns {0, 0} when admitted, else {1 rpm | 2 tpm | 3 quota, milliseconds to wait}.
_ADMIT = """
local now, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, rid, quota = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local used_total, ttl, window = tonumber(ARGV[7]), tonumber(ARGV[8]), 60000
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, tonumber(oldest[2]) + window - now}
  end
end
local reserved = 0
if tokens > 0 then
  local held = redis.call('HGETALL', KEYS[3])
  for i = 1, #held, 2 do
    local amount, deadline = string.match(held[i + 1], '(%d+):(%d+)')
    if tonumber(deadline) < now then
      redis.call('HDEL', KEYS[3], held[i])
    else
      reserved = reserved + tonumber(amount)
    end
  end
end
if tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local used = 0
  local seen = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #seen, 2 do
    used = used + tonumber(string.match(seen[i], ':(%d+)$'))
  end
  if used >= tpm then
    return {2, tonumber(seen[2]) + window - now}
  end
  if reserved > 0 and used + reserved + tokens > tpm then
    return {2, 1000}
  end
end
if quota > 0 then
  if used_total >= quota then
    return {3, 0}
  end
  if reserved > 0 and used_total + reserved + tokens > quota then
    return {3, 1000}
  end
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, rid)
  redis.call('PEXPIRE', KEYS[1], window)
end
if tokens > 0 then
  redis.call('HSET', KEYS[3], rid, tokens .. ':' .. (now + ttl))
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {0, 0}
"""

# KEYS: tpm window, reservations. ARGV: now (ms), request id, tokens used.
_SETTLE = """
redis.call('HDEL', KEYS[2], ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], 60000)
end
return 0
"""


# KEYS: the credential's leases (member -> expiry, ms), its last start. ARGV: now (ms), cap,
# spacing (ms), lease id, lease ttl (ms). Returns 0 with the lease taken, -1 while the
# credential is full on all instances together, else the milliseconds until its spacing ends.
_PACE = """
local now, cap, spacing = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then
  return -1
end
local last = tonumber(redis.call('GET', KEYS[2])) or 0
if spacing > 0 and last + spacing > now then
  return last + spacing - now
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
if spacing > 0 then
  redis.call('SET', KEYS[2], now, 'PX', spacing)
end
return 0
"""
# A turn whose instance died stops counting after this; a longer answer stops counting on the
# other instances then (its own still counts it).
PACE_LEASE_MS = 10 * 60 * 1000

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


class SharedState:
    def __init__(self, url: str, namespace: str, instance: str) -> None:
        self.prefix = f"{namespace}:"
        self.instance = instance
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, health_check_interval=10
        )
        self.up = True
        self._admit = self.client.register_script(_ADMIT)
        self._settle = self.client.register_script(_SETTLE)
        self._pace = self.client.register_script(_PACE)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None

    # -- life -----------------------------------------------------------------------------

    async def start(self, on_event: EventHandler) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError):
            self._lost()
        self._listener = asyncio.create_task(self._listen(on_event), name="gemgate-redis-events")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()

    def _lost(self) -> None:
        if self.up:
            log.warning("Redis is unreachable; this instance uses its own state until it returns")
        self.up = False

    def _back(self) -> None:
        if not self.up:
            log.warning("Redis is back; shared state resumed")
        self.up = True

    def _background(self, work: Awaitable[Any]) -> None:
        """Run a write without making the request wait for it; a failure marks Redis down."""

        async def run() -> None:
            try:
                await work
            except (RedisError, OSError):
                self._lost()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- events ---------------------------------------------------------------------------

    def announce(self, event: dict[str, Any]) -> None:
        """Tell every other instance (and not this one) about a change."""
        if not self.up:
            return
        payload = orjson.dumps({**event, "from": self.instance})
        self._background(self.client.publish(self.prefix + EVENTS, payload))

    async def _listen(self, on_event: EventHandler) -> None:
        while True:
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.prefix + EVENTS)
                self._back()
                try:
                    # A missed event is covered by the store reload; a rejoin also reloads.
                    await on_event({"type": "reload"})
                    while True:
                        message = await pubsub.get_message(timeout=5.0)
                        if message is None:
                            await self.client.ping()
                            continue
                        event = orjson.loads(message["data"])
                        if event.get("from") != self.instance:
                            await on_event(event)
                finally:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                self._lost()
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("could not apply an event from Redis")
                await asyncio.sleep(1.0)

    # -- one at a time across instances ---------------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str, hold: float = 30.0) -> AsyncIterator[None]:
        """Run the body on one instance at a time (an OAuth refresh, a cookie rotation): the
        others wait for it, then find its result in the store. Without Redis (or while it is
        away) the body runs at once; the caller's own per-process lock still applies."""
        if not self.up:
            yield
            return
        lock = self.client.lock(f"{self.prefix}lock:{name}", timeout=hold, blocking_timeout=hold)
        try:
            acquired = await lock.acquire()
        except (RedisError, OSError):
            self._lost()
            acquired = False
        try:
            yield
        finally:
            if acquired:
                with contextlib.suppress(RedisError, OSError):
                    await lock.release()

    # -- pacing ---------------------------------------------------------------------------

    async def claim_turn(self, cred_id: int, cap: int, spacing: float) -> tuple[str | None, float]:
        """A turn on a paced credential counted over every instance: (its lease, 0), or (None,
        seconds to wait; 0 while the credential is full). Without Redis the instance's own
        pacing decides alone: ("", 0)."""
        if not self.up:
            return "", 0.0
        lease = f"{self.instance}:{secrets.token_hex(6)}"
        keys = [f"{self.prefix}pace:{cred_id}:turns", f"{self.prefix}pace:{cred_id}:last"]
        try:
            found = await self._pace(
                keys=keys,
                args=[int(time.time() * 1000), cap, int(spacing * 1000), lease, PACE_LEASE_MS],
            )
        except (RedisError, OSError):
            self._lost()
            return "", 0.0
        wait = int(found)
        if wait == 0:
            return lease, 0.0
        return None, 0.0 if wait < 0 else wait / 1000

    def end_turn(self, cred_id: int, lease: str) -> None:
        if lease and self.up:
            self._background(self.client.zrem(f"{self.prefix}pace:{cred_id}:turns", lease))

    # -- admission ------------------------------------------------------------------------

    async def admit(
        self,
        key_id: int,
        request_id: str,
        *,
        rpm: int | None,
        tpm: int | None,
        tokens: int,
        quota: int | None,
        used_total: int,
    ) -> None:
        """Count the request against the key's shared limits; raise `Refused` when it may not
        go, `ConnectionError` when Redis cannot say (the caller then decides locally)."""
        k = f"{self.prefix}key:{key_id}:"
        try:
            verdict, wait_ms = await self._admit(
                keys=[k + "rpm", k + "tpm", k + "held"],
                args=[
                    int(time.time() * 1000),
                    rpm or 0,
                    tpm or 0,
                    tokens if (tpm or quota) else 0,
                    request_id,
                    quota or 0,
                    used_total,
                    RESERVATION_TTL_MS,
                ],
            )
        except (RedisError, OSError) as exc:
            self._lost()
            raise ConnectionError("Redis is unreachable") from exc
        self._back()
        if verdict:
            raise Refused(("rpm", "tpm", "quota")[int(verdict) - 1], max(0, int(wait_ms)) / 1000)

    def settle(self, key_id: int, request_id: str, tokens: int) -> None:
        """Release a request's reservation and count what it really used."""
        k = f"{self.prefix}key:{key_id}:"
        self._background(
            self._settle(
                keys=[k + "tpm", k + "held"], args=[int(time.time() * 1000), request_id, tokens]
            )
        )

    # -- thought signatures ---------------------------------------------------------------

    def remember_signature(self, call_id: str, signature: str, model: str, ttl: float) -> None:
        if self.up:
            value = f"{model}\n{signature}"
            self._background(self.client.set(f"{self.prefix}sig:{call_id}", value, ex=int(ttl)))

    async def recall_signatures(self, call_ids: list[str]) -> dict[str, tuple[str, str]]:
        """Signatures other instances issued, by call id: (model, signature)."""
        if not self.up or not call_ids:
            return {}
        try:
            values = await self.client.mget([f"{self.prefix}sig:{c}" for c in call_ids])
        except (RedisError, OSError):
            self._lost()
            return {}
        found = {}
        for call_id, value in zip(call_ids, values, strict=True):
            if value:
                text = value.decode() if isinstance(value, bytes) else value
                model, _, signature = text.partition("\n")
                found[call_id] = (model, signature)
        return found


async def announce_once(url: str, namespace: str, event: dict[str, Any]) -> None:
    """Publish one event from a process that is not an instance (the CLI): running instances
    apply a change at once instead of at their next reload. Best effort: they reload anyway."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        await client.publish(f"{namespace}:{EVENTS}", orjson.dumps({**event, "from": "cli"}))
    except (RedisError, OSError):
        log.info("Redis is unreachable; running instances see the change at their next reload")
    finally:
        await client.aclose()


async def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()
