"""Tests for the pure parts of the application-move benchmark."""

from benchmark.appmove import interruption


def test_interruption_finds_the_longest_gap():
    """The longest gap is reported with the writes around it, relative to the origin."""
    gap = interruption(["w0", "w1", "w5", "w6"], [10.0, 10.1, 12.6, 12.7], origin=10.05)
    assert gap["seconds"] == 12.6 - 10.1
    assert (gap["last_before"], gap["first_after"]) == ("w1", "w5")
    assert gap["last_before_at_seconds"] == 10.1 - 10.05
    assert gap["first_after_at_seconds"] == 12.6 - 10.05


def test_interruption_of_too_few_writes_is_zero():
    """With fewer than two acknowledged writes there is no gap."""
    assert interruption(["w0"], [1.0], origin=0.0) == {
        "seconds": 0.0, "last_before": None, "first_after": None,
    }
    assert interruption([], [], origin=0.0)["seconds"] == 0.0
