"""
Control-plane benchmark: many agents over real AMP/TLS plus steady REST traffic.

``benchmark/run control [--agents 200] [--duration 60] ...`` starts a real
``flocker-control`` process on loopback (certificates made in-process with
the cluster CA helpers) and a second process simulating N agents
(`AgentAMPClient`, each with its own node certificate and connection), each
reporting its node's state once a second.  After the initial
synchronisation (every agent knows every node), this process sends REST
reads and writes (treq over HTTPS with a client certificate) at a steady
rate.  Each write adds a dataset; the time from sending the write until
every agent has been pushed a configuration holding it is the propagation
time (the two processes compare wall-clock ``time.time()`` stamps).

Reported: the control process's CPU seconds per wall second (from
``/proc/<pid>/stat``; the agents' and REST client's processes too, for
context), REST latency p50/p99 for reads and writes, and propagation
p50/p99/max.  All three processes share this machine's two cores, so the
agents' own work (decoding pushes for N agents) competes with the control
service's.
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
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall, deferLater, react
from twisted.web.client import Agent, HTTPConnectionPool

from benchmark._harness import write_results
from flocker.ca import ClusterPolicyForHTTPS, identify_certificate, load_tls_files
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
    parser.add_argument(
        "--agent-worker",
        action="store_true",
        help=argparse.SUPPRESS,  # internal: run the agents (in a child process)
    )
    parser.add_argument("--credentials", help=argparse.SUPPRESS)
    parser.add_argument("--agent-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="control", help="results file name")
    return parser


class AgentWorker:
    """The agents' side: counts, per dataset, how many agents have it."""

    def __init__(self, agents: int, emit: Any) -> None:
        self.agents = agents
        self.emit = emit
        self.seen: dict[str, int] = {}
        self.known: dict[int, frozenset[str]] = {}
        self.nodes_known: dict[int, int] = {}

    def updated(self, agent: int, configuration: Deployment, state: Any) -> None:
        """Agent ``agent`` was pushed ``configuration`` and ``state``."""
        self.nodes_known[agent] = len(state.nodes)
        ids = frozenset(
            m for node in configuration.nodes.values() for m in node.manifestations
        )
        new = ids - self.known.get(agent, frozenset())
        self.known[agent] = ids
        for dataset_id in new:
            self.seen[dataset_id] = self.seen.get(dataset_id, 0) + 1
            if self.seen[dataset_id] == self.agents:
                self.emit({"event": "dataset", "id": dataset_id, "at": time.time()})

    def synced(self) -> bool:
        """Whether every agent has been told every node's state."""
        return len(self.nodes_known) == self.agents and (
            min(self.nodes_known.values()) == self.agents
        )


async def agent_worker(reactor: Any, options: argparse.Namespace) -> None:
    """
    Run N agents against the control service until killed.

    Prints JSON lines: ``connected``, ``synced`` (every agent knows every
    node) and one ``dataset`` line when every agent has a dataset.
    """

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    worker = AgentWorker(options.agents, emit)
    root = Path(options.credentials)
    clients: list[AgentAMPClient] = []
    states: list[NodeState] = []
    started = time.monotonic()
    for i in range(options.agents):
        tls = load_tls_files(root / f"node-{i}", "node")
        uuid = str(identify_certificate(tls.credential.certificate).node_uuid)

        def updated(c: Deployment, s: DeploymentState, i: int = i) -> None:
            worker.updated(i, c, s)

        client = AgentAMPClient.for_control_service(
            reactor, "127.0.0.1", options.agent_port, tls, "dataset", updated
        )
        client.startService()
        clients.append(client)
        dataset_id = "dddddddd" + uuid[8:]
        states.append(
            NodeState(
                uuid=uuid,
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
    emit({"event": "connected", "seconds": time.monotonic() - started})

    def report(i: int) -> None:
        clients[i].report_state(states[i]).addErrback(lambda f: None)

    for i in range(len(clients)):
        loop = LoopingCall(report, i)
        loop.clock = reactor
        reactor.callLater(random.random(), loop.start, 1.0)
    while not worker.synced():
        await deferLater(reactor, 0.2, lambda: None)
    emit({"event": "synced", "seconds": time.monotonic() - started})
    await Deferred()  # until killed


class _WorkerProtocol(ProcessProtocol):
    """Reads the agent worker's JSON lines."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        """Collect complete lines as events."""
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        self.events.extend(json.loads(line) for line in lines if line.strip())

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        """Pass the worker's errors on."""
        sys.stderr.buffer.write(data)

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        """Note the end."""
        self.ended.callback(None)

    def event(self, name: str) -> dict[str, Any] | None:
        """The first event called ``name``, if it came."""
        return next((e for e in self.events if e["event"] == name), None)


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
    worker = _WorkerProtocol()
    try:
        while not ports_file.exists():
            if process.poll() is not None:
                raise SystemExit("flocker-control exited before listening")
            await deferLater(reactor, 0.05, lambda: None)
        ports = json.loads(ports_file.read_text())
        transport = reactor.spawnProcess(
            worker,
            sys.executable,
            [
                sys.executable,
                "-m",
                "benchmark.control",
                "--agent-worker",
                "--agents",
                str(options.agents),
                "--credentials",
                str(credentials_dir),
                "--agent-port",
                str(ports["agent"]),
            ],
            env=dict(os.environ),
            path=str(ROOT),
        )
        try:
            return await _measure(
                reactor, options, credentials, process.pid, transport.pid, ports, worker
            )
        finally:
            transport.signalProcess("TERM")
            await worker.ended
    finally:
        process.terminate()
        process.wait()


async def _measure(
    reactor: Any,
    options: argparse.Namespace,
    credentials: Any,
    control_pid: int,
    worker_pid: int,
    ports: dict[str, int],
    worker: _WorkerProtocol,
) -> dict[str, Any]:
    # The initial synchronisation (every agent learns every node's state)
    # is not measured.
    settle_started = time.monotonic()
    while worker.event("synced") is None:
        if time.monotonic() - settle_started > options.settle_limit:
            raise SystemExit("the agents did not synchronise in time")
        await deferLater(reactor, 0.2, lambda: None)
    connected = worker.event("connected")
    synced = worker.event("synced")
    assert connected is not None and synced is not None

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
    write_started: dict[str, float] = {}
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
            write_started[dataset_id] = time.time()
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
    cpu_start, wall_start = cpu_seconds(control_pid), time.monotonic()
    epoch_start = time.time()
    worker_start = cpu_seconds(worker_pid)
    own_start = cpu_seconds(os.getpid())
    cpu_series: list[tuple[float, float]] = []
    last = (cpu_start, wall_start)
    while time.monotonic() - wall_start < options.duration:
        await deferLater(reactor, 1.0, lambda: None)
        cpu, wall = cpu_seconds(control_pid), time.monotonic()
        cpu_series.append((wall - wall_start, (cpu - last[0]) / (wall - last[1])))
        last = (cpu, wall)
    cpu_end, wall_end = cpu_seconds(control_pid), time.monotonic()
    worker_end = cpu_seconds(worker_pid)
    own_end = cpu_seconds(os.getpid())
    measuring["on"] = False
    readers.stop()
    writers.stop()

    def arrivals() -> dict[str, float]:
        return {
            e["id"]: e["at"]
            for e in worker.events
            if e["event"] == "dataset" and e["id"] in write_started
        }

    for _ in range(100):  # let the last writes reach every agent
        if len(arrivals()) >= len(write_started):
            break
        await deferLater(reactor, 0.1, lambda: None)
    await pool.closeCachedConnections()

    propagation = sorted(
        (write_started[d] - epoch_start, at - write_started[d])
        for d, at in arrivals().items()
    )
    spread = [seconds for _, seconds in propagation]
    wall = wall_end - wall_start
    return {
        "agents": options.agents,
        "duration_seconds": wall,
        "agent_connect_seconds": connected["seconds"],
        "initial_sync_seconds": synced["seconds"],
        "state_reports_per_second": options.agents,
        "rest_reads_per_second": options.reads_per_second,
        "rest_writes_per_second": options.writes_per_second,
        "control_cpu_seconds_per_wall_second": (cpu_end - cpu_start) / wall,
        "control_cpu_series": cpu_series,
        "agents_process_cpu_seconds_per_wall_second": (worker_end - worker_start)
        / wall,
        "rest_client_process_cpu_seconds_per_wall_second": (own_end - own_start) / wall,
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
            "writes_measured": len(write_started),
        },
        "propagation_series": propagation,
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
    if options.agent_worker:
        return Deferred.fromCoroutine(agent_worker(reactor, options))

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
