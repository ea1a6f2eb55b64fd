"""LoopThread: a coroutine's own TimeoutError is its error, not a wait that outlived ours.

Python 3.11's concurrent.futures.TimeoutError is the builtin TimeoutError, as nats-py's
request timeouts are: a JetStream request NATS left unanswered (10 s) was once reported as
"no answer in 15.0s", which sent the search for a hang the wrong way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats.errors
import pytest

from forwarder.storage.nats_loop import LoopThread


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    loop_thread = LoopThread("test-loop")
    try:
        yield loop_thread
    finally:
        loop_thread.close()


async def _raises_nats_timeout() -> None:
    await asyncio.sleep(0)
    raise nats.errors.TimeoutError


async def _waits_forever() -> None:
    await asyncio.Event().wait()


def test_the_coroutines_own_timeout_is_raised_as_it_is(lt: LoopThread) -> None:
    with pytest.raises(nats.errors.TimeoutError):
        lt.run(_raises_nats_timeout(), timeout=30)


def test_a_wait_past_the_timeout_says_so_and_cancels_the_coroutine(lt: LoopThread) -> None:
    with pytest.raises(TimeoutError, match=r"no answer in 0.2s"):
        lt.run(_waits_forever(), timeout=0.2)

    async def tasks_left() -> int:
        await asyncio.sleep(0)
        return len(asyncio.all_tasks()) - 1  # this one

    assert lt.run(tasks_left(), timeout=30) == 0


def test_results_and_other_errors_pass_through(lt: LoopThread) -> None:
    async def answer() -> int:
        return 42

    async def fails() -> None:
        raise ValueError("bad")

    assert lt.run(answer(), timeout=30) == 42
    with pytest.raises(ValueError, match="bad"):
        lt.run(fails(), timeout=30)
