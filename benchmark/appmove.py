"""
Benchmark: moving an application with its dataset under a steady write load.

On a 2-node local cluster (``flocker.testtools.lab``, zfs backend), for each
size a counter application (:data:`flocker.runtime.testimages.COUNTER_IMAGE`)
with a dataset is deployed on node 1 through the REST API and N bytes of
random data are written into the dataset.  A client thread (the acceptance
tests' ``Writer``) then sends numbered writes through node 1's published
port and records the ones acknowledged; the application is moved to node 2
(``POST /v1/configuration/containers/<name> {"node_uuid": node 2}``); once it
runs on node 2 and 20 more writes were acknowledged, the writer stops.
Measured per size:

* **interruption**: the writer's longest gap between acknowledged writes,
  with the last acknowledged write before it and the first after it;
* **lost acknowledged writes**: acknowledged writes missing from the
  dataset's ``requests.log`` on node 2 (target 0: any loss fails the
  benchmark loudly, after the results are written);
* **logged unavailable**: what Flocker itself logged on node 2
  (``flocker:node:container:answering``): from the application running on
  no node until it accepts connections there;
* **total**: from the move request until the application answers on node 2;
* **failed requests** (goal 0): writes answered with an error or not at
  all within 30 s (the routing layer holds connections while the
  application runs nowhere, so a move should cost latency, not errors);
* **longest wait**: the longest any one write waited for its answer (goal
  at most 1.5 s for 1 GiB, and at most 3x the container start baseline).

The random data is checked (SHA-256) on node 2 as well.  Baseline in the
same run: how long the counter takes to answer after ``docker run`` on this
machine (docker SDK create + start, bound to a free 127.0.0.1 port), so the
results give interruption / container start.  Target: the interruption does
not grow with the dataset size.

    benchmark/run appmove [--sizes 64MiB,1GiB] [--baseline-runs 3] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from typing import Any

from benchmark._harness import summarize, write_results
from benchmark.move import MiB, file_digest, fill, parse_sizes, wait_exposed

#: Acknowledged writes required before the move and after it arrives.
WRITES_AROUND = 20

#: Seconds the writer gives each request: a connection the routing layer
#: holds during the move is waited for, not counted as failed.
CLIENT_TIMEOUT = 30.0


class LostWrites(Exception):
    """Acknowledged writes are missing from the moved dataset."""


def interruption(names: list[str], times: list[float], origin: float) -> dict[str, Any]:
    """
    The longest gap between acknowledged writes and the writes around it.

    :param names: The acknowledged writes, in order.
    :param times: When each was acknowledged (monotonic seconds).
    :param origin: Times in the result are relative to this (the move request).
    """
    if len(times) < 2:
        return {"seconds": 0.0, "last_before": None, "first_after": None}
    index = max(range(1, len(times)), key=lambda i: times[i] - times[i - 1])
    return {
        "seconds": times[index] - times[index - 1],
        "last_before": names[index - 1],
        "last_before_at_seconds": times[index - 1] - origin,
        "first_after": names[index],
        "first_after_at_seconds": times[index] - origin,
    }


def answers(address: str, port: int, timeout: float = 0.5) -> bool:
    """Whether the counter at ``address``:``port`` answers a request."""
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/?start", timeout=timeout) as reply:
            return reply.status == 200
    except OSError:
        return False


def container_start_baseline(runs: int) -> list[float]:
    """
    Seconds from ``docker create`` until the counter answers, ``runs`` times.

    Each run binds a fresh counter container to a free port on 127.0.0.1
    with a temporary directory as its data, and removes it afterwards.
    """
    import docker

    from flocker.runtime.testimages import (
        COUNTER_IMAGE,
        COUNTER_PORT,
        ensure_counter_image,
    )
    from flocker.testtools import lab

    client = docker.from_env()
    seconds = []
    try:
        ensure_counter_image(client)
        for _ in range(runs):
            data = tempfile.mkdtemp(prefix="flocker-bench-appmove-")
            port = lab._free_port(["127.0.0.1"])
            container = None
            try:
                started = time.monotonic()
                container = client.containers.create(
                    COUNTER_IMAGE,
                    ports={f"{COUNTER_PORT}/tcp": ("127.0.0.1", port)},
                    volumes={data: {"bind": "/data", "mode": "rw"}},
                    labels={"org.flocker.benchmark": "appmove"},
                )
                container.start()
                deadline = started + 60
                while not answers("127.0.0.1", port):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the baseline counter never answered")
                    time.sleep(0.005)
                seconds.append(time.monotonic() - started)
            finally:
                if container is not None:
                    container.remove(force=True)
                shutil.rmtree(data, ignore_errors=True)
    finally:
        client.close()
    return seconds


def measure_app_move(cluster: dict[str, Any], size: int, seed: int) -> dict[str, Any]:
    """Deploy, fill and move one counter application; its figures."""
    from flocker.node.test.test_acceptance_containers import (
        Writer,
        deploy_counter,
        is_subsequence,
        logged_writes,
        move_application,
        running_on,
    )
    from flocker.node.test.test_acceptance_datasets import wait_for
    from flocker.testtools import lab

    one, two = cluster["nodes"][:2]
    name, dataset_id, port = deploy_counter(cluster, one)
    path = wait_exposed(cluster, dataset_id, one["uuid"])
    print(f"{name}: writing {size / MiB:.0f} MiB into {dataset_id} on node 1", flush=True)
    written = fill(path, size, seed)

    writer = Writer(one["address"], port, timeout=CLIENT_TIMEOUT)
    writer.start()
    try:
        wait_for(lambda: len(writer.acknowledged) >= WRITES_AROUND, 120, "writes before the move")
        requested = time.monotonic()
        move_application(cluster, name, two)
        wait_for(lambda: running_on(cluster, name, two, port), 900, "the application on node 2")
        arrived = time.monotonic()
        before = len(writer.acknowledged)
        wait_for(
            lambda: len(writer.acknowledged) >= before + WRITES_AROUND,
            120,
            "writes through node 1 after the move",
        )
    finally:
        writer.stopping.set()
        writer.join()

    acknowledged = list(writer.acknowledged)
    times = list(writer.times)
    failures = list(writer.failures)
    longest_wait = writer.longest_wait()
    gap = interruption(acknowledged, times, requested)
    answered = wait_for(lambda: lab.logged_answering(two, name), 60, "node 2's answering log")
    lines = logged_writes(cluster, dataset_id, two)
    logged = set(lines)
    lost = [write for write in acknowledged if write not in logged]
    in_order = is_subsequence(acknowledged, lines)
    new_path = wait_exposed(cluster, dataset_id, two["uuid"])
    moved = file_digest(os.path.join(new_path, "data"))
    result = {
        "application": name,
        "dataset_id": dataset_id,
        "data_bytes": size,
        "sha256": written,
        "data_verified": moved == written,
        "total_seconds": arrived - requested,
        "interruption": gap,
        "logged_unavailable_seconds": answered.get("unavailable_seconds"),
        "logged_start_seconds": answered.get("start_seconds"),
        "acknowledged_writes": len(acknowledged),
        "sent_writes": int(acknowledged[-1][1:]) + 1 if acknowledged else 0,
        "logged_lines": len(lines),
        "lost_acknowledged_writes": lost,
        "lost_count": len(lost),
        "acknowledged_in_order": in_order,
        "failed_requests": len(failures),
        "failures": [{"write": w, "error": e} for w, e in failures[:50]],
        "longest_wait_seconds": longest_wait,
    }
    print(
        f"{size / MiB:.0f} MiB: interruption {gap['seconds']:.3f} s "
        f"({gap['last_before']} -> {gap['first_after']}; node 2 logged "
        f"{result['logged_unavailable_seconds']} s), total {result['total_seconds']:.2f} s, "
        f"{len(acknowledged)} acknowledged, {len(failures)} failed, longest wait "
        f"{longest_wait:.3f} s, {len(lost)} lost, in order {in_order}, "
        f"data {'verified' if moved == written else 'CORRUPT'}",
        flush=True,
    )
    # Free both pools for the next size (not waited for).
    remove_application(cluster, name, dataset_id)
    return result


def remove_application(cluster: dict[str, Any], name: str, dataset_id: str) -> None:
    """
    Ask the cluster to remove an application and delete its dataset (not
    waited for); a request that fails is said, not raised.
    """
    from flocker.testtools import lab

    for method, resource in [
        ("DELETE", f"/v1/configuration/containers/{name}"),
        ("DELETE", f"/v1/configuration/datasets/{dataset_id}"),
    ]:
        try:
            lab.api_request(cluster, method, resource)
        except OSError as error:
            print(f"cleanup {resource}: {error}", flush=True)


def run(sizes: list[int], baseline_runs: int, keep_logs: str | None = None) -> dict[str, Any]:
    """Measure one application move per size on a fresh local cluster."""
    from benchmark.convergence import teardown
    from flocker.testtools import lab

    load_before = list(os.getloadavg())  # the machine is shared: say how busy
    baseline = container_start_baseline(baseline_runs)
    start = summarize(baseline)
    print(f"baseline: the counter answers {start['median']:.3f} s after docker create (median)")
    directory = tempfile.mkdtemp(prefix="flocker-bench-appmove-")
    moves = []
    try:
        cluster = lab.up(directory, nodes=2, backend="zfs")
        for seed, size in enumerate(sizes, start=1):
            moves.append(measure_app_move(cluster, size, seed))
    finally:
        teardown(directory, keep_logs)
    for move in moves:
        move["interruption_to_container_start_ratio"] = (
            move["interruption"]["seconds"] / start["median"]
        )
        move["longest_wait_to_container_start_ratio"] = (
            move["longest_wait_seconds"] / start["median"]
        )
    worst = max(m["interruption"]["seconds"] for m in moves)
    longest = max(m["longest_wait_seconds"] for m in moves)
    return {
        "sizes": sizes,
        "writes_around_move": WRITES_AROUND,
        "container_start_seconds": start,
        "container_start_samples": baseline,
        "moves": moves,
        "worst_interruption_seconds": worst,
        "worst_interruption_to_container_start_ratio": worst / start["median"],
        "failed_requests": sum(m["failed_requests"] for m in moves),
        "longest_wait_seconds": longest,
        "longest_wait_to_container_start_ratio": longest / start["median"],
        "lost_acknowledged_writes": sum(m["lost_count"] for m in moves),
        "all_data_verified": all(m["data_verified"] for m in moves),
        "all_in_order": all(m["acknowledged_in_order"] for m in moves),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }


def plot(results: dict[str, Any]) -> Any:
    """Interruption and total move time against dataset size."""

    def draw(axes: Any) -> None:
        moves = results["moves"]
        sizes = [m["data_bytes"] / MiB for m in moves]
        figure = axes.figure
        axes.remove()
        gaps, totals = figure.subplots(1, 2)
        gaps.plot(
            sizes, [m["interruption"]["seconds"] for m in moves], "o-",
            color="#a03030", label="interruption (longest gap between acks)",
        )  # fmt: skip
        gaps.axhline(
            results["container_start_seconds"]["median"], color="#888888",
            linestyle="--", label="baseline: docker create+start to answer",
        )  # fmt: skip
        totals.plot(
            sizes, [m["total_seconds"] for m in moves], "o-", color="#2a7ab9",
            label="move: request to answering on node 2",
        )  # fmt: skip
        for where in (gaps, totals):
            if len(sizes) > 1:
                where.set_xscale("log", base=2)
            where.set_xticks(sizes)
            where.set_xticklabels([f"{s:.0f}" for s in sizes])
            where.set_xlabel("dataset size (MiB)")
            where.set_ylabel("seconds")
            where.set_ylim(bottom=0)
            where.legend(loc="center right", fontsize="x-small")
        gaps.set_ylim(top=max(m["interruption"]["seconds"] for m in moves) * 1.3)
        gaps.set_title("interruption seen by the writer", fontsize="medium")
        totals.set_title("time to move", fontsize="medium")
        figure.suptitle(
            f"Application move under writes: worst interruption "
            f"{results['worst_interruption_seconds']:.2f} s, longest wait "
            f"{results['longest_wait_seconds']:.2f} s, {results['failed_requests']} failed "
            f"requests, {results['lost_acknowledged_writes']} acknowledged writes lost",
            fontsize="medium",
        )

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario; write benchmark/results/appmove.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run appmove")
    parser.add_argument("--sizes", default="64MiB,1GiB", help="dataset sizes (default 64MiB,1GiB)")
    parser.add_argument("--baseline-runs", type=int, default=3, help="container starts timed")
    parser.add_argument("--keep-logs", help="copy the daemons' logs to this directory")
    options = parser.parse_args(argv)
    try:
        sizes = parse_sizes(options.sizes)
    except ValueError as error:
        parser.error(str(error))
    if options.baseline_runs < 1:
        parser.error("--baseline-runs must be at least 1")
    if os.geteuid() != 0:
        sys.exit("benchmark/run appmove: needs root (ZFS pools)")
    results = run(sizes, options.baseline_runs, options.keep_logs)
    paths = write_results("appmove", results, plot(results))
    if results["lost_acknowledged_writes"] or not results["all_in_order"]:
        sys.exit(
            f"benchmark/run appmove: LOST {results['lost_acknowledged_writes']} ACKNOWLEDGED "
            f"WRITES (in order: {results['all_in_order']}) -> {paths[0]}"
        )
    if not results["all_data_verified"]:
        sys.exit(f"benchmark/run appmove: CORRUPT DATA after a move -> {paths[0]}")
    print(
        f"{results['failed_requests']} failed requests, longest wait "
        f"{results['longest_wait_seconds']:.3f} s "
        f"({results['longest_wait_to_container_start_ratio']:.1f}x a container start); "
        f"worst interruption {results['worst_interruption_seconds']:.3f} s "
        f"({results['worst_interruption_to_container_start_ratio']:.1f}x a container start), "
        f"0 acknowledged writes lost -> {paths[0]}"
    )


if __name__ == "__main__":
    main()
