"""
Benchmark: convergence latency of dataset creation on a local cluster.

A 2-node local cluster (``flocker.testtools.lab``, zfs backend) gets
``POST /v1/configuration/datasets`` twenty times (primaries alternating
between the nodes); each latency is the time from sending the request until
``GET /v1/state/datasets`` (polled every ~10 ms) shows the dataset with its
path on its primary.  Target: median < 0.5 s.  In the same run, a bare
``zfs create`` in a node's pool (through ``subprocess``, nothing else) is
timed as the floor a dataset agent cannot beat, giving a ratio.

    benchmark/run convergence [--count 20] [--interval 0.01]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from benchmark._harness import Timer, summarize, write_results

TARGET_MEDIAN = 0.5


def exposed_on(entries: list[dict[str, Any]], dataset_id: str, node_uuid: str) -> bool:
    """Whether a state listing shows ``dataset_id`` with a path on ``node_uuid``."""
    return any(
        entry.get("dataset_id") == dataset_id
        and entry.get("primary") == node_uuid
        and entry.get("path")
        for entry in entries
    )


def wait_exposed(
    cluster: dict[str, Any],
    dataset_id: str,
    node_uuid: str,
    start: float,
    interval: float,
    timeout: float = 60,
) -> float:
    """Poll the state until the dataset is exposed; seconds since ``start``."""
    from flocker.testtools import lab

    while True:
        entries = lab.api_request(cluster, "GET", "/v1/state/datasets")
        now = time.monotonic()
        if exposed_on(entries, dataset_id, node_uuid):
            return now - start
        if now - start > timeout:
            raise RuntimeError(f"{dataset_id} not exposed on {node_uuid} after {timeout} s")
        time.sleep(interval)


def bare_zfs_create(pool: str, count: int) -> list[float]:
    """Seconds for ``zfs create`` of ``count`` plain datasets (destroyed after)."""
    samples = []
    for index in range(count):
        name = f"{pool}/bench-bare-{index}"
        with Timer() as timer:
            subprocess.run(["zfs", "create", name], check=True, capture_output=True)
        samples.append(timer.seconds)
        for _ in range(50):  # zfs-fuse: "dataset is busy" once, usually
            if not subprocess.run(
                ["zfs", "destroy", name], capture_output=True
            ).returncode:
                break
            time.sleep(0.1)
    return samples


def teardown(directory: str, keep_logs: str | None = None) -> None:
    """
    Stop a local cluster, empty its pools, then ``lab.down`` it.

    :param keep_logs: Copy every daemon's log directory here first.

    zfs-fuse refuses to destroy a pool that still holds filesystems, so the
    agents are stopped first and every dataset is destroyed by hand.
    """
    from benchmark.transfer import destroy_dataset
    from flocker.testtools import lab

    try:
        cluster = lab.load(directory)
    except lab.LabError:
        lab.down(directory)
        return
    for node in cluster["nodes"]:
        lab.stop_node_agents(node)
    if keep_logs:
        for name, logs in [("control", cluster["control"]["log_dir"])] + [
            (f"node{index + 1}", node["log_dir"])
            for index, node in enumerate(cluster["nodes"])
        ]:
            shutil.copytree(logs, os.path.join(keep_logs, name), dirs_exist_ok=True)
    for node in cluster["nodes"]:
        if cluster["backend"] != "zfs" or "pool_image" not in node:
            continue
        listed = subprocess.run(
            ["zfs", "list", "-H", "-d", "1", "-o", "name", node["pool"]],
            capture_output=True,
            text=True,
        ).stdout.split()
        for name in listed[1:]:
            try:
                destroy_dataset(name)
            except RuntimeError as error:
                print(f"teardown: {error}", file=sys.stderr)
    lab.down(directory)


def run(count: int, interval: float, keep_logs: str | None = None) -> dict[str, Any]:
    """Measure on a fresh local cluster; the results document."""
    from flocker.testtools import lab

    load_before = list(os.getloadavg())  # the machine is shared: say how busy
    directory = tempfile.mkdtemp(prefix="flocker-bench-conv-")
    try:
        cluster = lab.up(directory, nodes=2, backend="zfs")
        nodes = cluster["nodes"]
        latencies: list[float] = []
        post_seconds: list[float] = []
        for index in range(count):
            node = nodes[index % len(nodes)]
            dataset_id = str(uuid.uuid4())
            start = time.monotonic()
            lab.api_request(
                cluster,
                "POST",
                "/v1/configuration/datasets",
                {"primary": node["uuid"], "dataset_id": dataset_id},
            )
            post_seconds.append(time.monotonic() - start)
            latencies.append(wait_exposed(cluster, dataset_id, node["uuid"], start, interval))
            print(f"dataset {index + 1}: {latencies[-1] * 1000:.0f} ms", flush=True)
        baseline = bare_zfs_create(nodes[0]["pool"], count)
    finally:
        teardown(directory, keep_logs)
    latency = summarize(latencies)
    bare = summarize(baseline)
    return {
        "datasets": count,
        "poll_interval_seconds": interval,
        "latency_seconds": latency,
        "post_request_seconds": summarize(post_seconds),
        "bare_zfs_create_seconds": bare,
        "ratio_to_bare_zfs_create": latency["median"] / bare["median"],
        "target_median_seconds": TARGET_MEDIAN,
        "meets_target": latency["median"] < TARGET_MEDIAN,
        "samples": {"latency": latencies, "bare_zfs_create": baseline},
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }


def plot(results: dict[str, Any]) -> Any:
    """Each dataset's latency, the median, the target and the bare zfs create."""

    def draw(axes: Any) -> None:
        latencies = [s * 1000 for s in results["samples"]["latency"]]
        axes.bar(range(1, len(latencies) + 1), latencies, color="#2a7ab9", label="POST -> exposed in state")
        axes.axhline(results["latency_seconds"]["median"] * 1000, color="#2a7ab9", linestyle="--", label="median")
        axes.axhline(TARGET_MEDIAN * 1000, color="#c03030", linestyle=":", label="target median")
        axes.axhline(
            results["bare_zfs_create_seconds"]["median"] * 1000,
            color="#888888",
            label="bare zfs create (median)",
        )
        axes.set_xlabel("dataset")
        axes.set_ylabel("milliseconds")
        axes.set_title(
            f"Convergence latency: p50 {results['latency_seconds']['median'] * 1000:.0f} ms, "
            f"p95 {results['latency_seconds']['p95'] * 1000:.0f} ms "
            f"({results['ratio_to_bare_zfs_create']:.1f}x bare zfs create)"
        )
        axes.set_xticks(range(1, len(latencies) + 1))
        axes.set_ylim(0, max(latencies) * 1.4)
        axes.legend(loc="upper left", fontsize="small", ncol=2)

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario; write benchmark/results/convergence.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run convergence")
    parser.add_argument("--count", type=int, default=20, help="datasets (default 20)")
    parser.add_argument("--interval", type=float, default=0.01, help="poll interval, s")
    parser.add_argument("--keep-logs", help="copy the daemons' logs to this directory")
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("benchmark/run convergence: needs root (ZFS pools)")
    results = run(options.count, options.interval, options.keep_logs)
    paths = write_results("convergence", results, plot(results))
    latency = results["latency_seconds"]
    print(
        f"p50 {latency['median']:.3f} s, p95 {latency['p95']:.3f} s, max "
        f"{latency['max']:.3f} s; bare zfs create {results['bare_zfs_create_seconds']['median']:.3f} s "
        f"(ratio {results['ratio_to_bare_zfs_create']:.1f}); target p50 < {TARGET_MEDIAN} s "
        f"{'met' if results['meets_target'] else 'MISSED'} -> {paths[0]}"
    )


if __name__ == "__main__":
    main()
