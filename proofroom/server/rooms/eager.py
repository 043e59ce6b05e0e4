"""Eager sends: the fast path of a connection's send, and the asyncio internal it relies on.

An eager send starts the transport's ``send_bytes()`` coroutine on the caller's own stack
(``coro.send(None)``): while the socket takes the bytes it finishes there, with no task and
no event-loop turn. When it suspends instead (the transport pushes back), the connection's
write loop must finish that half-run coroutine as a task would, and that needs asyncio's
private ``_asyncio_future_blocking`` flag (:func:`finish_send`). So the eager send is taken
only where the fast paths are on and this Python's futures still have the flag; otherwise
every message goes through the write loop's plain ``await send_bytes()``: one task switch
more per message, the same messages in the same order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)

#: The future attribute a task clears before it awaits a future a coroutine yielded.
_BLOCKING = "_asyncio_future_blocking"


def eager_sends(fast_paths: bool) -> bool:
    """Whether connections send eagerly: fast paths on, and this asyncio supports it."""
    return fast_paths and _supported()


@functools.cache
def _supported() -> bool:
    if hasattr(asyncio.Future, _BLOCKING):
        return True
    # An upgrade may cost speed, never correctness: say so once.
    logger.warning("eager sends off: asyncio.Future has no %s", _BLOCKING)
    return False


async def finish_send(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drive a coroutine that suspended on its first step to its end, as a task would."""
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)  # a bare yield: it only gave way to others
            else:
                # The future it waits for; its outcome reaches it below. Like a task, take
                # the future's "yielded by an await" mark first, or awaiting it again fails.
                setattr(waiting_on, _BLOCKING, False)
                await waiting_on
        except asyncio.CancelledError:
            coro.close()
            raise
        except Exception:  # the coroutine receives this same error below
            pass
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
