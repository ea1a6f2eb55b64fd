"""One asyncio event loop in a thread, so threaded code (the gRPC servicer) can call nats-py.

``LoopThread.run(coro, timeout)`` runs a coroutine on the loop and waits for its result from
any other thread; ``close()`` stops the loop and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "nats-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """The coroutine's result; TimeoutError (after cancelling it) when timeout passes."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            if fut.done():
                # the coroutine's own timeout (nats-py's request timeouts are TimeoutErrors,
                # as concurrent.futures' is): its error, not a wait that outlived ours
                raise
            fut.cancel()
            raise TimeoutError(f"no answer in {timeout}s") from None

    def close(self) -> None:
        if self.loop.is_closed():
            return

        def stop() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_later(0.05, self.loop.stop)  # let the cancellations run

        self.loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()
