"""Running a coroutine up to its first suspension in the caller's task.

Faust hands every Kafka record to its streams inside ``wait_first(callback(message),
suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per record, so that a callback
blocked on a full stream queue gives way when a rebalance suspends the flow. Most callbacks
never block: they put the record on a queue with room and return. :func:`start` runs a
coroutine eagerly until it either finishes (no task at all) or first waits; only then does
the caller need the race, and :class:`Suspended` lets it finish the coroutine in a task.

>>> import asyncio
>>> async def quick() -> int:
...     return 7
>>> start(quick())
(True, 7)
>>> async def slow() -> int:
...     await asyncio.sleep(0)
...     return 8
>>> async def main() -> int:
...     done, rest = start(slow())
...     assert not done
...     return await asyncio.ensure_future(rest)
>>> asyncio.run(main())
8
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Suspended", "start"]

T = TypeVar("T")


class Suspended(Generic[T]):
    """A coroutine that ran up to its first suspension, awaitable again.

    Awaiting it (or wrapping it in a task) hands the object the coroutine waits on to the
    event loop, then drives the coroutine on exactly as a task would: values sent and
    exceptions thrown in (a cancellation) go to the coroutine; closing this closes it.
    """

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, T], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, T]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task: pass it on
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                continue
            try:
                pending = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


def start(coro: Coroutine[Any, Any, T]) -> tuple[bool, T | Suspended[T]]:
    """Run ``coro`` until it returns or first waits: ``(True, its result)`` or ``(False,
    a Suspended to await for the rest)``. An exception it raises before waiting propagates.
    """
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, Suspended(coro, pending)
