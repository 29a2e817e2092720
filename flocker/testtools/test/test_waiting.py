"""``wait_for``: polls until a predicate holds, and says what it waited for when it never does."""

import pytest

from flocker.testtools.waiting import wait_for


def test_returns_the_first_true_value() -> None:
    """The predicate's first true value is returned, after polling past false ones."""
    answers = iter([None, 0, "", "ready", "later"])
    assert wait_for(lambda: next(answers), timeout=5, interval=0) == "ready"


def test_times_out_naming_what_it_waited_for() -> None:
    """A predicate that never holds fails with an AssertionError naming the wait."""
    with pytest.raises(AssertionError, match="timed out waiting for the moon"):
        wait_for(lambda: False, timeout=0.05, what="the moon", interval=0.01)
