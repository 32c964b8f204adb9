"""intent_stream.eager: a coroutine started in the caller's task, finished in a task if it waits."""

from __future__ import annotations

import asyncio

import pytest

from intent_stream.eager import Suspended, start


async def _returns(value: int) -> int:
    return value


async def _raises() -> None:
    raise ValueError("bad record")


def test_a_coroutine_that_does_not_wait_finishes_in_the_caller() -> None:
    async def main() -> tuple[bool, object, int]:
        tasks_before = len(asyncio.all_tasks())
        done, value = start(_returns(3))
        return done, value, len(asyncio.all_tasks()) - tasks_before

    assert asyncio.run(main()) == (True, 3, 0)


def test_an_exception_before_waiting_propagates() -> None:
    with pytest.raises(ValueError, match="bad record"):
        start(_raises())


def test_a_coroutine_that_waits_on_a_future_finishes_when_awaited() -> None:
    steps: list[str] = []

    async def waits(future: asyncio.Future[int]) -> int:
        steps.append("started")
        value = await future
        steps.append("resumed")
        return value + 1

    async def main() -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done, rest = start(waits(future))
        assert not done
        assert isinstance(rest, Suspended)
        assert steps == ["started"]  # ran up to its wait in the caller
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        assert not task.done()
        future.set_result(41)
        return await asyncio.wait_for(task, timeout=5)

    assert asyncio.run(main()) == 42
    assert steps == ["started", "resumed"]


def test_cancelling_the_task_cancels_the_coroutine() -> None:
    cleaned: list[bool] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    async def main() -> None:
        done, rest = start(waits_forever())
        assert not done
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)

    asyncio.run(main())
    assert cleaned == [True]


def test_an_exception_after_waiting_reaches_the_awaiter() -> None:
    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("after the wait")

    async def main() -> None:
        done, rest = start(fails_later())
        assert not done
        with pytest.raises(RuntimeError, match="after the wait"):
            await asyncio.wait_for(asyncio.ensure_future(rest), timeout=5)

    asyncio.run(main())
