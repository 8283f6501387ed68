"""Group commit: concurrent callers' small writes run as ONE statement, each caller answered on its own.

A single check-in is one autocommit statement; what limits how many a second an instance takes
is not the statement but everything around it, once per statement: a round trip, a commit (a WAL
flush), the statement-level triggers (the site's data version, its NOTIFY, which PostgreSQL
serialises across commits) and the events' publish. ``GroupCommit`` lets callers that arrive while
earlier groups are in flight share the next statement:

- ``submit(item)`` queues the item and waits for its own result. Nothing waits on a timer: with
  no group in flight an item leaves at once (alone), so an idle instance adds no latency;
  under load each group takes everything that queued while the previous ones ran (up to
  ``max_items``), so the batch size follows the load.
- ``run(items)`` answers one result per item, in order: per-item failures are results (the
  check-in statement gives each item its own verdict), never an exception for the group.
- If ``run`` raises an outage (``Unavailable``: PostgreSQL down, hung, past the deadline) every
  caller of the group gets it: nothing of theirs was acknowledged. Any other exception means one
  item broke the statement for its neighbours: each item then runs alone, so only the culprit
  fails. ``run`` must therefore be safe to repeat (check-ins are keyed by their client id).
- A group runs in the context (request id, database deadline) of its oldest caller: the
  deadline that comes first bounds the statement.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from service.errors import Unavailable

log = logging.getLogger("qsite.groupcommit")

T = TypeVar("T")
R = TypeVar("R")


class _Waiting(Generic[T, R]):
    __slots__ = ("item", "future", "context")

    def __init__(self, item: T, future: asyncio.Future[R], context: contextvars.Context) -> None:
        self.item = item
        self.future = future
        self.context = context


class GroupCommit(Generic[T, R]):
    """Items submitted concurrently run together through ``run`` (see the module docstring)."""

    def __init__(self, run: Callable[[list[T]], Coroutine[Any, Any, list[R]]], *, max_items: int, flights: int = 2) -> None:
        self.run = run
        self.max_items = max_items
        # Groups in flight at once: a second one lets Python prepare and answer one group while
        # PostgreSQL executes the other, without taking more than two pooled connections.
        self.flights = flights
        self.groups = 0  # groups run (tests and benchmarks read these)
        self.items = 0
        self._queue: list[_Waiting[T, R]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Run ``item`` with whatever else is waiting; its own result, or the group's outage."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(item, future, contextvars.copy_context()))
        self._start()
        return await future

    def _start(self) -> None:
        while self._queue and self._in_flight < self.flights:
            group, self._queue = self._queue[: self.max_items], self._queue[self.max_items :]
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._flush(group), context=group[0].context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, group: list[_Waiting[T, R]]) -> None:
        try:
            self.groups += 1
            self.items += len(group)
            try:
                results = await self.run([w.item for w in group])
            except Unavailable as exc:
                for w in group:
                    _fail(w, exc)
                return
            except Exception as exc:  # noqa: BLE001 - handed to the callers, who raise it
                if len(group) == 1:
                    _fail(group[0], exc)
                    return
                log.warning("group statement failed; running its items one by one", extra={"event": "group_split", "subject": type(exc).__name__})
                await self._one_by_one(group)
                return
            except BaseException as exc:  # cancelled (shutdown): no caller may wait forever
                for w in group:
                    _fail(w, Unavailable("The write was interrupted; retry shortly."))
                raise exc
            for w, result in zip(group, results, strict=True):
                if not w.future.done():  # a caller that went away (its request cancelled) is not answered
                    w.future.set_result(result)
        finally:
            self._in_flight -= 1
            self._start()

    async def _one_by_one(self, group: list[_Waiting[T, R]]) -> None:
        for n, w in enumerate(group):
            try:
                results = await asyncio.get_running_loop().create_task(self.run([w.item]), context=w.context)
            except Unavailable as exc:  # PostgreSQL went away meanwhile: no point trying the others
                for rest in group[n:]:
                    _fail(rest, exc)
                return
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
                _fail(w, exc)
            else:
                if not w.future.done():
                    w.future.set_result(results[0])


def _fail(waiting: _Waiting[T, R], exc: BaseException) -> None:
    # Each caller raises its own copy: one exception object raised in several tasks would
    # collect their tracebacks into one another.
    if not waiting.future.done():
        try:
            own = copy.copy(exc)
        except Exception:  # noqa: BLE001 - an exception type that cannot be copied: share it
            own = exc
        waiting.future.set_exception(own)
