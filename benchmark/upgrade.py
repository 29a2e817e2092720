"""
Benchmark: updating applications under a steady client load.

On a 3-node local cluster (``flocker.testtools.lab``, zfs backend), two
counter applications (:data:`flocker.runtime.testimages.COUNTER_IMAGE`)
with a quick HTTP health check (the acceptance tests' ``QUICK_HEALTH``:
every 0.5 s, unhealthy after 2 failures, 3 s start period) are updated
(an environment change, ``POST /v1/configuration/containers/<name>``)
while ``--clients`` clients (:class:`benchmark._load.Load`, each sending
numbered requests one after the other, 20 ms apart) load them through
node 1's router, ``--seconds`` before the update and again after it:

* **stateless**: 3 replicas without a dataset (the counter writes into
  its image's ``/data``), one instance per node; the update rolls over
  them one at a time;
* **stateful**: one instance with a dataset; the update stops it and
  starts the new revision on the same data.

The update is *done* once every instance runs the new revision (its
container has the new environment) and its node reports it healthy, as
polled every ~0.2 s (a poll takes a REST request or two and a Docker
listing, so the times are late by up to ~0.3 s).
Measured for each: failed requests (goal 0; each one is listed with when
it was sent and why it failed), p99 latency of the requests sent while
the update ran over p99 before it, the longest wait, the update's time
(request to done, with when each instance got there and when the control
service confirmed it) over the baseline, and for the stateful one the
acknowledged writes missing from the dataset's log afterwards (must be
0: any loss fails the benchmark, after the results are written).

Baseline in the same run: how long the counter takes to answer after
``docker create`` + ``start`` on this machine, as ``benchmark/run
appmove`` measures it.  The load average before and after says how busy
the shared machine was.

    benchmark/run upgrade [--seconds 10] [--clients 4] [--baseline-runs 3] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import uuid4

from benchmark._harness import summarize, write_results
from benchmark._load import (
    Load,
    Request,
    configured,
    each_client_in_order,
    failures,
    healthy_instances,
    instance_containers,
    lost_writes,
    parse_load_options,
    ratio,
    reported_health,
    state_containers,
    summary,
    timeline,
    with_docker,
)

#: The environment change each update makes; the new containers carry it.
MARKER_KEY, MARKER_VALUE = "FLOCKER_BENCHMARK_REVISION", "2"

#: Seconds a client waits between its requests: a steady load, not a flood.
PAUSE = 0.02

#: Seconds each request is given (the routers hold connections up to 30 s).
CLIENT_TIMEOUT = 30.0

#: The instances of the stateless application.
REPLICAS = 3


def updated_nodes(
    health: Mapping[str, str | None],
    environments: Mapping[str, Sequence[str]],
    marker: str,
) -> set[str]:
    """
    The nodes whose instance runs the new revision and is reported healthy:
    its running container's environment (``KEY=VALUE`` strings) holds
    ``marker``, and its node reports the application ``healthy``.  An old
    instance's health cannot pass for the new one's: a healthy instance is
    reported ``stopping`` before it is replaced.
    """
    return {
        node
        for node, environment in environments.items()
        if marker in environment and health.get(node) == "healthy"
    }


def running_environments(name: str) -> dict[str, list[str]]:
    """Node UUID → the environment of its running container of application ``name``."""
    return {
        node: list(container.attrs["Config"].get("Env") or [])
        for node, container in with_docker(
            lambda client: instance_containers(client, name)
        ).items()
    }


def watch_rollout(
    cluster: dict[str, Any],
    name: str,
    instances: int,
    requested: float,
    timeout: float = 300,
) -> dict[str, Any]:
    """
    Poll (every ~0.2 s) until ``instances`` instances of ``name`` run the
    new revision healthy; when each got there and when the control service
    cleared ``updating``, in seconds since ``requested``.

    :raise RuntimeError: when the control service rolled the update back,
        or ``timeout`` seconds pass.
    """
    marker = f"{MARKER_KEY}={MARKER_VALUE}"
    reached: dict[str, float] = {}
    confirmed = None
    while True:
        health = reported_health(state_containers(cluster), name)
        now = time.monotonic() - requested
        for node in updated_nodes(health, running_environments(name), marker):
            reached.setdefault(node, now)
        if confirmed is None:
            entry = configured(cluster, name)
            if entry.get("update_failed"):
                raise RuntimeError(
                    f"the update of {name} was rolled back: {entry['update_failed']}"
                )
            if not entry.get("updating"):
                confirmed = time.monotonic() - requested
        if len(reached) >= instances and confirmed is not None:
            return {
                "done_seconds": max(reached.values()),
                "confirmed_seconds": confirmed,
                "instances_seconds": dict(
                    sorted(reached.items(), key=lambda item: item[1])
                ),
            }
        if time.monotonic() - requested > timeout:
            raise RuntimeError(
                f"the update of {name} did not finish in {timeout} s: "
                f"{len(reached)} of {instances} instances updated, health {health}"
            )
        time.sleep(0.2)


def measure_update(
    cluster: dict[str, Any],
    name: str,
    port: int,
    instances: int,
    seconds: float,
    clients: int,
) -> tuple[dict[str, Any], list[Request], float]:
    """
    Load the application through node 1's router for ``seconds``, update
    it, wait for the rollout, load it ``seconds`` more; the figures, every
    request and when the update was requested.
    """
    from flocker.testtools import lab

    one = cluster["nodes"][0]
    load = Load(
        one["address"], port, clients=clients, timeout=CLIENT_TIMEOUT, pause=PAUSE
    )
    started = time.monotonic()
    load.start()
    try:
        time.sleep(seconds)
        requested = time.monotonic()
        reply = lab.api_request(
            cluster,
            "POST",
            f"/v1/configuration/containers/{name}",
            {"environment": {MARKER_KEY: MARKER_VALUE}},
        )
        rollout = watch_rollout(cluster, name, instances, requested)
        done = requested + rollout["done_seconds"]
        time.sleep(seconds)
        stopped = time.monotonic()
    finally:
        requests = load.stop()
    before = summary(requests, started, requested)
    during = summary(requests, requested, max(done, requested + 1e-3))
    after = summary(requests, done, stopped)
    result = {
        "application": name,
        "instances": instances,
        "revision": reply.get("revision"),
        "update_seconds": rollout["done_seconds"],
        "confirmed_seconds": rollout["confirmed_seconds"],
        "instances_updated_at_seconds": rollout["instances_seconds"],
        "before": before,
        "during": during,
        "after": after,
        "requests": len(requests),
        "failed_requests": sum(1 for r in requests if not r.ok),
        "failures": failures(requests, requested)[:100],
        "longest_wait_seconds": max((r.wait for r in requests), default=0.0),
        "p99_during_to_before_ratio": ratio(
            during["p99_seconds"], before["p99_seconds"]
        ),
        "timeline": timeline(requests, requested),
    }
    return result, requests, requested


def measure_stateless(
    cluster: dict[str, Any], seconds: float, clients: int
) -> dict[str, Any]:
    """A counter with 3 replicas and no dataset, updated under load."""
    from flocker.node.test.test_acceptance_updates import QUICK_HEALTH
    from flocker.runtime.testimages import COUNTER_IMAGE
    from flocker.testtools import lab
    from flocker.testtools.waiting import wait_for

    one = cluster["nodes"][0]
    name = f"web-{uuid4().hex[:8]}"
    port = lab._free_port([n["address"] for n in cluster["nodes"]])
    lab.api_request(
        cluster,
        "POST",
        "/v1/configuration/containers",
        {
            "node_uuid": one["uuid"],
            "name": name,
            "image": COUNTER_IMAGE,
            "ports": [{"internal": 80, "external": port}],
            "health": QUICK_HEALTH,
            "replicas": REPLICAS,
        },
    )
    wait_for(
        lambda: len(healthy_instances(cluster, name)) >= REPLICAS,
        180,
        f"{REPLICAS} healthy instances of {name}",
        interval=0.2,
    )
    result, _, _ = measure_update(cluster, name, port, REPLICAS, seconds, clients)
    lab.api_request(cluster, "DELETE", f"/v1/configuration/containers/{name}")
    return result


def measure_stateful(
    cluster: dict[str, Any], seconds: float, clients: int
) -> dict[str, Any]:
    """A counter with a dataset (one instance), updated under load; writes checked."""
    from benchmark.appmove import remove_application
    from flocker.node.test.test_acceptance_containers import (
        deploy_counter,
        logged_writes,
    )
    from flocker.node.test.test_acceptance_updates import QUICK_HEALTH
    from flocker.testtools import lab
    from flocker.testtools.waiting import wait_for

    one = cluster["nodes"][0]
    name, dataset_id, port = deploy_counter(cluster, one)
    lab.api_request(
        cluster,
        "POST",
        f"/v1/configuration/containers/{name}",
        {"health": QUICK_HEALTH},
    )
    wait_for(
        lambda: (
            healthy_instances(cluster, name) == [one["uuid"]]
            and not configured(cluster, name).get("updating")
        ),
        120,
        f"{name} healthy with its health check",
        interval=0.2,
    )
    result, requests, _ = measure_update(cluster, name, port, 1, seconds, clients)
    logged = logged_writes(cluster, dataset_id, one)
    lost = lost_writes(requests, logged)
    result.update(
        {
            "dataset_id": dataset_id,
            "logged_lines": len(logged),
            "lost_acknowledged_writes": lost[:100],
            "lost_count": len(lost),
            "each_client_in_order": each_client_in_order(requests, logged),
        }
    )
    remove_application(cluster, name, dataset_id)
    return result


def report(label: str, result: dict[str, Any]) -> None:
    """Print one update's figures."""
    print(
        f"{label}: update done in {result['update_seconds']:.2f} s (confirmed "
        f"{result['confirmed_seconds']:.2f} s), {result['requests']} requests, "
        f"{result['failed_requests']} failed, p99 before "
        f"{result['before']['p99_seconds'] or 0:.3f} s / during "
        f"{result['during']['p99_seconds'] or 0:.3f} s, longest wait "
        f"{result['longest_wait_seconds']:.3f} s"
        + (f", {result['lost_count']} lost" if "lost_count" in result else ""),
        flush=True,
    )
    for failure in result["failures"][:10]:
        print(f"  failed {failure}", flush=True)


def run(
    seconds: float, clients: int, baseline_runs: int, keep_logs: str | None = None
) -> dict[str, Any]:
    """Update a replicated and a stateful counter under load on a fresh cluster."""
    from benchmark.appmove import container_start_baseline
    from benchmark.convergence import teardown
    from flocker.testtools import lab

    load_before = list(os.getloadavg())  # the machine is shared: say how busy
    samples = container_start_baseline(baseline_runs)
    start = summarize(samples)
    print(
        f"baseline: the counter answers {start['median']:.3f} s after docker create (median)"
    )
    directory = tempfile.mkdtemp(prefix="flocker-bench-upgrade-")
    try:
        cluster = lab.up(directory, nodes=REPLICAS, backend="zfs")
        stateless = measure_stateless(cluster, seconds, clients)
        report("stateless (3 replicas)", stateless)
        stateful = measure_stateful(cluster, seconds, clients)
        report("stateful (dataset)", stateful)
    finally:
        teardown(directory, keep_logs)
    for result in (stateless, stateful):
        result["update_to_container_start_ratio"] = ratio(
            result["update_seconds"], start["median"]
        )
        result["longest_wait_to_container_start_ratio"] = ratio(
            result["longest_wait_seconds"], start["median"]
        )
    return {
        "seconds_before_and_after": seconds,
        "clients": clients,
        "client_pause_seconds": PAUSE,
        "health_check": "http /?health every 0.5 s, 2 retries, 3 s start period",
        "container_start_seconds": start,
        "container_start_samples": samples,
        "stateless": stateless,
        "stateful": stateful,
        "failed_requests": stateless["failed_requests"] + stateful["failed_requests"],
        "lost_acknowledged_writes": stateful["lost_count"],
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }


def plot(results: dict[str, Any]) -> Any:
    """Latency over time around each update, and the ratios to the baselines."""

    def draw(axes: Any) -> None:
        figure = axes.figure
        axes.remove()
        latency, ratios = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        parts = [
            ("stateless", "#2a7ab9", "3 replicas"),
            ("stateful", "#a03030", "dataset"),
        ]
        for key, colour, label in parts:
            bins = results[key]["timeline"]
            at = [b["at_seconds"] for b in bins if b["max_seconds"] is not None]
            latency.plot(
                at, [b["max_seconds"] for b in bins if b["max_seconds"] is not None],
                "-", color=colour, label=f"{label}: slowest request per 0.5 s",
            )  # fmt: skip
            latency.axvline(results[key]["update_seconds"], color=colour, linestyle=":")
            failed = [b for b in bins if b["failed"]]
            if failed:
                latency.plot(
                    [b["at_seconds"] for b in failed], [0] * len(failed), "x",
                    color=colour, markersize=9, label=f"{label}: failed requests",
                )  # fmt: skip
        latency.axvline(0, color="#888888", linestyle="--", label="update requested")
        latency.set_yscale("log")
        bottom, top = latency.get_ylim()
        latency.set_ylim(bottom, top * 8)  # room for the legend above the peaks
        latency.set_xlabel("seconds since the update request (dotted: update done)")
        latency.set_ylabel("latency (s)")
        latency.legend(loc="upper left", fontsize="x-small")
        latency.set_title("client latency through node 1's router", fontsize="medium")
        names = ["p99 during / before", "update / container start"]
        width = 0.38
        for offset, (key, colour, label) in zip(
            (-width / 2, width / 2), parts, strict=True
        ):
            values = [
                results[key]["p99_during_to_before_ratio"] or 0.0,
                results[key]["update_to_container_start_ratio"] or 0.0,
            ]
            bars = ratios.bar(
                [i + offset for i in range(len(names))],
                values,
                width,
                color=colour,
                label=label,
            )
            ratios.bar_label(bars, fmt="%.1f", fontsize="x-small")
        ratios.axhline(1, color="#888888", linestyle="--", linewidth=0.8)
        ratios.set_xticks(range(len(names)))
        ratios.set_xticklabels(names, fontsize="small")
        ratios.set_ylabel("ratio")
        ratios.legend(fontsize="x-small")
        ratios.set_title(
            f"baseline: container start {results['container_start_seconds']['median']:.2f} s",
            fontsize="medium",
        )
        figure.suptitle(
            f"Updates under load: {results['failed_requests']} failed requests, "
            f"{results['lost_acknowledged_writes']} acknowledged writes lost; update "
            f"{results['stateless']['update_seconds']:.1f} s (3 replicas), "
            f"{results['stateful']['update_seconds']:.1f} s (dataset)",
            fontsize="medium",
        )

    return draw


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """``benchmark/run upgrade``'s options, checked: a bad one exits with usage (status 2)."""
    parser = argparse.ArgumentParser(prog="benchmark/run upgrade")
    parser.add_argument(
        "--baseline-runs",
        type=int,
        default=3,
        help="container starts timed (default 3)",
    )
    options = parse_load_options(
        parser, argv, 10.0, 4, "seconds of load before and after each update"
    )
    if options.baseline_runs < 1:
        parser.error("--baseline-runs must be at least 1")
    return options


def main(argv: list[str] | None = None) -> None:
    """Run the scenario; write benchmark/results/upgrade.json and .png."""
    options = parse_options(argv)
    if os.geteuid() != 0:
        sys.exit("benchmark/run upgrade: needs root (ZFS pools, node addresses)")
    results = run(
        options.seconds, options.clients, options.baseline_runs, options.keep_logs
    )
    paths = write_results("upgrade", results, plot(results))
    if (
        results["lost_acknowledged_writes"]
        or not results["stateful"]["each_client_in_order"]
    ):
        raise SystemExit(
            f"benchmark/run upgrade: LOST {results['lost_acknowledged_writes']} ACKNOWLEDGED "
            f"WRITES (in order: {results['stateful']['each_client_in_order']}) -> {paths[0]}"
        )
    print(
        f"{results['failed_requests']} failed requests (goal 0), 0 acknowledged writes "
        f"lost; p99 during/before: {results['stateless']['p99_during_to_before_ratio']} "
        f"(3 replicas), {results['stateful']['p99_during_to_before_ratio']} (dataset) -> "
        f"{paths[0]}"
    )


if __name__ == "__main__":
    main()
