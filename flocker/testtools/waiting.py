"""Waiting for a real cluster to get somewhere: a hang guard, not a timing assertion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 120,
    what: str = "the cluster to converge",
    interval: float = 0.1,
) -> T:
    """
    Poll ``predicate`` every ``interval`` seconds until it returns a true
    value, and return that value.

    :raise AssertionError: if ``timeout`` seconds pass first, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


async def eventually(
    predicate: Callable[[], T],
    timeout: float = 60,
    what: str = "the condition",
    interval: float = 0.05,
) -> T:
    """
    `wait_for` inside the reactor: poll ``predicate`` without blocking it
    (for ``async`` tests whose services run on the same reactor).

    :raise AssertionError: if ``timeout`` seconds pass first, naming ``what``.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, interval, lambda: None)


__all__ = ["eventually", "wait_for"]
