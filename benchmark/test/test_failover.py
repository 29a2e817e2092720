"""Tests for the pure parts of the failover benchmark."""

from benchmark.failover import plot, write_losses


def test_write_losses_counts_only_writes_acknowledged_before_the_kill():
    """
    Writes acknowledged after the snapshot the new primary started from and
    before the kill may be lost; those are within the lag, earlier ones must
    all be held.
    """
    acknowledged = [("w0", 1.0), ("w1", 2.0), ("w2", 5.0), ("w3", 6.0), ("w4", 9.0)]
    losses = write_losses(acknowledged, ["w0", "w1"], killed=7.0, started_from=4.0)
    assert losses["lost"] == ["w2", "w3"]
    assert losses["within_lag"] == ["w2", "w3"]
    assert losses["lost_outside_lag"] == []
    assert losses["acknowledged_before_kill"] == 4
    assert losses["no_holes"]


def test_write_losses_ignores_writes_numbered_after_the_lost_ones():
    """
    Writes acknowledged by the new primary after the kill come after the
    lost ones in its log; they are no hole.
    """
    acknowledged = [("w0", 1.0), ("w1", 2.0), ("w2", 5.0), ("w7", 30.0)]
    losses = write_losses(acknowledged, ["w0", "w1", "w7"], killed=7.0, started_from=4.0)
    assert losses["no_holes"]
    assert losses["lost"] == ["w2"]


def test_write_losses_reports_holes_and_losses_before_the_snapshot():
    """A held log with a gap, or a loss older than the starting snapshot, is reported."""
    acknowledged = [("w0", 1.0), ("w1", 2.0), ("w2", 3.0)]
    losses = write_losses(acknowledged, ["w0", "w2"], killed=10.0, started_from=8.0)
    assert not losses["no_holes"]
    assert losses["lost_outside_lag"] == ["w1"]


def test_plot_draws_every_run():
    """The plot has one stacked bar per run, whatever the figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = {
        "run": 1, "failover_after_seconds": 20.0, "kill_to_failover_logged_seconds": 21.0,
        "failover_to_answer_seconds": 2.5, "kill_to_answer_seconds": 23.5,
        "failback_over_divergence": 1.01,
    }
    figure, axes = plt.subplots()
    plot({"runs": [run, {**run, "run": 2, "failback_over_divergence": None}]})(axes)
    assert len(axes.patches) == 6
    plt.close(figure)
