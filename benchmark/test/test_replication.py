"""Unit tests for the replication benchmark's pure parts (percentiles, logs, CPU)."""

import pytest

from benchmark._harness import write_results
from benchmark.replication import (
    PUSH,
    REPLICATE,
    SEND,
    cpu_seconds,
    failure_kinds,
    lag_figures,
    lag_summary,
    percentile,
    plot,
    ratio,
    replica_efficiency,
    rounds,
    seconds_text,
    snapshot_time,
    unavailable,
    written_before,
)

DATASET = "d1"
OTHER = "d2"


def test_percentile_interpolates():
    """Percentiles interpolate linearly between the nearest ranks, in any order."""
    samples = [4.0, 1.0, 3.0, 2.0, 5.0]
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 50) == 3.0
    assert percentile(samples, 100) == 5.0
    assert percentile(samples, 25) == 2.0
    assert percentile(samples, 99) == pytest.approx(4.96)
    assert percentile([1.0, 2.0], 50) == 1.5


def test_percentile_of_one_sample():
    """A single sample is every percentile."""
    assert percentile([7.0], 0) == percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("samples,p", [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects(samples, p):
    """No samples, or a percentile outside 0-100, is a ValueError."""
    with pytest.raises(ValueError):
        percentile(samples, p)


def test_lag_summary_counts_missing():
    """Samples with no reported lag are counted apart and left out of the figures."""
    summary = lag_summary([1.0, None, 3.0])
    assert summary["count"] == 2
    assert summary["missing"] == 1
    assert summary["p50"] == 2.0
    assert summary["max"] == 3.0
    assert lag_summary([None])["p99"] is None


def test_snapshot_time():
    """A replication snapshot's name gives when it was taken; other names give None."""
    assert snapshot_time("flocker-replica-1796290827139645663-2b3beb") == pytest.approx(
        1796290827.139645663
    )
    assert snapshot_time("flocker-move-1796290827139645663-2b3beb") is None
    assert snapshot_time("flocker-replica-abc-2b3beb") is None
    assert snapshot_time(None) is None


def test_lag_figures_pool_both_replicas_and_correct_from_names():
    """
    Both replicas' state lags are pooled; the name-derived lag replaces the
    whole-second creation time with the time in the snapshot's name.
    """
    snapshot = "flocker-replica-1000500000000-aaaaaa"  # taken at 1000.5
    samples = [
        (0.0, {"a": {"lag_seconds": 2.0, "replicated_at": 1000.0, "last_snapshot": snapshot},
               "b": {"lag_seconds": 4.0, "replicated_at": 1000.0, "last_snapshot": snapshot}}),
        (0.5, {"a": {"lag_seconds": 1.0, "replicated_at": 1000.0, "last_snapshot": snapshot}}),
    ]  # fmt: skip
    figures = lag_figures(samples, ["a", "b"])
    assert figures["state_lag"]["count"] == 3
    assert figures["state_lag"]["missing"] == 1
    assert figures["state_lag"]["p50"] == 2.0
    assert figures["state_lag_per_replica"]["b"]["max"] == 4.0
    assert figures["name_lag"]["p50"] == pytest.approx(1.5)
    assert figures["series"]["b"] == [[0.0, 4.0], [0.5, None]]


def test_cpu_seconds_parses_proc_stat():
    """utime+stime and cutime+cstime are read after the command name, even one with spaces."""
    stat = (
        "1234 (python ) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 3 0"
    )
    assert cpu_seconds(stat, 100) == {"self": 3.0, "children": 0.5}


def action(task, level, action_type, status, timestamp=0.0, **fields):
    """An eliot action message."""
    return {
        "task_uuid": task,
        "task_level": level,
        "action_type": action_type,
        "action_status": status,
        "timestamp": timestamp,
        **fields,
    }


def replicate_round(task, at, dataset, sends):
    """A replication round's messages: one send per (bytes, status) in ``sends``."""
    snapshot = f"flocker-replica-{int(at * 1e9)}-000000"
    messages = [action(task, [5, 1], REPLICATE, "started", at, dataset_id=dataset)]
    for index, (count, status) in enumerate(sends, start=3):
        messages.append(
            action(task, [5, index, 1], SEND, "started", at + 0.1, dataset_id=dataset,
                   snapshot=snapshot, base=None, peer=f"10.0.0.{index}:1")
        )  # fmt: skip
        # An unrelated nested action of the same task must not count.
        messages.append(
            action(task, [5, index, 2, 1], "flocker:volume:send", "started", at)
        )
        end = (
            {"bytes": count, "result": "ok"}
            if status == "succeeded"
            else {"exception": "builtins.OSError", "reason": "cut off"}
        )
        messages.append(action(task, [5, index, 4], SEND, status, at + 0.5, **end))
    messages.append(action(task, [5, len(sends) + 3], REPLICATE, "succeeded", at + 0.6))
    return messages


def test_rounds_sum_succeeded_sends_of_the_dataset():
    """
    Each round of the dataset adds up the bytes of its succeeded sends (the
    success message has no dataset id); failed sends (whose reasons are
    kept), other datasets' rounds and sends outside a round are left out.
    """
    log = (
        replicate_round("t1", 10.0, DATASET, [(1000, "succeeded"), (1200, "succeeded")])
        + replicate_round("t2", 11.0, OTHER, [(5000, "succeeded")])
        + replicate_round("t3", 12.0, DATASET, [(700, "succeeded"), (0, "failed")])
        # A send of the same dataset in another action (a move's push).
        + [action("t4", [2, 1], PUSH, "started", 13.0, dataset_id=DATASET),
           action("t4", [2, 2, 1], SEND, "started", 13.1, dataset_id=DATASET, snapshot="m"),
           action("t4", [2, 2, 2], SEND, "succeeded", 13.2, bytes=99),
           action("t4", [2, 3], PUSH, "succeeded", 13.3)]
    )  # fmt: skip
    found = rounds(log, REPLICATE, DATASET)
    assert [r["bytes"] for r in found] == [2200, 700]
    assert [r["sends"] for r in found] == [2, 1]
    assert [r["failed_sends"] for r in found] == [0, 1]
    assert found[1]["failures"] == ["cut off"]
    assert found[0]["snapshots"] == ["flocker-replica-10000000000-000000"]
    assert [r["bytes"] for r in rounds(log, PUSH, DATASET)] == [99]


def test_rounds_between_times():
    """Only rounds that started between ``after`` and ``until`` count."""
    log = (
        replicate_round("t1", 10.0, DATASET, [(1, "succeeded")])
        + replicate_round("t2", 20.0, DATASET, [(2, "succeeded")])
        + replicate_round("t3", 30.0, DATASET, [(4, "succeeded")])
    )
    assert [r["bytes"] for r in rounds(log, REPLICATE, DATASET, 15.0, 25.0)] == [2]


def test_rounds_same_task_other_level():
    """A send at a level outside the round's action, in the same task, is not counted."""
    log = replicate_round("t1", 10.0, DATASET, [(10, "succeeded")]) + [
        action("t1", [6, 1], SEND, "started", 11.0, dataset_id=DATASET, snapshot="x"),
        action("t1", [6, 2], SEND, "succeeded", 11.5, bytes=1_000_000),
    ]
    assert [r["bytes"] for r in rounds(log, REPLICATE, DATASET)] == [10]


def samples(*rows):
    """State samples from (time, holders) rows; each request takes 0.01 s."""
    return [(t - 0.01, t, frozenset(holders)) for t, holders in rows]


def test_unavailable_from_source_gone_to_destination_exposing():
    """The window runs from the first sample without the source to the first with the destination."""
    observed = samples(
        (1.0, ["a"]), (1.02, []), (1.04, []), (1.06, ["b"]), (1.08, ["b"])
    )
    assert unavailable(observed, "a", "b") == pytest.approx(0.04)


def test_unavailable_overlap_and_incomplete():
    """Both exposed at once gives a negative window; a move never seen gives None."""
    observed = samples((1.0, ["a"]), (1.02, ["a", "b"]), (1.04, ["b"]))
    assert unavailable(observed, "a", "b") == pytest.approx(-0.02)
    assert unavailable(samples((1.0, ["a"])), "a", "b") is None


def test_written_before():
    """The bytes written by a moment are those of the last record at or before it."""
    progress = [(10.0, 100), (11.0, 200), (12.0, 300)]
    assert written_before(progress, 9.0) == 0
    assert written_before(progress, 11.0) == 200
    assert written_before(progress, 11.5) == 200
    assert written_before(progress, 99.0) == 300


def test_replica_efficiency_per_peer():
    """
    Each peer's succeeded sends are added up and compared with what was
    written before the newest snapshot it received; a stalled peer is
    measured up to where it stopped.
    """
    log = replicate_round(
        "t1", 10.0, DATASET, [(110, "succeeded"), (110, "succeeded")]
    ) + replicate_round("t2", 11.0, DATASET, [(105, "succeeded"), (0, "failed")])
    progress = [(9.5, 100), (10.5, 200), (11.5, 300)]
    peers = replica_efficiency(rounds(log, REPLICATE, DATASET), progress)
    first, second = peers["10.0.0.3:1"], peers["10.0.0.4:1"]
    assert first["bytes_sent"] == 215
    assert first["bytes_written_before_last_snapshot"] == 200
    assert first["sent_over_written"] == pytest.approx(1.075)
    assert second["bytes_sent"] == 110
    assert second["last_snapshot"] == "flocker-replica-10000000000-000000"
    assert second["sent_over_written"] == pytest.approx(1.1)


def test_failure_kinds():
    """Failures are counted by their parenthesized code, else by their start."""
    reasons = [
        "the receiver already has dataset d1: send an incremental stream (dataset-exists)",
        "the receiver already has dataset d2: send an incremental stream (dataset-exists)",
        "could not complete the receive: zfs mount -o ro p/d1 exited with status 1",
    ]
    assert failure_kinds(reasons) == {
        "dataset-exists": 2,
        "could not complete the receive: zfs mount -o ro p/d1 exited with status 1": 1,
    }


def test_seconds_text():
    """A figure prints with two decimals; a missing one as n/a."""
    assert seconds_text(1.234) == "1.23 s"
    assert seconds_text(None) == "n/a"


def test_ratio():
    """A ratio with a missing or zero denominator is None."""
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None


def move(size, total, gap):
    """One size's move figures, the baseline twice as slow."""
    return {
        "data_bytes": size,
        "with_replica": {"total_seconds": total, "unavailable_seconds": gap},
        "without_replica": {"total_seconds": total * 2, "unavailable_seconds": None},
    }


def test_plot_draws(tmp_path):
    """
    The plot draws from a results document, missing figures and a stalled
    replication included.
    """
    results = {
        "load": {
            "rate_bytes_per_second": 5e6,
            "lag_p50_seconds": 1.2,
            "lag_p99_seconds": 2.5,
            "lag": {"series": {"a": [[0.0, 1.0], [0.5, None]], "b": [[0.0, 2.0]]}},
            "seconds": 60.0,
            "cpu": {
                "primary_agent_with_replicas_seconds": 6.0,
                "primary_agent_without_replicas_seconds": 0.3,
                "extra_cpu_seconds_per_second": 0.095,
            },
            "wire": {
                "sent_over_twice_written": 0.8,
                "complete": False,
                "per_replica": {
                    "a": {"sent_over_written": 1.01},
                    "n3": {"sent_over_written": None},
                },
            },
        },
        "moves": [move(64 * 2**20, 2.0, 0.5), move(2**30, 2.2, 0.6)],
        "flatness_total_largest_over_smallest": 1.1,
    }
    _, png = write_results(
        "replication", results, plot(results), directory=str(tmp_path)
    )
    assert open(png, "rb").read(4) == b"\x89PNG"
