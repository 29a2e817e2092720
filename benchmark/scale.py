"""
Benchmark: requests per second through the routing layer, by instance count.

On a 3-node local cluster (``flocker.testtools.lab``, directory backend:
no dataset is used) a stateless counter
(:data:`flocker.runtime.testimages.COUNTER_IMAGE`, with the acceptance
tests' quick HTTP health check) runs with ``replicas`` 1, then 2, then 3
(``POST /v1/configuration/containers/<name> {"replicas": N}``, waited for
until N instances are reported healthy).  For each count, ``--clients``
closed-loop clients (:class:`benchmark._load.Load`: each sends its next
request, on a new connection, as soon as the last one is answered) load
node 1's external port for ``--seconds``: node 1's router forwards every
connection to a healthy instance, least connections first.  Measured:
acknowledged requests per second, p50 and p99 latency, failed requests,
and how many of the phase's requests each instance logged (the counter
appends each request's text to its log, read with ``docker exec``).

Baseline in the same run: the same load straight to instance 0's
container on the port Docker published it on (found with the Docker SDK),
bypassing every router — measured before the routed phases and again after
them (the machine is shared; both are reported and their mean is the
baseline).  Figures: rps(routed, N) / rps(direct).  On this machine every
node, instance, router and client share the same few cores, so more
instances add no CPU: the ratios show what the routing layer costs and
whether it spreads the load, not how a real cluster scales.

    benchmark/run scale [--seconds 15] [--clients 8] [--instances 1,2,3] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import uuid4

from benchmark._harness import write_results
from benchmark._load import (
    Load,
    configured,
    healthy_instances,
    instance_containers,
    parse_load_options,
    ratio,
    summary,
    with_docker,
)

#: Seconds each request is given.
CLIENT_TIMEOUT = 10.0

#: The counter's port inside its container.
INTERNAL_PORT = 80


def parse_instances(text: str, nodes: int = 3) -> list[int]:
    """
    ``"1,2,3"`` → ``[1, 2, 3]``: instance counts, each from 1 to ``nodes``
    (one instance per node), increasing, without repeats.

    :raise ValueError: for anything else, saying what.
    """
    counts = []
    for part in text.split(","):
        part = part.strip()
        try:
            count = int(part)
        except ValueError:
            raise ValueError(f"not an instance count: {part!r}") from None
        if not 1 <= count <= nodes:
            raise ValueError(
                f"instance counts are from 1 to {nodes} (one per node), not {count}"
            )
        counts.append(count)
    if counts != sorted(set(counts)):
        raise ValueError(f"instance counts must increase without repeats: {text!r}")
    return counts


def published_binding(
    ports: Mapping[str, Sequence[Mapping[str, str]] | None],
    internal: int,
    fallback_host: str,
) -> tuple[str, int]:
    """
    Where Docker published a container's ``internal`` TCP port, from its
    ``NetworkSettings.Ports``: (host address, host port); an address of
    ``0.0.0.0`` or none is ``fallback_host``.

    :raise LookupError: when the port is not published.
    """
    bindings = ports.get(f"{internal}/tcp") or []
    for binding in bindings:
        if binding.get("HostPort"):
            host = binding.get("HostIp") or ""
            return (fallback_host if host in ("", "0.0.0.0") else host), int(
                binding["HostPort"]
            )
    raise LookupError(f"port {internal}/tcp is not published")


def served(
    counts_after: Mapping[str, int], counts_before: Mapping[str, int]
) -> dict[str, int]:
    """
    Per node, how many requests its instance logged between two readings
    (an instance new since the first reading counts from 0).
    """
    return {
        node: count - counts_before.get(node, 0)
        for node, count in sorted(counts_after.items())
    }


def logged_requests(name: str) -> dict[str, int]:
    """Node UUID → how many load requests (lines ``c…``) its instance has logged."""

    def count(client: Any) -> dict[str, int]:
        counts = {}
        for node, container in instance_containers(client, name).items():
            _, output = container.exec_run(
                ["grep", "-c", "^c[0-9]", "/data/requests.log"]
            )
            text = output.decode(errors="replace").strip()
            counts[node] = int(text) if text.isdigit() else 0
        return counts

    return with_docker(count)


def load_phase(
    label: str,
    address: str,
    port: int,
    instances: int,
    seconds: float,
    clients: int,
    name: str,
) -> dict[str, Any]:
    """Load ``address``:``port`` for ``seconds``; its summary (the first second left out)."""
    before = logged_requests(name)
    load = Load(address, port, clients=clients, timeout=CLIENT_TIMEOUT)
    started = time.monotonic()
    load.start()
    time.sleep(seconds)
    stopped = time.monotonic()
    requests = load.stop()
    warmup = min(1.0, seconds / 5)
    result = {
        "label": label,
        "instances": instances,
        "target": f"{address}:{port}",
        **summary(requests, started + warmup, stopped),
        "failed_in_whole_phase": sum(1 for r in requests if not r.ok),
        "errors": sorted({r.error for r in requests if not r.ok}),
        "served_by_node": served(logged_requests(name), before),
    }
    print(
        f"{label} ({instances} instance{'s' if instances > 1 else ''}): "
        f"{result['requests_per_second']:.1f} rps, p50 {result['p50_seconds'] or 0:.4f} s, "
        f"p99 {result['p99_seconds'] or 0:.4f} s, {result['failed']} failed; served by node "
        f"{list(result['served_by_node'].values())}",
        flush=True,
    )
    return result


def scale_to(cluster: dict[str, Any], name: str, instances: int) -> float:
    """Set the application's replicas; seconds until that many are reported healthy."""
    from flocker.testtools import lab
    from flocker.testtools.waiting import wait_for

    started = time.monotonic()
    lab.api_request(
        cluster, "POST", f"/v1/configuration/containers/{name}", {"replicas": instances}
    )
    wait_for(
        lambda: (
            len(healthy_instances(cluster, name)) == instances
            and len(with_docker(lambda client: instance_containers(client, name)))
            == instances
            and not configured(cluster, name).get("updating")
        ),
        180,
        f"{instances} healthy instances of {name}",
        interval=0.2,
    )
    return time.monotonic() - started


def direct_target(name: str, node: dict[str, Any]) -> tuple[str, int]:
    """Where instance 0 (on ``node``) is published by Docker, bypassing the routers."""
    container = with_docker(lambda client: instance_containers(client, name))[
        node["uuid"]
    ]
    return published_binding(
        container.attrs["NetworkSettings"]["Ports"] or {},
        INTERNAL_PORT,
        node["address"],
    )


def run(
    seconds: float, clients: int, counts: list[int], keep_logs: str | None = None
) -> dict[str, Any]:
    """Measure direct and routed throughput on a fresh 3-node cluster."""
    from benchmark.convergence import teardown
    from flocker.node.test.test_acceptance_updates import QUICK_HEALTH
    from flocker.runtime.testimages import COUNTER_IMAGE
    from flocker.testtools import lab
    from flocker.testtools.waiting import wait_for

    load_before = list(os.getloadavg())  # the machine is shared: say how busy
    directory = tempfile.mkdtemp(prefix="flocker-bench-scale-")
    phases = []
    scaling = {}
    try:
        cluster = lab.up(directory, nodes=max(3, counts[-1]), backend="directory")
        one = cluster["nodes"][0]
        name = f"scale-{uuid4().hex[:8]}"
        port = lab._free_port([n["address"] for n in cluster["nodes"]])
        lab.api_request(
            cluster,
            "POST",
            "/v1/configuration/containers",
            {
                "node_uuid": one["uuid"],
                "name": name,
                "image": COUNTER_IMAGE,
                "ports": [{"internal": INTERNAL_PORT, "external": port}],
                "health": QUICK_HEALTH,
            },
        )
        wait_for(
            lambda: healthy_instances(cluster, name),
            180,
            f"{name} healthy",
            interval=0.2,
        )
        host, direct_port = direct_target(name, one)
        phases.append(
            load_phase("direct", host, direct_port, 1, seconds, clients, name)
        )
        current = 1
        for count in counts:
            if count != current:
                scaling[str(count)] = scale_to(cluster, name, count)
                current = count
                time.sleep(1.0)  # every router hears of the new instances
            phases.append(
                load_phase(
                    "routed", one["address"], port, count, seconds, clients, name
                )
            )
        host, direct_port = direct_target(name, one)
        phases.append(
            load_phase("direct", host, direct_port, 1, seconds, clients, name)
        )
    finally:
        teardown(directory, keep_logs)
    direct = [p["requests_per_second"] for p in phases if p["label"] == "direct"]
    baseline = statistics.mean(direct)
    routed = [p for p in phases if p["label"] == "routed"]
    for phase in phases:
        phase["rps_to_direct_ratio"] = ratio(phase["requests_per_second"], baseline)
    return {
        "seconds_per_phase": seconds,
        "clients": clients,
        "client": "closed loop, one new connection per request, no pause",
        "instance_counts": counts,
        "phases": phases,
        "scale_seconds": scaling,
        "direct_requests_per_second": baseline,
        "direct_runs_requests_per_second": direct,
        "routed_to_direct_ratio": {
            str(p["instances"]): p["rps_to_direct_ratio"] for p in routed
        },
        "failed_requests": sum(p["failed_in_whole_phase"] for p in phases),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }


def plot(results: dict[str, Any]) -> Any:
    """Throughput and latency, direct and through the router by instance count."""

    def draw(axes: Any) -> None:
        figure = axes.figure
        axes.remove()
        rps, latency = figure.subplots(1, 2)
        phases = results["phases"]
        labels = [
            "direct" + (" (after)" if i else " (before)")
            if p["label"] == "direct"
            else f"routed\n{p['instances']} inst."
            for i, p in enumerate(phases)
        ]
        colours = ["#888888" if p["label"] == "direct" else "#2a7ab9" for p in phases]
        bars = rps.bar(
            range(len(phases)),
            [p["requests_per_second"] for p in phases],
            color=colours,
        )
        rps.bar_label(
            bars,
            labels=[
                "-"
                if p["rps_to_direct_ratio"] is None
                else f"{p['rps_to_direct_ratio']:.2f}x"
                for p in phases
            ],
            fontsize="x-small",
        )
        rps.axhline(
            results["direct_requests_per_second"],
            color="#888888",
            linestyle="--",
            linewidth=0.8,
        )
        rps.set_xticks(range(len(phases)))
        rps.set_xticklabels(labels, fontsize="x-small")
        rps.set_ylabel("acknowledged requests per second")
        rps.set_title("throughput (label: / direct mean)", fontsize="medium")
        width = 0.38
        for offset, key, colour in (
            (-width / 2, "p50_seconds", "#7fb3d8"),
            (width / 2, "p99_seconds", "#a03030"),
        ):
            latency.bar(
                [i + offset for i in range(len(phases))],
                [(p[key] or 0.0) * 1000 for p in phases],
                width,
                color=colour,
                label=key.split("_")[0],
            )
        latency.set_xticks(range(len(phases)))
        latency.set_xticklabels(labels, fontsize="x-small")
        latency.set_ylabel("latency (ms)")
        latency.legend(fontsize="x-small")
        latency.set_title("latency", fontsize="medium")
        ratios = ", ".join(
            f"{n}: {r:.2f}"
            for n, r in results["routed_to_direct_ratio"].items()
            if r is not None
        )
        figure.suptitle(
            f"{results['clients']} closed-loop clients: rps routed / direct by instances "
            f"({ratios}); {results['failed_requests']} failed",
            fontsize="medium",
        )

    return draw


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """``benchmark/run scale``'s options, checked: a bad one exits with usage (status 2)."""
    parser = argparse.ArgumentParser(prog="benchmark/run scale")
    parser.add_argument(
        "--instances", default="1,2,3", help="instance counts (default 1,2,3)"
    )
    options = parse_load_options(parser, argv, 15.0, 8, "seconds of load per phase")
    try:
        options.instances = parse_instances(options.instances)
    except ValueError as error:
        parser.error(str(error))
    return options


def main(argv: list[str] | None = None) -> None:
    """Run the scenario; write benchmark/results/scale.json and .png."""
    options = parse_options(argv)
    if os.geteuid() != 0:
        sys.exit(
            "benchmark/run scale: needs root (node addresses containers can reach)"
        )
    results = run(
        options.seconds, options.clients, options.instances, options.keep_logs
    )
    paths = write_results("scale", results, plot(results))
    print(
        f"direct {results['direct_requests_per_second']:.1f} rps; routed / direct by "
        f"instances: {results['routed_to_direct_ratio']}; {results['failed_requests']} "
        f"failed requests -> {paths[0]}"
    )


if __name__ == "__main__":
    main()
