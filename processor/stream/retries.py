"""Waiting out an outage: retry with growing delays, never skip (tenacity does the retrying).

Used by both stages of the processor (processor/stream/app.py, processor/stream/results_stage.py):
PostgreSQL or the broker being away pauses the stream; what was not done is tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_chain, wait_fixed

log = logging.getLogger("processor")

T = TypeVar("T")
# The waits between tries; the last one repeats for as long as the outage lasts.
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

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        level = logging.ERROR if error is not None and alarming(error) else logging.WARNING
        log.log(level, "%s failed (%s: %s); retrying in %.2fs (attempt %d)", what, type(error).__name__, error, delay, state.attempt_number)

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda error: isinstance(error, Exception) and retry_if(error)),
        wait=wait_chain(*(wait_fixed(delay) for delay in RETRY_DELAYS)),
        before_sleep=before_sleep,
        reraise=True,  # an error not retried propagates as itself
    )

    async def attempt() -> T:  # a coroutine function: tenacity calls a plain one without awaiting it
        return await action()

    return await retrying(attempt)
