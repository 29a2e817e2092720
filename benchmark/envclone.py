"""
Benchmark: cloning a three-application staging environment with 2 GiB of data.

On a 2-node local cluster (``flocker.testtools.lab``, zfs backend) the
staging story's applications are deployed through the REST API: ``db`` (the
counter test image with a dataset) on node 1, ``search`` (the same, another
dataset) on node 2, and ``web`` (the counter's relay, linked to ``db``) on
node 1.  Each dataset gets half of ``--size`` of random data.  Then
``--environments`` environments are created one after the other, each with
one copy (``POST /v1/environments``), and for each one the benchmark
records:

* **api**: how long the request took (snapshots on both nodes plus the
  durable configuration change);
* **ready**: from the request until all three of the copy's applications
  accept connections on their own ports and answer (``web`` through its
  link to its own ``db``); readiness is polled with bare TCP connections
  every 20 ms, then confirmed with one request each;
* **extra space**: what the two pools' ``used`` grew by.

Baselines in the same run: the counter's start (``docker create`` to
answering, the floor for an application that must start) and a bare
``zfs snapshot`` + ``zfs clone`` of both datasets (the floor for the data).
Targets: ready < 2 s and extra space < 10 MiB per environment.

    benchmark/run envclone [--size 2GiB] [--environments 3] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmark._harness import summarize, write_results
from benchmark.move import MiB, fill, parse_sizes, wait_exposed

#: Targets of the issue, per environment.
READY_TARGET_SECONDS = 2.0
SPACE_TARGET_BYTES = 10 * MiB


def pools_used(cluster: dict[str, Any]) -> int:
    """The sum of every node's pool ``used`` bytes."""
    total = 0
    for node in cluster["nodes"]:
        out = subprocess.run(
            ["zfs", "get", "-Hp", "-o", "value", "used", node["pool"]],
            capture_output=True, text=True, check=True,
        ).stdout
        total += int(out.strip())
    return total


def settle() -> None:
    """Let zfs-fuse commit what it has (space figures lag behind writes)."""
    subprocess.run(["sync"], check=False)
    time.sleep(2)


def bare_clone_seconds(cluster: dict[str, Any], datasets: dict[str, str]) -> float:
    """A plain ``zfs snapshot`` + ``zfs clone`` of each dataset, timed; cleaned up."""
    started = time.monotonic()
    made = []
    for node_uuid, dataset_id in datasets.items():
        [node] = [n for n in cluster["nodes"] if n["uuid"] == node_uuid]
        source = f"{node['pool']}/{dataset_id}"
        clone = f"{node['pool']}/bench-baseline-{dataset_id[:8]}"
        subprocess.run(["zfs", "snapshot", f"{source}@bench-baseline"], check=True)
        subprocess.run(["zfs", "clone", f"{source}@bench-baseline", clone], check=True)
        made.append((source, clone))
    seconds = time.monotonic() - started
    for source, clone in made:
        subprocess.run(["zfs", "destroy", clone], check=False)
        subprocess.run(["zfs", "destroy", f"{source}@bench-baseline"], check=False)
    return seconds


def deploy_staging(cluster: dict[str, Any], size: int) -> dict[str, Any]:
    """The three applications, their datasets filled; names, ports, datasets."""
    from flocker.node.test.test_acceptance_containers import (
        deploy_counter,
        deploy_frontend,
        relay,
    )
    from flocker.node.test.test_acceptance_datasets import wait_for

    one, two = cluster["nodes"]
    db, db_data, db_port = deploy_counter(cluster, one, name="db")
    search, search_data, _ = deploy_counter(cluster, two, name="search")
    web, web_port = deploy_frontend(cluster, one, db_port)
    wait_for(lambda: relay(one["address"], web_port, "ready"), 180, "web to reach db")
    for node, dataset_id in ((one, db_data), (two, search_data)):
        path = wait_exposed(cluster, dataset_id, node["uuid"])
        print(f"writing {size // 2 // MiB} MiB into {dataset_id} on {node['address']}", flush=True)
        fill(path, size // 2, seed=len(dataset_id))
    return {
        "applications": [web, db, search],
        "datasets": {one["uuid"]: db_data, two["uuid"]: search_data},
    }


def clone_one(cluster: dict[str, Any], name: str, applications: list[str]) -> dict[str, Any]:
    """Create environment ``name`` with one copy; its timings."""
    from flocker.node.test.test_acceptance_containers import relay, request
    from flocker.node.test.test_acceptance_datasets import api

    by_uuid = {n["uuid"]: n for n in cluster["nodes"]}
    web, db, search = applications
    started = time.monotonic()
    environment = api(
        cluster, "POST", "/v1/environments",
        {"name": name, "applications": applications, "copies": 1},
    )
    answered = time.monotonic()
    [copy] = environment["copies"]
    apps = {a["origin"]: a for a in copy["applications"]}

    def address(original: str) -> tuple[str, int]:
        entry = apps[original]
        return by_uuid[entry["node_uuid"]]["address"], entry["ports"][0]["external"]

    def accepting(original: str) -> bool:
        # A bare TCP connection: polling through the relay (a CGI forking a
        # handful of processes per request) would load the 2-core machine
        # while the copies start.
        try:
            with socket.create_connection(address(original), timeout=0.25):
                return True
        except OSError:
            return False

    def all_answer() -> bool:
        return (
            all(accepting(original) for original in applications)
            and relay(*address(web), "probe", timeout=1.0) is not None
            and request(*address(search), "probe", timeout=1.0) is not None
        )

    deadline = started + 300
    while not all_answer():
        if time.monotonic() > deadline:
            raise RuntimeError(f"environment {name} did not answer within 300 s")
        time.sleep(0.02)
    ready = time.monotonic()
    return {
        "name": name,
        "api_seconds": answered - started,
        "ready_seconds": ready - started,
    }


def run(size: int, environments: int, keep_logs: str | None) -> dict[str, Any]:
    """Deploy, fill, clone; the results document."""
    from benchmark.appmove import container_start_baseline
    from benchmark.convergence import teardown
    from flocker.testtools import lab

    load_before = list(os.getloadavg())
    start = summarize(container_start_baseline(3))
    print(f"baseline: the counter answers {start['median']:.3f} s after docker create")
    directory = tempfile.mkdtemp(prefix="flocker-bench-envclone-")
    clones = []
    try:
        cluster = lab.up(directory, nodes=2, backend="zfs")
        staging = deploy_staging(cluster, size)
        bare = bare_clone_seconds(cluster, staging["datasets"])
        print(f"baseline: bare zfs snapshot + clone of both datasets {bare:.3f} s")
        for index in range(1, environments + 1):
            settle()
            before = pools_used(cluster)
            result = clone_one(cluster, f"env{index}", staging["applications"])
            settle()
            result["extra_bytes"] = pools_used(cluster) - before
            print(
                f"{result['name']}: api {result['api_seconds']:.3f} s, ready "
                f"{result['ready_seconds']:.3f} s, extra {result['extra_bytes'] / MiB:.2f} MiB",
                flush=True,
            )
            clones.append(result)
    finally:
        teardown(directory, keep_logs)
    ready = summarize([c["ready_seconds"] for c in clones])
    extra = max(c["extra_bytes"] for c in clones)
    return {
        "data_bytes": size,
        "applications": 3,
        "environments": clones,
        "ready_seconds": ready,
        "api_seconds": summarize([c["api_seconds"] for c in clones]),
        "worst_extra_bytes": extra,
        "container_start_seconds": start,
        "bare_zfs_clone_seconds": bare,
        "ready_to_container_start_ratio": ready["median"] / start["median"],
        "ready_target_met": ready["max"] < READY_TARGET_SECONDS,
        "space_target_met": extra < SPACE_TARGET_BYTES,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }


def plot(results: dict[str, Any]) -> Any:
    """Time to ready and extra space per environment, against the targets."""

    def draw(axes: Any) -> None:
        clones = results["environments"]
        names = [c["name"] for c in clones]
        figure = axes.figure
        axes.remove()
        times, space = figure.subplots(1, 2)
        xs = range(len(names))
        times.bar([x - 0.2 for x in xs], [c["api_seconds"] for c in clones], 0.4,
                  color="#8fb9dd", label="REST request (snapshots + configuration)")
        times.bar([x + 0.2 for x in xs], [c["ready_seconds"] for c in clones], 0.4,
                  color="#2a7ab9", label="until all 3 applications answer")
        times.axhline(READY_TARGET_SECONDS, color="#a03030", linestyle="--", label="target")
        times.axhline(results["container_start_seconds"]["median"], color="#888888",
                      linestyle=":", label="baseline: one container start")
        times.set_ylabel("seconds")
        space.bar(list(xs), [c["extra_bytes"] / MiB for c in clones], 0.5, color="#3a9a5a",
                  label="extra pool space")
        space.axhline(SPACE_TARGET_BYTES / MiB, color="#a03030", linestyle="--", label="target")
        space.set_ylabel("MiB")
        for where in (times, space):
            where.set_xticks(list(xs))
            where.set_xticklabels(names)
            where.set_ylim(bottom=0)
            where.legend(loc="upper right", fontsize="x-small")
        figure.suptitle(
            f"Cloning a 3-application environment with {results['data_bytes'] / MiB / 1024:.0f} GiB "
            f"of data: ready in {results['ready_seconds']['median']:.2f} s (median), "
            f"at most {results['worst_extra_bytes'] / MiB:.2f} MiB extra",
            fontsize="medium",
        )

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario; write benchmark/results/envclone.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run envclone")
    parser.add_argument("--size", default="2GiB", help="data in all (default 2GiB)")
    parser.add_argument("--environments", type=int, default=3, help="environments made (default 3)")
    parser.add_argument("--keep-logs", help="copy the daemons' logs to this directory")
    options = parser.parse_args(argv)
    try:
        [size] = parse_sizes(options.size)
    except ValueError as error:
        parser.error(str(error))
    if options.environments < 1:
        parser.error("--environments must be at least 1")
    if os.geteuid() != 0:
        sys.exit("benchmark/run envclone: needs root (ZFS pools)")
    results = run(size, options.environments, options.keep_logs)
    paths = write_results("envclone", results, plot(results))
    print(
        f"ready in {results['ready_seconds']['median']:.3f} s (median, target < "
        f"{READY_TARGET_SECONDS} s: {'met' if results['ready_target_met'] else 'MISSED'}), "
        f"extra space at most {results['worst_extra_bytes'] / MiB:.2f} MiB (target < 10 MiB: "
        f"{'met' if results['space_target_met'] else 'MISSED'}) -> {paths[0]}"
    )


if __name__ == "__main__":
    main()
