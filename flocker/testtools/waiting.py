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


__all__ = ["wait_for"]
