"""Waiting out an outage: retry with growing delays, never skip.

Used by both stages of the processor (processor/stream/app.py, processor/stream/pipeline.py):
PostgreSQL or the broker being away pauses the stream; what was not done is tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

log = logging.getLogger("processor")

T = TypeVar("T")
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


def broker_unavailable(error: BaseException) -> bool:
    if isinstance(error, (KafkaConnectionError, KafkaTimeoutError, OSError, asyncio.TimeoutError)):
        return True
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))


def _never(error: BaseException) -> bool:
    return False


async def until_it_works(
    what: str,
    action: Callable[[], Awaitable[T]],
    *,
    retry_if: Callable[[BaseException], bool],
    alarming: Callable[[BaseException], bool] = _never,
) -> T:
    """Run `action` until it succeeds, waiting longer between tries: an outage pauses, never skips.

    Errors `retry_if` does not accept propagate. Retried errors are logged as warnings, or as
    errors when `alarming` says an operator has to act (they are retried all the same).
    """
    attempt = 0
    while True:
        try:
            return await action()
        except Exception as error:
            if not retry_if(error):
                raise
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            attempt += 1
            level = logging.ERROR if alarming(error) else logging.WARNING
            log.log(level, "%s failed (%s: %s); retrying in %.2fs (attempt %d)", what, type(error).__name__, error, delay, attempt)
            await asyncio.sleep(delay)
