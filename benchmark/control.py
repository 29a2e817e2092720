"""
Control-plane benchmark: many agents over real AMP/TLS plus steady REST traffic.

``benchmark/run control [--agents 200] [--duration 60] ...`` starts a real
``flocker-control`` process on loopback (certificates made in-process with
the cluster CA helpers), then, from this process, connects N agent clients
(`AgentAMPClient`, each with its own node certificate) that report their
node's state once a second, and sends REST reads and writes (treq over
HTTPS with a client certificate) at a steady rate.  Each write adds a
dataset; the time until every agent has been pushed a configuration holding
it is the propagation time.

Reported: the control process's CPU seconds per wall second (from
``/proc/<pid>/stat``), REST latency p50/p99 for reads and writes, and
propagation time p50/p99/max.  The agents all live in this one Python
process, so on a 2-core machine this process competes with the control
service for CPU: propagation times include the agents' own decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import treq
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall, deferLater, react
from twisted.web.client import Agent, HTTPConnectionPool

from benchmark._harness import write_results
from flocker.ca import ClusterPolicyForHTTPS, load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.control import DatasetState, Deployment, DeploymentState, NodeState
from flocker.control._protocol_agent import AgentAMPClient

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(samples: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of the samples, or None if empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmark/run control")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="unmeasured seconds")
    parser.add_argument("--reads-per-second", type=float, default=5.0)
    parser.add_argument("--writes-per-second", type=float, default=1.0)
    parser.add_argument(
        "--settle-limit",
        type=float,
        default=180.0,
        help="longest wait for every agent to know every node before measuring",
    )
    parser.add_argument("--name", default="control", help="results file name")
    return parser


class Propagation:
    """Tracks when each written dataset has reached every agent."""

    def __init__(self, agents: int) -> None:
        self.agents = agents
        self.started: dict[str, float] = {}
        self.seen: dict[str, int] = {}
        self.times: list[tuple[float, float]] = []  # (when written, seconds)
        self.known: dict[int, frozenset[str]] = {}

    def written(self, dataset_id: str, started: float) -> None:
        """A write of ``dataset_id`` was sent at ``started``."""
        self.started[dataset_id] = started
        self.seen.setdefault(dataset_id, 0)

    def updated(self, agent: int, configuration: Deployment) -> None:
        """Agent ``agent`` was pushed ``configuration``."""
        ids = frozenset(
            m for node in configuration.nodes.values() for m in node.manifestations
        )
        new = ids - self.known.get(agent, frozenset())
        self.known[agent] = ids
        now = time.monotonic()
        for dataset_id in new:
            if dataset_id not in self.seen:
                # Pushed before the POST answered: count it anyway.
                self.seen[dataset_id] = 0
            self.seen[dataset_id] += 1
            if self.seen[dataset_id] == self.agents and dataset_id in self.started:
                start = self.started[dataset_id]
                self.times.append((start, now - start))


async def run(reactor: Any, options: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario; the results dict."""
    work = Path(tempfile.mkdtemp(prefix="flocker-bench-control-"))
    credentials_dir = work / "credentials"
    credentials_dir.mkdir()
    credentials = make_test_cluster_credentials(
        credentials_dir, nodes=options.agents, users=("bench",)
    )
    ports_file = work / "ports.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flocker.control.script",
            "--data-path",
            str(work / "data"),
            "--certificates-directory",
            str(credentials.control_directory),
            "--log-dir",
            str(work / "logs"),
            "--listen-address",
            "127.0.0.1",
            "--port",
            "0",
            "--agent-port",
            "0",
            "--ports-file",
            str(ports_file),
        ],
        cwd=ROOT,
    )
    try:
        return await _measure(reactor, options, work, credentials, process, ports_file)
    finally:
        process.terminate()
        process.wait()


async def _measure(
    reactor: Any,
    options: argparse.Namespace,
    work: Path,
    credentials: Any,
    process: subprocess.Popen[bytes],
    ports_file: Path,
) -> dict[str, Any]:
    while not ports_file.exists():
        if process.poll() is not None:
            raise SystemExit("flocker-control exited before listening")
        await deferLater(reactor, 0.05, lambda: None)
    ports = json.loads(ports_file.read_text())

    # -- agents ---------------------------------------------------------------
    propagation = Propagation(options.agents)
    clients: list[AgentAMPClient] = []
    nodes_known: dict[int, int] = {}
    states: list[NodeState] = []
    connect_started = time.monotonic()
    for i, (uuid, directory) in enumerate(
        zip(credentials.node_uuids, credentials.node_directories, strict=True)
    ):

        def updated(c: Deployment, s: DeploymentState, i: int = i) -> None:
            propagation.updated(i, c)
            nodes_known[i] = len(s.nodes)

        client = AgentAMPClient.for_control_service(
            reactor,
            "127.0.0.1",
            ports["agent"],
            load_tls_files(directory, "node"),
            "dataset",
            updated,
        )
        client.startService()
        clients.append(client)
        dataset_id = str(uuid).replace(str(uuid)[:8], "dddddddd", 1)
        states.append(
            NodeState(
                uuid=str(uuid),
                hostname=f"127.1.{i // 250}.{i % 250 + 1}",
                applications={},
                datasets={
                    dataset_id: DatasetState(
                        dataset_id=dataset_id,
                        path=f"/flocker/{dataset_id}",
                        size=1024 * 1024,
                    )
                },
            )
        )
    await DeferredList([c.connected() for c in clients])
    connect_seconds = time.monotonic() - connect_started

    def report(i: int) -> None:
        clients[i].report_state(states[i]).addErrback(lambda f: None)

    reporters = []
    for i in range(len(clients)):
        loop = LoopingCall(report, i)
        loop.clock = reactor
        reporters.append(loop)
        reactor.callLater(random.random(), loop.start, 1.0)

    # The initial synchronisation: every agent learns every node's state
    # (in this one process that is N * N node decodings). Measure after it.
    settle_started = time.monotonic()
    while time.monotonic() - settle_started < options.settle_limit and not (
        len(nodes_known) == options.agents
        and min(nodes_known.values()) == options.agents
    ):
        await deferLater(reactor, 0.2, lambda: None)
    settle_seconds = time.monotonic() - settle_started

    # -- REST -----------------------------------------------------------------
    user = load_tls_files(credentials.user_directories["bench"], "bench")
    pool = HTTPConnectionPool(reactor)
    pool.maxPersistentPerHost = 16
    http = treq.client.HTTPClient(
        Agent(
            reactor,
            contextFactory=ClusterPolicyForHTTPS(user.credential, user.authority),
            pool=pool,
        )
    )
    base = f"https://127.0.0.1:{ports['api']}"
    measuring = {"on": False}
    read_latency: list[float] = []
    write_latency: list[float] = []
    errors: list[str] = []
    node_uuids = [str(u) for u in credentials.node_uuids]

    async def read(n: int) -> None:
        path = "/v1/configuration/datasets" if n % 2 else "/v1/state/nodes"
        start = time.monotonic()
        response = await http.get(base + path)
        await response.content()
        if response.code != 200:
            errors.append(f"GET {path}: {response.code}")
        if measuring["on"]:
            read_latency.append(time.monotonic() - start)

    async def write() -> None:
        dataset_id = str(uuid4())
        start = time.monotonic()
        if measuring["on"]:
            propagation.written(dataset_id, start)
        response = await http.post(
            base + "/v1/configuration/datasets",
            json={"primary": random.choice(node_uuids), "dataset_id": dataset_id},
        )
        body = await response.content()
        if response.code != 201:
            errors.append(f"POST: {response.code} {body[:200]!r}")
        if measuring["on"]:
            write_latency.append(time.monotonic() - start)

    counter = {"n": 0}

    def fire_read() -> None:
        counter["n"] += 1
        Deferred.fromCoroutine(read(counter["n"])).addErrback(
            lambda f: errors.append(f.getErrorMessage())
        )

    def fire_write() -> None:
        Deferred.fromCoroutine(write()).addErrback(
            lambda f: errors.append(f.getErrorMessage())
        )

    readers = LoopingCall(fire_read)
    readers.clock = reactor
    writers = LoopingCall(fire_write)
    writers.clock = reactor
    readers.start(1.0 / options.reads_per_second, now=False)
    writers.start(1.0 / options.writes_per_second, now=False)

    await deferLater(reactor, options.warmup, lambda: None)

    # -- measurement ----------------------------------------------------------
    measuring["on"] = True
    pid = process.pid
    cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
    own_start = cpu_seconds(os.getpid())
    cpu_series: list[tuple[float, float]] = []
    last = (cpu_start, wall_start)
    while time.monotonic() - wall_start < options.duration:
        await deferLater(reactor, 1.0, lambda: None)
        cpu, wall = cpu_seconds(pid), time.monotonic()
        cpu_series.append((wall - wall_start, (cpu - last[0]) / (wall - last[1])))
        last = (cpu, wall)
    cpu_end, wall_end = cpu_seconds(pid), time.monotonic()
    own_end = cpu_seconds(os.getpid())
    measuring["on"] = False
    readers.stop()
    writers.stop()
    # Let the last writes propagate.
    for _ in range(100):
        if len(propagation.times) >= len(propagation.started):
            break
        await deferLater(reactor, 0.1, lambda: None)
    for loop in reporters:
        if loop.running:
            loop.stop()
    await DeferredList([c.stopService() for c in clients])
    await pool.closeCachedConnections()

    spread = [seconds for _, seconds in propagation.times]
    return {
        "agents": options.agents,
        "duration_seconds": wall_end - wall_start,
        "agent_connect_seconds": connect_seconds,
        "initial_sync_seconds": settle_seconds,
        "state_reports_per_second": options.agents,
        "rest_reads_per_second": options.reads_per_second,
        "rest_writes_per_second": options.writes_per_second,
        "control_cpu_seconds_per_wall_second": (cpu_end - cpu_start)
        / (wall_end - wall_start),
        "control_cpu_series": cpu_series,
        "agents_process_cpu_seconds_per_wall_second": (own_end - own_start)
        / (wall_end - wall_start),
        "rest_read_latency_seconds": {
            "p50": percentile(read_latency, 50),
            "p99": percentile(read_latency, 99),
            "count": len(read_latency),
        },
        "rest_write_latency_seconds": {
            "p50": percentile(write_latency, 50),
            "p99": percentile(write_latency, 99),
            "count": len(write_latency),
        },
        "change_to_all_agents_seconds": {
            "p50": percentile(spread, 50),
            "p99": percentile(spread, 99),
            "max": max(spread) if spread else None,
            "count": len(spread),
            "writes_measured": len(propagation.started),
        },
        "propagation_series": [
            (start - wall_start, seconds) for start, seconds in propagation.times
        ],
        "errors": errors[:20],
        "error_count": len(errors),
    }


def plot(results: dict[str, Any]) -> Any:
    """Draw control CPU and propagation times over the run."""

    def draw(axes: Any) -> None:
        cpu = results["control_cpu_series"]
        axes.plot(
            [t for t, _ in cpu],
            [c for _, c in cpu],
            color="tab:blue",
            label="control CPU s / wall s",
        )
        axes.set_xlabel("seconds into the measurement")
        axes.set_ylabel("control CPU seconds per wall second", color="tab:blue")
        axes.set_ylim(bottom=0)
        other = axes.twinx()
        propagation = results["propagation_series"]
        other.scatter(
            [t for t, _ in propagation],
            [s * 1000 for _, s in propagation],
            color="tab:red",
            s=12,
            label="change reaches all agents (ms)",
        )
        other.set_ylabel("ms until every agent has a change", color="tab:red")
        other.set_ylim(bottom=0)
        read = results["rest_read_latency_seconds"]
        write = results["rest_write_latency_seconds"]
        axes.set_title(
            f"flocker-control, {results['agents']} agents reporting 1/s; REST "
            f"read p50 {1000 * (read['p50'] or 0):.0f} ms, "
            f"write p50 {1000 * (write['p50'] or 0):.0f} ms",
            fontsize=9,
        )

    return draw


def main(reactor: Any, argv: list[str]) -> Deferred[None]:
    """Run the scenario and write ``benchmark/results/<name>.json`` and ``.png``."""
    options = _parser().parse_args(argv)

    async def go() -> None:
        results = await run(reactor, options)
        paths = write_results(options.name, results, plot(results))
        summary = {
            k: v
            for k, v in results.items()
            if not k.endswith("_series") and k != "errors"
        }
        print(json.dumps(summary, indent=2))
        print("wrote", *[p for p in paths if p])

    return Deferred.fromCoroutine(go())


if __name__ == "__main__":
    react(main, [sys.argv[1:]])
