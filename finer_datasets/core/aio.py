"""Running a coroutine to completion with a Ctrl-C that is never lost.

Python 3.11's ``asyncio.run`` turns the first Ctrl-C into a cancellation of the main task and
raises ``KeyboardInterrupt`` afterwards only if that task ends cancelled. A coroutine that
swallows the cancellation (``asyncio.wait_for`` racing its inner call's completion in 3.11, a
library's shielded clean-up) then returns normally, and the interrupt is gone: a build goes on
to its end. :func:`run_async` handles the signal itself: the first Ctrl-C cancels the main task
(so connections still close), and once the loop has ended a ``KeyboardInterrupt`` is raised
whatever the task did; a second Ctrl-C raises at once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any, Coroutine, TypeVar

__all__ = ["run_async"]

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)``; a Ctrl-C during it always ends in ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return asyncio.run(coroutine)  # not ours to handle (a thread, or the caller's own handler)
    hits = 0
    main: asyncio.Task[Any] | None = None

    async def tracked() -> T:
        nonlocal main
        main = asyncio.current_task()
        return await coroutine

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal hits
        hits += 1
        if hits == 1 and main is not None and not main.done():
            main.get_loop().call_soon_threadsafe(main.cancel)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        result = asyncio.run(tracked())
    except asyncio.CancelledError:
        if hits:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hits:
        raise KeyboardInterrupt
    return result
