"""Unit tests for the move benchmark's pure helpers (sizes, samples, logs)."""

import pytest

from benchmark._harness import write_results
from benchmark.move import (
    GiB,
    MiB,
    first_holding,
    move_timeline,
    parse_size,
    parse_sizes,
    per_size,
    plot,
    windows,
)

A = "node-a"
B = "node-b"
DATASET = "d1"


def test_parse_size_units():
    """Binary suffixes with or without "iB"/"B", and plain bytes, are understood."""
    assert parse_size("1GiB") == GiB
    assert parse_size("64MiB") == 64 * MiB
    assert parse_size("512M") == 512 * MiB
    assert parse_size("1G") == GiB
    assert parse_size("0.5g") == GiB // 2
    assert parse_size("4096") == 4096
    assert parse_size("2KB") == 2048


@pytest.mark.parametrize("text", ["", "GiB", "abc", "1XiB", "-1M", "0"])
def test_parse_size_rejects(text):
    """Text that is not a positive size is refused with ValueError."""
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_sizes():
    """A comma-separated list keeps its order; an empty one is refused."""
    assert parse_sizes("64MiB, 256MiB,1GiB") == [64 * MiB, 256 * MiB, GiB]
    with pytest.raises(ValueError):
        parse_sizes(" , ")


def samples(*rows):
    """Samples from (time, holders) rows; each request takes 0.01 s."""
    return [(t - 0.01, t, frozenset(holders)) for t, holders in rows]


def test_windows_bounds():
    """A run of empty samples gives a lower and an upper bound around it."""
    observed = samples((1.0, [A]), (1.1, []), (1.2, []), (1.3, [B]))
    assert windows(observed, lambda h: not h) == pytest.approx(
        {"lower_seconds": 0.1, "upper_seconds": 0.29 - 0.0, "runs": 1}
    )


def test_windows_none():
    """Without a matching sample both bounds are zero."""
    observed = samples((1.0, [A]), (1.1, [A, B]), (1.2, [B]))
    assert windows(observed, lambda h: not h) == {
        "lower_seconds": 0.0,
        "upper_seconds": 0.0,
        "runs": 0,
    }
    overlap = windows(observed, lambda h: len(h) > 1)
    assert overlap["runs"] == 1
    assert overlap["upper_seconds"] == pytest.approx(0.19)


def test_windows_at_edges():
    """Runs at the start or end are bounded by their own samples."""
    observed = samples((1.0, []), (1.1, [A]), (1.2, []))
    result = windows(observed, lambda h: not h)
    assert result["runs"] == 2
    assert result["lower_seconds"] == 0.0
    assert result["upper_seconds"] == pytest.approx((1.09 - 0.99) + (1.2 - 1.1))


def test_first_holding():
    """The first sample naming the node gives its reply time; none gives None."""
    observed = samples((1.0, [A]), (1.5, [A, B]), (2.0, [B]))
    assert first_holding(observed, B) == 1.5
    assert first_holding(observed, "other") is None


def action(task, level, action_type, status, timestamp, **fields):
    """An eliot action message."""
    return {
        "task_uuid": task,
        "task_level": level,
        "action_type": action_type,
        "action_status": status,
        "timestamp": timestamp,
        **fields,
    }


def logs():
    """Source and destination logs of a move with one bulk and a final round."""
    push = "flocker:node:dataset:push"
    snap = "flocker:volume:snapshot"
    send = "flocker:volume:transfer:send"
    receive = "flocker:volume:transfer:receive"
    source = [
        action("t", [5, 1], push, "started", 10.0, dataset_id=DATASET),
        action("t", [5, 2, 1], snap, "started", 10.1, dataset_id=DATASET, snapshot="s1"),
        action("t", [5, 2, 2], snap, "succeeded", 10.2),
        action("t", [5, 3, 1], send, "started", 10.2, dataset_id=DATASET, snapshot="s1", base=None),
        action("t", [5, 3, 4], send, "succeeded", 12.0, bytes=1000),
        action("t", [5, 4, 1], snap, "started", 12.0, dataset_id=DATASET, snapshot="s2"),
        action("t", [5, 4, 2], snap, "succeeded", 12.1),
        action("t", [5, 5, 1], send, "started", 12.1, dataset_id=DATASET, snapshot="s2", base="s1"),
        action("t", [5, 5, 4], send, "succeeded", 12.7, bytes=10),
        action("t", [5, 6], push, "succeeded", 12.8),
    ]
    destination = [
        action("t", [5, 3, 3, 1], receive, "started", 10.25, dataset_id=DATASET, snapshot="s1"),
        action("t", [5, 3, 3, 2], receive, "succeeded", 11.9),
        action("t", [5, 5, 3, 1], receive, "started", 12.15, dataset_id=DATASET, snapshot="s2"),
        action("t", [5, 5, 3, 2, 1], "flocker:volume:receive", "started", 12.16),
        action("t", [5, 5, 3, 2, 2], "flocker:volume:receive", "succeeded", 12.2),
        action("t", [5, 5, 3, 3, 1], "flocker:volume:receive_finish", "started", 12.2),
        action("t", [5, 5, 3, 3, 2], "flocker:volume:receive_finish", "succeeded", 12.6),
        action("t", [5, 5, 3, 4], receive, "succeeded", 12.65),
        action("r", [1], "flocker:control:amp:report_state", "started", 12.9),
        action("r", [3], "flocker:control:amp:report_state", "succeeded", 12.95),
    ]
    return source, destination


def test_move_timeline():
    """
    The window runs from the final snapshot's start on the source to the
    end of the destination's receive of it (stored) and of its next state
    report (reported), with the final round broken down.
    """
    source, destination = logs()
    timeline = move_timeline(source, destination, DATASET, 0)
    assert timeline["handoff_at"] == 12.0
    assert timeline["stored_at"] == 12.65
    assert timeline["reported_at"] == 12.95
    assert timeline["unavailable_until_stored_seconds"] == pytest.approx(0.65)
    assert timeline["unavailable_until_reported_seconds"] == pytest.approx(0.95)
    final = timeline["final_round"]
    assert final["snapshot_seconds"] == pytest.approx(0.1)
    assert final["send_seconds"] == pytest.approx(0.6)
    assert final["receive_stream_seconds"] == pytest.approx(0.04)
    assert final["receive_finish_seconds"] == pytest.approx(0.4)
    assert final["stored_to_reported_seconds"] == pytest.approx(0.3)
    assert [r["bytes"] for r in timeline["rounds"]] == [1000, 10]


def test_move_timeline_ignores_earlier_moves():
    """Only actions at or after ``after`` count."""
    source, destination = logs()
    with pytest.raises(ValueError, match="no push"):
        move_timeline(source, destination, DATASET, 100)


def test_move_timeline_failed_receive():
    """A final receive that failed is not a completed move."""
    source, destination = logs()
    destination[7] = dict(destination[7], action_status="failed")
    with pytest.raises(ValueError, match="did not store"):
        move_timeline(source, destination, DATASET, 0)


def test_move_timeline_unreported():
    """Without a later state report, the reported figures are None."""
    source, destination = logs()
    timeline = move_timeline(source, destination[:-2], DATASET, 0)
    assert timeline["reported_at"] is None
    assert timeline["unavailable_until_reported_seconds"] is None


def fake_move(size, total, stored, reported, api=0.05):
    """The figures measure_move records for one move."""
    return {
        "data_bytes": size,
        "total_seconds": total,
        "local_pipe_seconds": total / 2,
        "api_unavailable": {"lower_seconds": 0.0, "upper_seconds": api, "runs": 1},
        "log": {
            "unavailable_until_stored_seconds": stored,
            "unavailable_until_reported_seconds": reported,
        },
    }


def test_per_size_and_plot(tmp_path):
    """
    Repetitions of one size are summarized together, sizes in order; a move
    whose report was not seen is left out of the reported summary; the plot
    draws.
    """
    moves = [
        fake_move(GiB, 12.0, 0.5, 0.9),
        fake_move(64 * MiB, 4.0, 0.6, None),
        fake_move(GiB, 14.0, 0.7, 1.1),
    ]
    table = per_size(moves)
    assert [row["data_bytes"] for row in table] == [64 * MiB, GiB]
    assert table[0]["log_unavailable_until_reported_seconds"] is None
    assert table[1]["repetitions"] == 2
    assert table[1]["total_seconds"]["median"] == 13.0
    assert table[1]["log_unavailable_until_reported_seconds"]["max"] == 1.1
    results = {
        "per_size": table,
        "moves": moves,
        "repetitions": 2,
        "worst_unavailable_seconds": 1.1,
    }
    _, png = write_results("move", results, plot(results), directory=str(tmp_path))
    assert open(png, "rb").read(4) == b"\x89PNG"
