"""Running a coroutine as one eliot action, for the code that logs actions."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from eliot import ActionType
from eliot.twisted import DeferredContext
from twisted.internet.defer import Deferred

T = TypeVar("T")


def logged(
    action_type: ActionType,
    body: Callable[[], Coroutine[Any, Any, T]],
    **fields: Any,
) -> Deferred[T]:
    """Run the coroutine ``body()`` inside an eliot action; a Deferred of it."""
    action = action_type(**fields)
    with action.context():
        result: Deferred[T] = Deferred.fromCoroutine(body())
        finished: Deferred[T] = DeferredContext(result).addActionFinish()
        return finished
