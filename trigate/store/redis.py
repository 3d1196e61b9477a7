"""The one way the gateway builds a Redis client (coredis, on trio through anyio), shared by the limits
backend and the Responses store so both fail the same way when Redis is unreachable or hung."""

from __future__ import annotations

import logging
from typing import Any

import trio

# Connect and reply timeouts: an unreachable or hung Redis costs a request at most about this long.
REDIS_TIMEOUT = 0.5


def open_redis(url: str, *, decode_responses: bool = True) -> Any:
    """A client for ``url``; it must be entered (``async with``) by a long-lived task before use, since
    coredis keeps its connection pool's background tasks in the task that enters it."""
    import coredis
    from coredis.exceptions import ConnectionError as RedisConnectionError
    from coredis.retry import ConstantRetryPolicy

    # coredis logs every retry and dropped connection (with an empty traceback); the users of the client
    # log an outage once themselves.
    logging.getLogger("coredis").setLevel(logging.WARNING)
    # One quick retry on a broken connection (a pooled one Redis closed); none on timeouts, which
    # would only double the wait.
    retry = ConstantRetryPolicy((RedisConnectionError,), retries=1, delay=0.01)
    return coredis.Redis.from_url(url, decode_responses=decode_responses, connect_timeout=REDIS_TIMEOUT,
                                  stream_timeout=REDIS_TIMEOUT, pool_timeout=REDIS_TIMEOUT, retry_policy=retry)


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a command raises when Redis cannot answer (with ``trio.fail_after`` bounding the whole)."""
    from coredis.exceptions import RedisError

    return (RedisError, OSError, trio.TooSlowError)
