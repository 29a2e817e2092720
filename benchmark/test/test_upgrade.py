"""
Tests for the pure parts of the update benchmark: which instances count as
updated, its options, how a load's requests are summarised (windows,
percentiles, failures with their times, a timeline, lost writes) and its
plot.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from benchmark._harness import write_results
from benchmark._load import (
    Request,
    each_client_in_order,
    failures,
    lost_writes,
    percentile,
    reported_health,
    summary,
    timeline,
)
from benchmark.upgrade import parse_options, plot, updated_nodes


def ok(name: str, sent: float, wait: float) -> Request:
    """An acknowledged request."""
    return Request(name, sent, sent + wait)


def failed(name: str, sent: float, wait: float, error: str) -> Request:
    """A failed request."""
    return Request(name, sent, sent + wait, error)


def test_an_instance_is_updated_once_its_container_has_the_marker_and_it_is_healthy() -> (
    None
):
    """
    Only nodes whose running container has the new environment and whose
    node reports the application healthy count as updated.
    """
    health = {"a": "healthy", "b": "healthy", "c": "starting", "d": None}
    environments = {
        "a": ["PATH=/bin", "REV=2"],
        "b": ["PATH=/bin", "REV=1"],
        "c": ["REV=2"],
        "d": ["REV=2"],
    }
    assert updated_nodes(health, environments, "REV=2") == {"a"}


def test_a_node_without_a_running_container_or_a_report_is_not_updated() -> None:
    """A healthy report without a running container, or a container without a report, is not enough."""
    assert updated_nodes({"a": "healthy"}, {}, "REV=2") == set()
    assert updated_nodes({}, {"a": ["REV=2"]}, "REV=2") == set()
    assert updated_nodes({"a": "healthy"}, {"a": ["REV=20"]}, "REV=2") == set()


def test_reported_health_keeps_the_named_application_by_node() -> None:
    """The state listing's entries for the application give each node's health, None without one."""
    listing: list[dict[str, Any]] = [
        {"name": "web", "node_uuid": "n1", "health": "healthy"},
        {"name": "web", "node_uuid": "n2"},
        {"name": "db", "node_uuid": "n1", "health": "unhealthy"},
    ]
    assert reported_health(listing, "web") == {"n1": "healthy", "n2": None}
    assert reported_health([], "web") == {}


def test_options_default_to_a_short_run() -> None:
    """Without options: 10 s of load around each update, 4 clients, 3 baseline runs."""
    options = parse_options([])
    assert (
        options.seconds,
        options.clients,
        options.baseline_runs,
        options.keep_logs,
    ) == (
        10.0,
        4,
        3,
        None,
    )
    options = parse_options(
        ["--seconds", "2.5", "--clients", "1", "--keep-logs", "/tmp/x"]
    )
    assert (options.seconds, options.clients, options.keep_logs) == (2.5, 1, "/tmp/x")


@pytest.mark.parametrize(
    "argv",
    [
        ["--seconds", "0"],
        ["--seconds", "-1"],
        ["--seconds", "nan"],
        ["--seconds", "soon"],
        ["--clients", "0"],
        ["--clients", "1.5"],
        ["--baseline-runs", "0"],
        ["--sizes", "1GiB"],
    ],
)
def test_bad_options_exit_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option exits with status 2 and says what is wrong, before any cluster starts."""
    with pytest.raises(SystemExit) as exited:
        parse_options(argv)
    assert exited.value.code == 2
    assert "benchmark/run upgrade" in capsys.readouterr().err


def test_percentile_is_nearest_rank() -> None:
    """p50 and p99 pick a sample by nearest rank; one sample is every percentile."""
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(reversed(values), 0.99) == 99.0
    assert percentile([3.0], 0.01) == 3.0


def test_percentile_of_nothing_is_none_and_a_bad_fraction_is_refused() -> None:
    """No samples have no percentile; a fraction outside (0, 1] is an error."""
    assert percentile([], 0.99) is None
    for fraction in (0.0, -0.5, 1.5, 99.0):
        with pytest.raises(ValueError, match="fraction"):
            percentile([1.0], fraction)


def test_summary_counts_the_requests_sent_in_its_window() -> None:
    """
    A window counts the requests sent in it (not those answered in it),
    their failures, the acknowledged ones per second, and the latency of
    acknowledged ones; the longest wait includes failures.
    """
    requests = [
        ok("c0-0", 0.5, 0.1),
        ok("c0-1", 1.0, 0.2),
        failed("c0-2", 1.5, 3.0, "HTTP 500"),
        ok("c0-3", 2.0, 0.4),
        ok("c0-4", 3.0, 0.1),
    ]
    window = summary(requests, 1.0, 3.0)
    assert window["requests"] == 3
    assert (window["acknowledged"], window["failed"]) == (2, 1)
    assert window["requests_per_second"] == 1.0
    assert window["p50_seconds"] == pytest.approx(0.2)
    assert window["p99_seconds"] == pytest.approx(0.4)
    assert window["max_seconds"] == pytest.approx(0.4)
    assert window["longest_wait_seconds"] == pytest.approx(3.0)


def test_an_empty_window_has_no_latency_and_a_backwards_one_is_refused() -> None:
    """A window with no request has zero counts and no percentiles; end before start is an error."""
    empty = summary([ok("c0-0", 5.0, 0.1)], 0.0, 1.0)
    assert (empty["requests"], empty["requests_per_second"]) == (0, 0.0)
    assert empty["p99_seconds"] is None and empty["longest_wait_seconds"] is None
    with pytest.raises(ValueError, match="window"):
        summary([], 2.0, 2.0)


def test_failures_say_which_request_when_and_why() -> None:
    """Each failed request is listed with its times relative to the origin, its wait and its error."""
    requests = [
        ok("c0-0", 10.0, 0.1),
        failed("c1-7", 12.0, 0.5, "ConnectionResetError"),
    ]
    assert failures(requests, origin=11.0) == [
        {
            "request": "c1-7",
            "sent_at_seconds": 1.0,
            "failed_at_seconds": 1.5,
            "waited_seconds": 0.5,
            "error": "ConnectionResetError",
        }
    ]
    assert failures([ok("c0-0", 1.0, 0.1)], origin=0.0) == []


def test_timeline_bins_requests_by_time_sent_keeping_empty_bins() -> None:
    """
    Bins are relative to the origin (negative before it), hold the count,
    the failures and the acknowledged latency, and the empty ones between
    requests are kept with no latency.
    """
    requests = [
        ok("c0-0", 9.6, 0.2),
        ok("c0-1", 10.1, 0.1),
        failed("c0-2", 10.2, 1.0, "timeout"),
        ok("c0-3", 11.7, 0.3),
    ]
    bins = timeline(requests, origin=10.0, width=0.5)
    assert [b["at_seconds"] for b in bins] == [-0.5, 0.0, 0.5, 1.0, 1.5]
    assert [b["requests"] for b in bins] == [1, 2, 0, 0, 1]
    assert [b["failed"] for b in bins] == [0, 1, 0, 0, 0]
    assert bins[1]["max_seconds"] == pytest.approx(0.1)
    assert bins[2]["p50_seconds"] is None and bins[2]["max_seconds"] is None


def test_timeline_of_nothing_is_empty_and_needs_a_positive_width() -> None:
    """No requests give no bins; a bin width of 0 or less is refused."""
    assert timeline([], origin=0.0) == []
    with pytest.raises(ValueError, match="bin"):
        timeline([ok("c0-0", 0.0, 0.1)], origin=0.0, width=0.0)


def test_lost_writes_are_acknowledged_requests_missing_from_the_log() -> None:
    """A failed request missing from the log is not lost; an acknowledged one is."""
    requests = [
        ok("c0-0", 0.0, 0.1),
        failed("c0-1", 1.0, 0.1, "HTTP 500"),
        ok("c1-0", 0.5, 0.1),
    ]
    assert lost_writes(requests, ["c0-0", "c1-0", "health"]) == []
    assert lost_writes(requests, ["c1-0"]) == ["c0-0"]


def test_clients_interleave_but_each_one_is_in_order() -> None:
    """Clients' writes may interleave in the log; one client's writes out of order are found."""
    requests = [ok("c0-0", 0.0, 0.1), ok("c1-0", 0.05, 0.1), ok("c0-1", 0.2, 0.1)]
    assert each_client_in_order(requests, ["c1-0", "c0-0", "health", "c0-1"])
    assert not each_client_in_order(requests, ["c0-1", "c1-0", "c0-0"])
    # Failed or missing writes do not count against the order.
    assert each_client_in_order(
        requests + [failed("c0-2", 0.4, 1, "x")], ["c0-0", "c0-1"]
    )


def example_update(update_seconds: float, failed_requests: int) -> dict[str, Any]:
    """One update's figures, as ``measure_update`` gives them."""
    bins = [
        {"at_seconds": -0.5, "requests": 10, "failed": 0, "p50_seconds": 0.01, "max_seconds": 0.02},
        {"at_seconds": 0.0, "requests": 4, "failed": failed_requests, "p50_seconds": 0.2, "max_seconds": 1.2},
        {"at_seconds": 0.5, "requests": 0, "failed": 0, "p50_seconds": None, "max_seconds": None},
    ]  # fmt: skip
    return {
        "timeline": bins,
        "update_seconds": update_seconds,
        "failed_requests": failed_requests,
        "p99_during_to_before_ratio": 60.0,
        "update_to_container_start_ratio": update_seconds / 0.3,
    }


def test_the_plot_draws_both_updates_and_their_ratios(tmp_path: Any) -> None:
    """The figure is written from the results alone, failures and empty bins included."""
    results = {
        "stateless": example_update(6.0, 2),
        "stateful": example_update(2.5, 0),
        "container_start_seconds": {"median": 0.3},
        "failed_requests": 2,
        "lost_acknowledged_writes": 0,
    }
    json_path, png_path = write_results(
        "upgrade", results, plot(results), str(tmp_path)
    )
    assert png_path is not None and os.path.getsize(png_path) > 0
    with open(json_path) as handle:
        assert json.load(handle)["results"]["failed_requests"] == 2
