"""
Benchmark: automatic failover after a node is lost, and failback.

On a 3-node local cluster (``flocker.testtools.lab``, zfs backend, the
default ``fence-after`` and ``--failover-after``), each run deploys a
counter application (:data:`flocker.runtime.testimages.COUNTER_IMAGE`) with
a dataset on node 1, writes 32 MiB into it, keeps standing replicas on
nodes 2 and 3 (a round every second, ``"failover": "automatic"``), and
sends numbered writes through node 3's published port (the routing layer
takes them wherever the application runs).  Then node 1 loses power
(``admin/lab stop-node 1 --power-cut``: agents and containers SIGKILLed,
its packets dropped).  Nothing asks the REST API for a failover.  Measured
per run:

* **kill to answer**: seconds from the power cut until the application
  answers again through node 2's or node 3's port, split into the part the
  control service waits on purpose (``failover_after``), the rest until
  the failover is logged, and from there until the application answers;
* **lost writes against lag**: acknowledged writes the new primary does
  not hold, against the replication lag at the kill (how old the snapshot
  it started from was) and the writes acknowledged in that time;
* **failback bytes over divergence**: the new primary writes a new 4 MiB
  file, node 1 comes back, sets its divergence aside and rejoins as a
  replica; the bytes the new primary then sends it, over the 4 MiB written
  since the failover (zfs-fuse has no ``written@`` property to measure it).
  Goal ≤ 1.1 (a full resend would be the whole 36 MiB dataset).

Baseline in the same run: ``failover_after`` itself (the floor of any
automatic failover) and how long the counter takes to answer after
``docker create`` on this machine.  Goal: median kill-to-answer ≤ 30 s.

    benchmark/run failover [--runs 3] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from benchmark._harness import summarize, write_results
from benchmark.appmove import container_start_baseline, remove_application
from benchmark.replication import snapshot_time

MiB = 1024 * 1024
#: Bytes written into each dataset before the node is lost.
BULK = 32 * MiB
#: Bytes the new primary writes after the failover (its divergence).
AFTER = 4 * MiB


def write_losses(
    acknowledged: list[tuple[str, float]],
    held: list[str],
    killed: float,
    started_from: float | None,
) -> dict[str, Any]:
    """
    What a failover lost of the acknowledged writes.

    :param acknowledged: (write, wall time acknowledged), in order.
    :param held: The writes the new primary's log holds, in order.
    :param killed: When the old primary was lost.
    :param started_from: When the snapshot the new primary started from
        was taken (``None``: unknown).
    :return: ``lost``: writes acknowledged before the kill that the new
        primary lacks; ``within_lag``: writes acknowledged between the
        snapshot and the kill (those a failover may lose); ``lost_outside_lag``:
        lost writes acknowledged before the snapshot (must be none);
        ``no_holes``: the held writes acknowledged before the kill are w0,
        w1, … without a gap.
    """
    kept = set(held)
    lost = [w for w, t in acknowledged if t < killed and w not in kept]
    # Writes acknowledged after the kill went to the new primary, numbered
    # after the lost ones: only the writes before them must be w0, w1, …
    # (each once: a write sent again after a late answer is logged twice).
    after = {w for w, t in acknowledged if t >= killed}
    before = list(dict.fromkeys(w for w in held if w not in after))
    within = [
        w for w, t in acknowledged
        if started_from is not None and started_from <= t < killed
    ]
    outside = [
        w for w, t in acknowledged
        if w in lost and started_from is not None and t < started_from - 1
    ]
    return {
        "acknowledged_before_kill": sum(1 for _, t in acknowledged if t < killed),
        "lost": lost,
        "within_lag": within,
        "lost_outside_lag": outside,
        "no_holes": before == [f"w{n}" for n in range(len(before))],
    }


def measure_run(cluster: dict[str, Any], failover_after: float, index: int) -> dict[str, Any]:
    """Lose node 1 under a writer, fail over by itself, bring node 1 back."""
    from flocker.node.test import test_acceptance_failover as f
    from flocker.node.test.test_acceptance_containers import deploy_counter
    from flocker.node.test.test_acceptance_datasets import api, wait_for
    from flocker.node.test.test_acceptance_replication import replicated_since
    from flocker.testtools import lab

    one, two, three = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, one)
    f.write_bulk(cluster, dataset_id, BULK)
    f.replicate_automatically(cluster, dataset_id, [two, three])
    writer = f.TimedWriter(three["address"], port)
    writer.start()
    wait_for(lambda: len(writer.acknowledged) >= 50, 120, "50 acknowledged writes")
    at = time.time()
    wait_for(lambda: replicated_since(cluster, dataset_id, [two, three], at + 1), 120,
             "a replication round on both replicas")
    time.sleep(3)  # replication running steadily under the writer

    killed = time.time()
    lab.stop_node(cluster["dir"], 1, power_cut=True)
    wait_for(lambda: f.answering_through(cluster, port, [two, three]), 300,
             "the application to answer from another node")
    answered = time.time()
    time.sleep(2)
    writer.stop()
    entry = wait_for(lambda: (c := f.configured(cluster, dataset_id)) and c["primary"] != one["uuid"] and c,
                     30, "a new primary")
    new = f.node_named(cluster, entry["primary"])
    [failover] = f.automatic_failovers(cluster, dataset_id)
    created = snapshot_time(entry["failover_snapshot"])
    lines = f.requests_log(cluster, dataset_id)
    losses = write_losses(writer.acknowledged, lines, killed, created)
    lost, in_lag = losses["lost"], losses["within_lag"]

    # The new primary writes on (zfs-fuse has no ``written@`` property, so
    # what it wrote since the failover is what this benchmark wrote there:
    # a new file of AFTER bytes, plus a few request lines); node 1 comes
    # back and rejoins.
    f.write_bulk(cluster, dataset_id, AFTER, name="after-failover")
    diverged_by = AFTER
    returned = time.time()
    lab.start_node(cluster["dir"], 1)
    wait_for(lambda: f.rejoined(cluster, dataset_id, one), 300, "node 1 to rejoin as a replica")
    since = time.time()
    wait_for(lambda: replicated_since(cluster, dataset_id, [one], since + 1), 120,
             "a replication round to node 1")
    rejoined = time.time()
    sent = f.bytes_pushed_to(new, one["address"], returned)
    set_aside = f.set_aside_snapshots(cluster, dataset_id, one)

    result = {
        "run": index,
        "dataset_id": dataset_id,
        "new_primary": new["uuid"],
        "kill_to_answer_seconds": answered - killed,
        "failover_after_seconds": failover_after,
        "kill_to_failover_logged_seconds": failover["timestamp"] - killed,
        "failover_to_answer_seconds": answered - failover["timestamp"],
        "failover_reason": failover.get("reason"),
        "replication_lag_at_kill_seconds": None if created is None else killed - created,
        "acknowledged_before_kill": losses["acknowledged_before_kill"],
        "acknowledged_within_lag": len(in_lag),
        "lost_acknowledged_writes": len(lost),
        "lost_outside_lag": len(losses["lost_outside_lag"]),
        "lines_held": len(lines),
        "no_holes": losses["no_holes"],
        "failback_seconds": rejoined - returned,
        "failback_bytes": sent,
        "divergence_bytes": diverged_by,
        "failback_over_divergence": sent / diverged_by if diverged_by else None,
        "dataset_bytes": BULK + AFTER,
        "set_aside_snapshots": [s["name"] for s in set_aside],
    }
    print(
        f"run {index}: answered {result['kill_to_answer_seconds']:.1f} s after the kill "
        f"(failover logged at {result['kill_to_failover_logged_seconds']:.1f} s, "
        f"failover_after {failover_after:g} s); lost {len(lost)} acknowledged writes "
        f"({len(in_lag)} acknowledged within the lag of "
        f"{result['replication_lag_at_kill_seconds']}); failback sent {sent} bytes for "
        f"{diverged_by} written ({result['failback_over_divergence']})",
        flush=True,
    )
    remove_application(cluster, name, dataset_id)
    wait_for(lambda: not any(e["dataset_id"] == dataset_id
                             for e in api(cluster, "GET", "/v1/state/datasets")), 120,
             "the dataset to be gone")
    return result


def run(runs: int, keep_logs: str | None = None) -> dict[str, Any]:
    """Measure ``runs`` failovers and failbacks on one fresh local cluster."""
    from benchmark.convergence import teardown
    from flocker.control.script import ControlOptions
    from flocker.testtools import lab

    load_before = list(os.getloadavg())
    baseline = summarize(container_start_baseline(3))
    failover_after = float(ControlOptions().failover_after)
    directory = tempfile.mkdtemp(prefix="flocker-bench-failover-")
    results = []
    try:
        cluster = lab.up(directory, nodes=3, backend="zfs", network="198.18.2.")
        for index in range(1, runs + 1):
            results.append(measure_run(cluster, failover_after, index))
    finally:
        teardown(directory, keep_logs)
    answer = summarize([r["kill_to_answer_seconds"] for r in results])
    ratios = [r["failback_over_divergence"] for r in results if r["failback_over_divergence"]]
    return {
        "runs": results,
        "kill_to_answer_seconds": answer,
        "failover_after_seconds": failover_after,
        "kill_to_answer_over_failover_after": answer["median"] / failover_after,
        "container_start_seconds": baseline,
        "failover_to_answer_over_container_start": summarize(
            [r["failover_to_answer_seconds"] for r in results]
        )["median"] / baseline["median"],
        "lost_acknowledged_writes": [r["lost_acknowledged_writes"] for r in results],
        "acknowledged_within_lag": [r["acknowledged_within_lag"] for r in results],
        "failback_over_divergence": summarize(ratios) if ratios else None,
        "goal_median_kill_to_answer_seconds": 30,
        "goal_failback_over_divergence": 1.1,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }


def plot(results: dict[str, Any]) -> Any:
    """Each run's kill-to-answer time in its parts, and its failback ratio."""

    def draw(axes: Any) -> None:
        runs = results["runs"]
        labels = [f"run {r['run']}" for r in runs]
        wait = [r["failover_after_seconds"] for r in runs]
        detect = [max(0.0, r["kill_to_failover_logged_seconds"] - r["failover_after_seconds"]) for r in runs]
        start = [r["failover_to_answer_seconds"] for r in runs]
        axes.bar(labels, wait, label="failover_after (waited on purpose)")
        axes.bar(labels, detect, bottom=wait, label="until the failover is decided")
        axes.bar(labels, start, bottom=[a + b for a, b in zip(wait, detect, strict=True)],
                 label="promotion and application start")
        axes.axhline(30, linestyle="--", color="grey", label="goal: 30 s")
        for i, r in enumerate(runs):
            ratio = r["failback_over_divergence"]
            axes.annotate(
                f"failback {ratio:.2f}x" if ratio else "failback n/a",
                (i, r["kill_to_answer_seconds"]), ha="center", va="bottom",
            )
        axes.set_ylabel("seconds from power cut to answering again")
        axes.set_title("Automatic failover after losing a node (3 nodes, zfs-fuse)")
        axes.legend(loc="lower right", fontsize="small")

    return draw


def main(argv: list[str] | None = None) -> None:
    """``benchmark/run failover``."""
    parser = argparse.ArgumentParser(prog="benchmark/run failover", description=__doc__.split("\n")[1])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep-logs", help="copy the cluster's logs here before tearing it down")
    options = parser.parse_args(argv)
    results = run(options.runs, options.keep_logs)
    paths = write_results("failover", results, plot(results))
    print(f"results: {', '.join(p for p in paths if p)}")
    if results["kill_to_answer_seconds"]["median"] > 30:
        print("goal missed: median kill-to-answer over 30 s", file=sys.stderr)
    broken = [r["run"] for r in results["runs"] if r["lost_outside_lag"] or not r["no_holes"]]
    if broken:
        sys.exit(f"runs {broken}: writes older than the starting snapshot lost, or holes")


if __name__ == "__main__":
    main()
