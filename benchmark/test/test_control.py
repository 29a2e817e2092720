"""
Tests for the control-plane benchmark: its pure helpers, and one quick run
of the whole scenario (file store, three instances on a real etcd, the
leader killed) with 30 agents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmark._control_agents import memoized
from benchmark._control_report import (
    compare,
    kill_timeline,
    leader_name,
    percentile,
    plot,
    ratio,
)
from benchmark.control import Workers

ROOT = Path(__file__).resolve().parents[2]


def test_percentile_and_ratio():
    """Nearest-rank percentiles; a ratio is None without both figures."""
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 99) == 4.0
    assert percentile([], 50) is None
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None


def test_leader_name():
    """The leader key's value is ``<instance-name>/<uuid>``."""
    assert leader_name(b"control2/7e0b4f3c-0d6c-4a37-9f0c-2d5f1f5a1c11") == "control2"
    assert leader_name(b"host:4523/abc") == "host:4523"


def test_kill_timeline_counts_from_the_first_write_sent_after_the_kill():
    """
    The time to the first acknowledged write counts from the kill to the
    answer of the first write sent after the kill that got a 201; failures
    after the kill are counted with their codes.
    """
    attempts = [
        {"sent": 9.0, "answered": 9.1, "code": 201},
        {"sent": 9.9, "answered": 10.4, "code": 201},  # sent before the kill
        {"sent": 10.1, "answered": 10.6, "code": 503},
        {"sent": 10.2, "answered": 11.5, "code": None},
        {"sent": 10.7, "answered": 11.25, "code": 201},
        {"sent": 11.3, "answered": 11.4, "code": 201},
    ]
    timeline = kill_timeline(attempts, killed=10.0)
    assert timeline["kill_to_first_acknowledged_write_seconds"] == pytest.approx(1.25)
    assert timeline["writes_before_kill"] == 2
    assert timeline["writes_after_kill"] == 4
    assert timeline["writes_failed_after_kill"] == 2
    assert timeline["failed_after_kill_codes"] == ["503", "None"]


def test_kill_timeline_without_a_success():
    """No acknowledged write after the kill is None, not a number."""
    timeline = kill_timeline([{"sent": 1.0, "answered": 2.0, "code": 503}], killed=0.5)
    assert timeline["kill_to_first_acknowledged_write_seconds"] is None


def test_memoized_decodes_equal_documents_once():
    """Equal documents (whatever their key order) are decoded once."""
    calls = []

    def decode(document: Any) -> Any:
        calls.append(document)
        return object()

    once = memoized(decode)
    first = once({"a": 1, "b": [1, 2]})
    assert once({"b": [1, 2], "a": 1}) is first
    assert once({"a": 2}) is not first
    assert len(calls) == 2


def test_workers_arrival_is_the_last_worker():
    """A dataset reaches every agent when the last worker process says so."""

    class Protocol:
        def __init__(self, events: list[dict[str, Any]]) -> None:
            self.events = events

        def event(self, name: str) -> dict[str, Any] | None:
            return next((e for e in self.events if e["event"] == name), None)

    workers = Workers(
        [
            Protocol(
                [
                    {"event": "dataset", "id": "d1", "at": 5.0},
                    {"event": "synced", "seconds": 3.0},
                ]
            ),
            Protocol(
                [
                    {"event": "dataset", "id": "d1", "at": 7.0},
                    {"event": "dataset", "id": "d2", "at": 8.0},
                    {"event": "synced", "seconds": 4.0},
                ]
            ),
        ],  # fmt: skip
        [1, 2],
    )
    assert workers.arrivals({"d1", "d2"}) == {"d1": 7.0}
    assert workers.seconds("synced") == 4.0
    assert workers.seconds("connected") is None


def _phase(scale: float) -> dict[str, Any]:
    return {
        "instances": 1,
        "rest_write_latency_seconds": {"p50": 0.01 * scale, "p99": 0.02 * scale},
        "rest_read_latency_seconds": {"p50": 0.005 * scale, "p99": 0.01 * scale},
        "change_to_all_agents_seconds": {"p50": 0.1 * scale, "p99": 0.2 * scale},
        "control_cpu_seconds_per_wall_second": 0.2 * scale,
        "control_cpu_per_instance": {"control": 0.2 * scale},
        "initial_sync_seconds": 10.0 * scale,
        "cpu_series": {"control": [(1.0, 0.2 * scale)]},
        "propagation_series": [(1.0, 0.1 * scale)],
    }


def test_compare_divides_the_etcd_phase_by_the_baseline():
    """Every ratio is the etcd phase's figure over the file store's."""
    ratios = compare(_phase(1.0), _phase(3.0))
    assert ratios["rest_write_latency_p50_etcd_over_file"] == pytest.approx(3.0)
    assert ratios["change_to_all_agents_p99_ha_over_single"] == pytest.approx(3.0)
    assert ratios["control_cpu_per_instance_over_single"] == {
        "control": pytest.approx(3.0)
    }
    assert compare(None, _phase(1.0)) == {}


def test_plot_draws_three_panels():
    """The plot has propagation, CPU and kill panels, even with parts missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {
        "agents": 3,
        "baseline_file_store": _phase(1.0),
        "ha_etcd_store": {**_phase(2.0), "instances": 3},
        "leader_kill": {
            "writes_series": [(-0.5, 0.05, 201), (0.1, 0.2, 503), (0.3, 0.05, 201)],
            "kill_to_first_acknowledged_write_seconds": 0.35,
            "kill_to_new_leader_seconds": 4.2,
            "new_leader": "control2",
        },
        "ratios": {},
    }
    figure, axes = plt.subplots()
    plot(results)(axes)
    assert len(figure.axes) == 3
    plt.close(figure)
    figure, axes = plt.subplots()
    plot({"agents": 3, "baseline_file_store": _phase(1.0)})(axes)
    assert len(figure.axes) == 3
    plt.close(figure)


@pytest.mark.functional
def test_quick_run_of_every_phase(tmp_path: Path) -> None:
    """
    With 30 agents and a few seconds per phase, the scenario measures the
    file store, three control instances on a 3-member etcd (every change
    reaching the agents of every instance), and a leader kill after which a
    write on another instance succeeds and another instance becomes leader.
    """
    from flocker.testtools.etcd import etcd_available

    problem = etcd_available()
    if problem is not None:
        pytest.skip(problem)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.control",
            "--agents",
            "30",
            "--agent-processes",
            "1",
            "--duration",
            "3",
            "--warmup",
            "1",
            "--kill-after",
            "1",
            "--settle-limit",
            "60",
            "--results-dir",
            str(tmp_path),
            "--name",
            "quick",
        ],  # fmt: skip
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((tmp_path / "quick.json").read_text())["results"]
    assert (tmp_path / "quick.png").read_bytes()[:4] == b"\x89PNG"
    baseline, ha = results["baseline_file_store"], results["ha_etcd_store"]
    assert baseline["instances"] == 1 and ha["instances"] == 3
    assert sorted(ha["control_cpu_per_instance"]) == [
        "control1",
        "control2",
        "control3",
    ]
    for phase in (baseline, ha):
        spread = phase["change_to_all_agents_seconds"]
        assert spread["count"] == spread["writes_measured"] > 0
        assert phase["rest_write_latency_seconds"]["count"] > 0
    kill = results["leader_kill"]
    assert kill["kill_to_first_acknowledged_write_seconds"] is not None
    assert kill["new_leader"] in kill["survivors"]
    assert results["ratios"]["rest_write_latency_p50_etcd_over_file"] > 0
