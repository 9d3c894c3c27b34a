"""Tokens in Redis, for several instances that already share Redis for their limits.

One hash per ticket (`PREFIX t:DIGEST`), expiring `RETENTION` after the token
does, and one set of digests for listing. A use is one Lua script, which Redis
runs alone: check live, right profile, uses left, then count, so two phones
racing with a one-use token get one success between them.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import UpstreamUnavailable
from bridge.tokens.store import RETENTION, Ticket, TokenStore

TIMEOUT = 2.0

# KEYS[1] the ticket; ARGV profile, now. The ticket's fields, or nil.
SPEND = """
local f = redis.call('HMGET', KEYS[1], 'profile', 'revoked', 'expires', 'uses', 'used')
if not f[1] or f[1] ~= ARGV[1] or f[2] ~= '0' or tonumber(f[3]) <= tonumber(ARGV[2])
   or tonumber(f[5]) >= tonumber(f[4]) then
  return nil
end
redis.call('HINCRBY', KEYS[1], 'used', 1)
return redis.call('HGETALL', KEYS[1])
"""

GIVE_BACK = """
local used = tonumber(redis.call('HGET', KEYS[1], 'used'))
if used and used > 0 then redis.call('HINCRBY', KEYS[1], 'used', -1) end
return 0
"""

REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'revoked', 1)
return 1
"""


class RedisTokenStore(TokenStore):
    def __init__(self, url: str, prefix: str = "zoiper-bridge:tokens:") -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=TIMEOUT,
                                           socket_connect_timeout=TIMEOUT)
        self._spend = self.client.register_script(SPEND)
        self._give_back = self.client.register_script(GIVE_BACK)
        self._revoke = self.client.register_script(REVOKE)

    def _key(self, digest: str) -> str:
        return f"{self.prefix}t:{digest}"

    @property
    def _all(self) -> str:
        return f"{self.prefix}all"

    async def _run(self, coroutine: Any) -> Any:
        """Await a Redis call; a failure to reach Redis becomes a 503."""
        from redis.exceptions import RedisError

        try:
            return await coroutine
        except (RedisError, OSError, TimeoutError) as exc:
            raise UpstreamUnavailable(f"token store (Redis): {type(exc).__name__}: "
                                      f"{exc}") from exc

    async def start(self) -> None:
        await self._run(self.client.ping())

    async def ready(self) -> None:
        await self._run(self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()

    async def add(self, ticket: Ticket) -> None:
        key = self._key(ticket.digest)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={
            "username": ticket.username, "profile": ticket.profile,
            "pipeline": ticket.pipeline, "created": repr(ticket.created),
            "expires": repr(ticket.expires), "uses": ticket.uses, "used": ticket.used,
            "revoked": int(ticket.revoked)})
        pipe.pexpireat(key, int((ticket.expires + RETENTION) * 1000))
        pipe.sadd(self._all, ticket.digest)
        await self._run(pipe.execute())

    async def spend(self, digest: str, profile: str, now: float) -> Ticket | None:
        found = await self._run(self._spend(keys=[self._key(digest)], args=[profile, repr(now)]))
        if not found:
            return None
        fields = dict(zip(found[::2], found[1::2], strict=True))
        return _ticket(digest, fields)

    async def give_back(self, digest: str) -> None:
        await self._run(self._give_back(keys=[self._key(digest)], args=[]))

    async def tickets(self) -> list[Ticket]:
        digests = sorted(d.decode() for d in await self._run(self.client.smembers(self._all)))
        pipe = self.client.pipeline(transaction=False)
        for digest in digests:
            pipe.hgetall(self._key(digest))
        found: list[Ticket] = []
        gone: list[str] = []
        for digest, fields in zip(digests, await self._run(pipe.execute()), strict=True):
            if fields:
                found.append(_ticket(digest, fields))
            else:  # expired by Redis
                gone.append(digest)
        if gone:
            await self._run(self.client.srem(self._all, *gone))
        return sorted(found, key=lambda t: t.created)

    async def revoke(self, digests: list[str]) -> int:
        revoked = 0
        for digest in digests:  # only a ticket that still exists is marked
            revoked += int(await self._run(self._revoke(keys=[self._key(digest)], args=[])))
        return revoked


def _ticket(digest: str, raw: dict[Any, Any]) -> Ticket:
    f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in raw.items()}
    return Ticket(digest, f["username"], f["profile"], f["pipeline"], float(f["created"]),
                  float(f["expires"]), int(f["uses"]), int(f["used"]), f["revoked"] != "0")
