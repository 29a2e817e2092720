"""
The control benchmark's figures: percentiles, ratios against the baseline
phase, the writes around the leader kill, and the plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "GOAL_KILL_TO_WRITE",
    "GOAL_PROPAGATION_P99",
    "compare",
    "goals_met",
    "kill_timeline",
    "leader_name",
    "percentile",
    "plot",
    "ratio",
    "summary",
]

#: The issue's goals, in seconds.
GOAL_PROPAGATION_P99 = 1.0
GOAL_KILL_TO_WRITE = 5.0


def percentile(samples: Sequence[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of the samples, or None if empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or the baseline is 0."""
    if value is None or not baseline:
        return None
    return value / baseline


def leader_name(value: bytes) -> str:
    """The instance name in a leader key's value ``<instance-name>/<uuid>``."""
    return value.decode("utf-8").rsplit("/", 1)[0]


def kill_timeline(attempts: Sequence[dict[str, Any]], killed: float) -> dict[str, Any]:
    """
    What the writes around a kill show.

    :param attempts: one dict per write, with ``sent`` and ``answered``
        (monotonic seconds) and ``code`` (the HTTP status, ``None`` when no
        answer came).
    :param killed: when the kill was sent (monotonic seconds).
    :return: the seconds from the kill to the acknowledgement (201) of the
        first write sent after it (``None`` if none was), and counts and
        latencies of the writes before and after the kill.
    """
    before = [a for a in attempts if a["sent"] < killed]
    after = sorted(
        (a for a in attempts if a["sent"] >= killed), key=lambda a: a["sent"]
    )
    first = next((a for a in after if a["code"] == 201), None)
    failed_after = [a for a in after if a["code"] != 201]
    ok_before = [a["answered"] - a["sent"] for a in before if a["code"] == 201]
    ok_after = [a["answered"] - a["sent"] for a in after if a["code"] == 201]
    return {
        "kill_to_first_acknowledged_write_seconds": (
            None if first is None else first["answered"] - killed
        ),
        "writes_before_kill": len(before),
        "writes_failed_before_kill": len(before) - len(ok_before),
        "writes_after_kill": len(after),
        "writes_failed_after_kill": len(failed_after),
        "failed_after_kill_codes": sorted({str(a["code"]) for a in failed_after}),
        "write_latency_before_kill_seconds": {
            "p50": percentile(ok_before, 50),
            "max": max(ok_before, default=None),
        },
        "write_latency_after_kill_seconds": {
            "p50": percentile(ok_after, 50),
            "max": max(ok_after, default=None),
        },
    }


def compare(
    baseline: dict[str, Any] | None, ha: dict[str, Any] | None
) -> dict[str, Any]:
    """The etcd phase's figures over the file-store baseline's (same run)."""
    if baseline is None or ha is None:
        return {}

    def over(key: str, stat: str) -> float | None:
        return ratio(ha[key][stat], baseline[key][stat])

    return {
        "rest_write_latency_p50_etcd_over_file": over(
            "rest_write_latency_seconds", "p50"
        ),
        "rest_write_latency_p99_etcd_over_file": over(
            "rest_write_latency_seconds", "p99"
        ),
        "rest_read_latency_p50_etcd_over_file": over(
            "rest_read_latency_seconds", "p50"
        ),
        "rest_read_latency_p99_etcd_over_file": over(
            "rest_read_latency_seconds", "p99"
        ),
        "change_to_all_agents_p50_ha_over_single": over(
            "change_to_all_agents_seconds", "p50"
        ),
        "change_to_all_agents_p99_ha_over_single": over(
            "change_to_all_agents_seconds", "p99"
        ),
        "control_cpu_all_instances_over_single": ratio(
            ha["control_cpu_seconds_per_wall_second"],
            baseline["control_cpu_seconds_per_wall_second"],
        ),
        "control_cpu_per_instance_over_single": {
            name: ratio(value, baseline["control_cpu_seconds_per_wall_second"])
            for name, value in ha["control_cpu_per_instance"].items()
        },
        "initial_sync_ha_over_single": ratio(
            ha["initial_sync_seconds"], baseline["initial_sync_seconds"]
        ),
    }


def goals_met(results: dict[str, Any]) -> dict[str, bool | None]:
    p99 = results.get("ha_etcd_store", {}).get("change_to_all_agents_seconds", {})
    kill = results.get("leader_kill", {}).get(
        "kill_to_first_acknowledged_write_seconds"
    )
    return {
        "change_to_all_agents_p99_under_1s": (
            None if p99.get("p99") is None else p99["p99"] < GOAL_PROPAGATION_P99
        ),
        "kill_to_first_write_under_5s": None
        if kill is None
        else kill < GOAL_KILL_TO_WRITE,
    }


def plot(results: dict[str, Any]) -> Any:
    """Draw propagation, CPU and the writes around the leader kill."""

    def draw(axes: Any) -> None:
        figure = axes.figure
        figure.set_size_inches(15, 5)
        axes.remove()
        spread, cpu, kill = figure.subplots(1, 3)
        _draw_propagation(spread, results)
        _draw_cpu(cpu, results)
        _draw_kill(kill, results)
        ratios = results.get("ratios", {})
        figure.suptitle(
            f"flocker-control, {results['agents']} agents reporting 1/s: file store "
            f"(1 instance) vs etcd ({results.get('ha_etcd_store', {}).get('instances', '-')}"
            f" instances); etcd/file write p50 x{_fmt(ratios.get('rest_write_latency_p50_etcd_over_file'))}"
            f", p99 x{_fmt(ratios.get('rest_write_latency_p99_etcd_over_file'))}; "
            f"propagation p99 x{_fmt(ratios.get('change_to_all_agents_p99_ha_over_single'))}",
            fontsize=10,
        )

    return draw


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _draw_propagation(axes: Any, results: dict[str, Any]) -> None:
    for key, label, color in (
        ("baseline_file_store", "file store, 1 instance", "tab:blue"),
        ("ha_etcd_store", "etcd, agents on every instance", "tab:red"),
    ):
        phase = results.get(key)
        if phase is None:
            continue
        stats = phase["change_to_all_agents_seconds"]
        series = phase["propagation_series"]
        axes.scatter(
            [t for t, _ in series],
            [s * 1000 for _, s in series],
            s=10,
            color=color,
            label=f"{label}: p50 {1000 * (stats['p50'] or 0):.0f} ms, "
            f"p99 {1000 * (stats['p99'] or 0):.0f} ms",
        )
    axes.axhline(
        GOAL_PROPAGATION_P99 * 1000, color="grey", linestyle="--", label="goal p99"
    )
    axes.set_xlabel("seconds into the measurement")
    axes.set_ylabel("ms until every agent has a change")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7)
    axes.set_title("change to all agents", fontsize=9)


def _draw_cpu(axes: Any, results: dict[str, Any]) -> None:
    baseline = results.get("baseline_file_store")
    if baseline is not None:
        series = baseline["cpu_series"]["control"]
        axes.plot(
            [t for t, _ in series], [c for _, c in series], color="black",
            linewidth=2, label="file store: the one instance",
        )  # fmt: skip
    ha = results.get("ha_etcd_store")
    if ha is not None:
        for name in ha["control_cpu_per_instance"]:
            series = ha["cpu_series"][name]
            axes.plot(
                [t for t, _ in series], [c for _, c in series], label=f"etcd: {name}"
            )
        if "etcd" in ha["cpu_series"]:
            series = ha["cpu_series"]["etcd"]
            axes.plot(
                [t for t, _ in series], [c for _, c in series], color="grey",
                linestyle=":", label="etcd members (sum)",
            )  # fmt: skip
    axes.set_xlabel("seconds into the measurement")
    axes.set_ylabel("CPU seconds per wall second")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7)
    axes.set_title("control CPU per instance", fontsize=9)


def _draw_kill(axes: Any, results: dict[str, Any]) -> None:
    kill = results.get("leader_kill")
    axes.set_title("writes to the survivors around the leader's SIGKILL", fontsize=9)
    if kill is None:
        return
    series = kill["writes_series"]
    ok = [(t, latency) for t, latency, code in series if code == 201]
    failed = [(t, latency) for t, latency, code in series if code != 201]
    axes.scatter([t for t, _ in ok], [x * 1000 for _, x in ok], s=6, color="tab:green",
                 label="201")  # fmt: skip
    if failed:
        axes.scatter([t for t, _ in failed], [x * 1000 for _, x in failed], s=10,
                     color="tab:red", marker="x", label="failed")  # fmt: skip
    axes.axvline(0, color="black", label="SIGKILL to the leader")
    first = kill["kill_to_first_acknowledged_write_seconds"]
    if first is not None:
        axes.axvline(first, color="tab:green", linestyle="--",
                     label=f"first write acknowledged after: {first * 1000:.0f} ms")  # fmt: skip
    leader = kill["kill_to_new_leader_seconds"]
    if leader is not None:
        axes.axvline(leader, color="tab:purple", linestyle="--",
                     label=f"new leader ({kill['new_leader']}): {leader:.2f} s")  # fmt: skip
    axes.set_xlabel("seconds since the kill (write sent)")
    axes.set_ylabel("write latency, ms")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7)


def summary(value: Any) -> Any:
    """The results without their series and error lists, for the terminal."""
    if isinstance(value, dict):
        return {
            k: summary(v)
            for k, v in value.items()
            if not k.endswith("_series") and k != "errors"
        }
    return value
