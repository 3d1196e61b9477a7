"""Stored Responses in Redis: one key per response (``trigate:resp:{id}``) holding the record as JSON,
with Redis's own expiry as the TTL, so gateway replicas sharing one Redis continue each other's
previous_response_id chains and nothing needs purging."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import trio

from trigate.store.redis import REDIS_TIMEOUT, open_redis, redis_errors
from trigate.store.responses import DEFAULT_TTL, Outage, StoredResponse, StoreUnavailable

T = TypeVar("T")


class RedisResponseStore:
    def __init__(self, url: str, *, ttl_seconds: float = DEFAULT_TTL, prefix: str = "trigate:resp:") -> None:
        self._redis: Any = open_redis(url, decode_responses=False)
        self._errors = redis_errors()
        self._ttl_ms = max(int(ttl_seconds * 1000), 1)
        self._prefix = prefix
        self._ready = trio.Event()
        self._closed = trio.Event()
        self._outage = Outage("redis")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # coredis keeps its pool's background tasks in the task entering the client: a long-lived one.
        async with self._redis:
            self._ready.set()
            task_status.started()
            await self._closed.wait()

    async def _ask(self, command: Awaitable[T]) -> T:
        if not self._ready.is_set():
            raise StoreUnavailable("server_error", "The Responses store is not running", status=503,
                                   code="response_store_unavailable")
        try:
            # coredis's timeouts bound each connect and reply; this bounds the whole, its retry included.
            with trio.fail_after(3 * REDIS_TIMEOUT):
                result = await command
        except self._errors as exc:
            raise self._outage.failed(exc) from None
        self._outage.ok()
        return result

    async def put(self, rec: StoredResponse) -> None:
        await self._ask(self._redis.set(self._prefix + rec.id, rec.to_json(), px=self._ttl_ms))

    async def get(self, response_id: str) -> StoredResponse | None:
        raw = await self._ask(self._redis.get(self._prefix + response_id))
        return None if raw is None else StoredResponse.from_json(raw)

    async def delete(self, response_id: str) -> bool:
        return bool(await self._ask(self._redis.delete([self._prefix + response_id])))

    async def aclose(self) -> None:
        self._closed.set()
