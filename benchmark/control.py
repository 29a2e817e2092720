"""
Control-plane benchmark: many agents over real AMP/TLS, steady REST traffic,
one control instance on the file store against three on etcd, and a leader
killed with SIGKILL.

``benchmark/run control [--agents 1000] [--duration 60] [--instances 3] ...``
runs three phases in one run, with the same simulated agents' certificates
and the same REST load, so every figure of the etcd phases has a baseline
measured minutes earlier on the same machine:

1. **baseline** — one real ``flocker-control`` process with the embedded
   file store, and a second process simulating N agents (`AgentAMPClient`,
   each with its own node certificate and connection), each reporting its
   node's state as a real dataset agent does while nothing changes: at once
   when connected, then every ``--report-interval`` seconds (30 by default:
   an agent reports only when its state differs from its last report, and
   refreshes its last convergence time every `CONVERGED_REFRESH` seconds;
   ``--report-interval 1`` gives the harsher load of a report a second).
2. **ha** — a real etcd cluster of three members (`EtcdCluster`, in a
   temporary directory) and ``--instances`` ``flocker-control`` processes
   with ``--store <etcd url> --instance-name controlN``; agent ``i``
   connects to instance ``i mod instances``, REST reads and writes go to the
   instances in turn.  A change only reaches every agent if the instances
   follow each other's configuration writes, and the agents only
   synchronise if the instances share their agents' reports.
3. **leader kill** — the instance holding ``/flocker/leader`` is killed with
   SIGKILL while writes go to the other instances every
   ``--kill-write-interval`` seconds: the seconds from the kill until a write
   sent after it is acknowledged (201), and until another instance holds the
   leader key.

In phases 1 and 2, after the initial synchronisation (every agent knows
every node; not measured) and ``--warmup`` seconds, REST reads and writes
(treq over HTTPS with a client certificate) run at a steady rate for
``--duration`` seconds.  Each write adds a dataset; the time from sending the
write until every agent has been pushed a configuration holding it is the
propagation time (the processes compare wall-clock ``time.time()`` stamps).

The agents are simulated by ``--agent-processes`` worker processes
(`benchmark._control_agents`, the same number in both phases), which share
the decoding of equal pushed documents between their agents (see
`share_decoding`): that cost is the simulator's, not the control service's.

Reported per phase: each control process's CPU seconds per wall second (from
``/proc/<pid>/stat``; the etcd members', the agents' and the REST client's
processes too, for context), REST latency p50/p99 for reads and writes,
propagation p50/p99/max; and the ratios of the etcd phase's figures to the
baseline's.  Every process shares this machine's cores, so the agents' own
work and etcd's compete with the control services'.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import attrs
import treq
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall, deferLater, react
from twisted.web.client import Agent, HTTPConnectionPool

from benchmark._control_agents import (
    agent_worker,
    die_with_parent,
)
from benchmark._control_report import (
    GOAL_KILL_TO_WRITE,
    GOAL_PROPAGATION_P99,
    compare,
    goals_met,
    kill_timeline,
    leader_name,
    percentile,
    plot,
    ratio,
    summary,
)
from benchmark._harness import RESULTS_DIR, write_results
from flocker.ca import ClusterPolicyForHTTPS, load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.control._etcd import EtcdClient
from flocker.control._leader import Leadership
from flocker.node._progress import CONVERGED_REFRESH
from flocker.testtools.etcd import EtcdCluster

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: The etcd key the leader instance holds (value ``<instance-name>/<uuid>``).
LEADER_KEY = attrs.fields(Leadership).key.default
#: The leadership lease's time to live: the longest a dead leader keeps it.
LEADER_TTL = attrs.fields(Leadership).ttl.default


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_named(name: str, parent: int | None = None) -> list[int]:
    """The pids of ``parent``'s (default: this process's) children called ``name``."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        if comm == name and ppid == parent:
            found.append(int(entry))
    return sorted(found)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmark/run control")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="unmeasured seconds")
    parser.add_argument("--reads-per-second", type=float, default=5.0)
    parser.add_argument(
        "--report-interval",
        type=float,
        default=CONVERGED_REFRESH,
        help="seconds between each simulated agent's (unchanged) reports",
    )
    parser.add_argument("--writes-per-second", type=float, default=1.0)
    parser.add_argument(
        "--instances", type=int, default=3, help="control instances on etcd"
    )
    parser.add_argument(
        "--etcd-members", type=int, default=3, help="members of the etcd cluster"
    )
    parser.add_argument(
        "--phases",
        default="baseline,ha,kill",
        help="which of baseline,ha,kill to run (kill needs ha)",
    )
    parser.add_argument(
        "--kill-write-interval",
        type=float,
        default=0.05,
        help="seconds between writes around the leader kill",
    )
    parser.add_argument(
        "--kill-after",
        type=float,
        default=2.0,
        help="seconds of writes before the leader is killed",
    )
    parser.add_argument(
        "--kill-limit",
        type=float,
        default=30.0,
        help="longest wait after the kill for a write and a new leader",
    )
    parser.add_argument(
        "--settle-limit",
        type=float,
        default=300.0,
        help="longest wait for every agent to know every node before measuring",
    )
    parser.add_argument(
        "--agent-worker",
        action="store_true",
        help=argparse.SUPPRESS,  # internal: run the agents (in a child process)
    )
    parser.add_argument("--credentials", help=argparse.SUPPRESS)
    parser.add_argument("--agent-ports", help=argparse.SUPPRESS)
    parser.add_argument("--worker-part", default="0/1", help=argparse.SUPPRESS)
    parser.add_argument(
        "--agent-processes",
        type=int,
        default=3,
        help="processes the simulated agents are spread over (in every phase)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the control services under cProfile (implies --keep-work)",
    )
    parser.add_argument("--name", default="control", help="results file name")
    parser.add_argument(
        "--results-dir", default=RESULTS_DIR, help="where the results files go"
    )
    parser.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the temporary directory (logs, etcd data) and print it",
    )
    return parser


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


@attrs.define
class Workers:
    """The agent worker processes of a phase, read as one."""

    protocols: list[_WorkerProtocol]
    pids: list[int]

    def seconds(self, name: str) -> float | None:
        """When the last worker sent event ``name`` (seconds after its start)."""
        found = [p.event(name) for p in self.protocols]
        if any(e is None for e in found):
            return None
        return max(e["seconds"] for e in found if e is not None)

    def arrivals(self, wanted: Any) -> dict[str, float]:
        """When each dataset in ``wanted`` reached every agent of every worker."""
        reached: dict[str, list[float]] = {}
        for protocol in self.protocols:
            for e in protocol.events:
                if e["event"] == "dataset" and e["id"] in wanted:
                    reached.setdefault(e["id"], []).append(e["at"])
        return {
            d: max(times)
            for d, times in reached.items()
            if len(times) == len(self.protocols)
        }

    def progress(self) -> str:
        """The workers' last progress, in words."""
        latest = [
            next((e for e in reversed(p.events) if e["event"] == "progress"), None)
            for p in self.protocols
        ]
        return ", ".join(
            "-" if e is None else f"{e['synced']}/{e['agents']} synced" for e in latest
        )


def _worker_arguments(
    options: argparse.Namespace, work: Path, controls: list[Control], part: int
) -> list[str]:
    return [
        sys.executable, "-m", "benchmark.control", "--agent-worker",
        "--agents", str(options.agents),
        "--worker-part", f"{part}/{options.agent_processes}",
        "--credentials", str(work / "credentials"),
        "--agent-ports", ",".join(str(c.ports["agent"]) for c in controls),
        "--report-interval", str(options.report_interval),
    ]  # fmt: skip


@attrs.define
class Control:
    """One ``flocker-control`` process the benchmark started."""

    name: str
    process: subprocess.Popen[bytes]
    ports: dict[str, int]

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def base(self) -> str:
        """The REST API's base URL."""
        return f"https://127.0.0.1:{self.ports['api']}"


async def _sleep(reactor: Any, seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def start_controls(
    reactor: Any,
    work: Path,
    credentials: Any,
    names: list[str],
    store: str | None,
    profile: bool = False,
) -> list[Control]:
    """
    Start one ``flocker-control`` per name; wait until each listens.  With
    ``profile``, each runs under cProfile, its figures in ``<name>/profile``
    of the work directory.
    """
    started = []
    for name in names:
        directory = work / name
        directory.mkdir(parents=True)
        args = [
            sys.executable, "-m", "flocker.control.script",
            "--data-path", str(directory / "data"),
            "--certificates-directory", str(credentials.control_directory),
            "--log-dir", str(directory / "logs"),
            "--listen-address", "127.0.0.1",
            "--port", "0",
            "--agent-port", "0",
            "--ports-file", str(directory / "ports.json"),
        ]  # fmt: skip
        if store is not None:
            args += ["--store", store, "--instance-name", name]
        if profile:
            # cProfile writes its figures when the process ends on SIGTERM.
            args[1:2] = ["-m", "cProfile", "-o", str(directory / "profile"), "-m"]
        process = subprocess.Popen(args, cwd=ROOT, preexec_fn=die_with_parent)
        started.append(Control(name, process, {}))
    for control in started:
        ports_file = work / control.name / "ports.json"
        while not ports_file.exists():
            if control.process.poll() is not None:
                stop_controls(started)
                raise SystemExit(
                    f"flocker-control {control.name} exited before listening"
                )
            await _sleep(reactor, 0.05)
        control.ports = json.loads(ports_file.read_text())
    return started


def stop_controls(controls: list[Control]) -> None:
    """Stop (SIGTERM, then SIGKILL after 10 s) and reap the control processes."""
    for control in controls:
        if control.process.poll() is None:
            control.process.terminate()
    for control in controls:
        try:
            control.process.wait(10)
        except subprocess.TimeoutExpired:
            control.process.kill()
            control.process.wait()


def _http_client(reactor: Any, credentials: Any) -> tuple[Any, HTTPConnectionPool]:
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
    return http, pool


async def run_phase(
    reactor: Any,
    options: argparse.Namespace,
    credentials: Any,
    work: Path,
    controls: list[Control],
    etcd_pids: list[int],
    after: Any = None,
    etcd: EtcdClient | None = None,
) -> dict[str, Any]:
    """
    Start the agents against ``controls``, measure, stop the agents.

    :param after: if given, ``await after(http)`` runs once measured, with
        the agents still connected (the leader kill); its result is the
        phase's ``"after"`` entry.
    """
    protocols, transports = [], []
    for part in range(options.agent_processes):
        protocol = _WorkerProtocol()
        protocols.append(protocol)
        transports.append(
            reactor.spawnProcess(
                protocol,
                sys.executable,
                _worker_arguments(options, work, controls, part),
                env=dict(os.environ),
                path=str(ROOT),
            )
        )
    workers = Workers(protocols, [t.pid for t in transports])
    http, pool = _http_client(reactor, credentials)
    try:
        results = await _measure(
            reactor, options, http, credentials, controls, etcd_pids, workers, etcd
        )
        if after is not None:
            results["after"] = await after(http)
        return results
    finally:
        await pool.closeCachedConnections()
        for transport in transports:
            transport.signalProcess("KILL")
        for protocol in protocols:
            await protocol.ended


async def _measure(
    reactor: Any,
    options: argparse.Namespace,
    http: Any,
    credentials: Any,
    controls: list[Control],
    etcd_pids: list[int],
    workers: Workers,
    etcd: EtcdClient | None,
) -> dict[str, Any]:
    # The initial synchronisation (every agent learns every node's state,
    # through etcd for the nodes of other instances) is not measured.
    settle_started = last_progress = time.monotonic()
    while workers.seconds("synced") is None:
        if time.monotonic() - settle_started > options.settle_limit:
            raise SystemExit(
                f"the agents did not synchronise within {options.settle_limit} s "
                f"({workers.progress()})"
            )
        if time.monotonic() - last_progress > 10:
            last_progress = time.monotonic()
            print(f"settling: {workers.progress()}", file=sys.stderr)
        for control in controls:
            if control.process.poll() is not None:
                raise SystemExit(f"flocker-control {control.name} exited")
        await _sleep(reactor, 0.2)
    connected = workers.seconds("connected")
    synced = workers.seconds("synced")
    print(
        f"synchronised in {synced:.1f} s; {options.warmup:g} s warm-up, "
        f"then {options.duration:g} s measured",
        file=sys.stderr,
    )

    # -- REST -----------------------------------------------------------------
    measuring = {"on": False}
    read_latency: list[float] = []
    write_latency: list[float] = []
    write_started: dict[str, float] = {}
    errors: list[str] = []
    node_uuids = [str(u) for u in credentials.node_uuids]
    counter = {"read": 0, "write": 0}

    async def read(n: int) -> None:
        path = "/v1/configuration/datasets" if n % 2 else "/v1/state/nodes"
        base = controls[(n // 2) % len(controls)].base
        start = time.monotonic()
        response = await http.get(base + path, timeout=30)
        await response.content()
        if response.code != 200:
            errors.append(f"GET {base}{path}: {response.code}")
        if measuring["on"]:
            read_latency.append(time.monotonic() - start)

    async def write(n: int) -> None:
        dataset_id = str(uuid4())
        base = controls[n % len(controls)].base
        start = time.monotonic()
        if measuring["on"]:
            write_started[dataset_id] = time.time()
        response = await http.post(
            base + "/v1/configuration/datasets",
            json={"primary": random.choice(node_uuids), "dataset_id": dataset_id},
            timeout=30,
        )
        body = await response.content()
        if response.code != 201:
            errors.append(f"POST {base}: {response.code} {body[:200]!r}")
        if measuring["on"]:
            write_latency.append(time.monotonic() - start)

    def fire(kind: str) -> None:
        counter[kind] += 1
        coroutine = read if kind == "read" else write
        Deferred.fromCoroutine(coroutine(counter[kind])).addErrback(
            lambda f: errors.append(f"{kind}: {f.getErrorMessage()}")
        )

    readers = LoopingCall(fire, "read")
    readers.clock = reactor
    writers = LoopingCall(fire, "write")
    writers.clock = reactor
    readers.start(1.0 / options.reads_per_second, now=False)
    writers.start(1.0 / options.writes_per_second, now=False)

    await _sleep(reactor, options.warmup)

    # -- measurement ----------------------------------------------------------
    measuring["on"] = True

    def sample() -> dict[str, float]:
        now = {c.name: cpu_seconds(c.pid) for c in controls}
        if etcd_pids:
            now["etcd"] = sum(cpu_seconds(p) for p in etcd_pids)
        now["agents"] = sum(cpu_seconds(p) for p in workers.pids)
        now["rest_client"] = cpu_seconds(os.getpid())
        return now

    revision_start = None
    if etcd is not None:
        revision_start = (await etcd.get_with_revision(LEADER_KEY)).revision
    wall_start = time.monotonic()
    epoch_start = time.time()
    load_start = os.getloadavg()[0]
    first = last = sample()
    last_wall = wall_start
    cpu_series: dict[str, list[tuple[float, float]]] = {name: [] for name in first}
    while time.monotonic() - wall_start < options.duration:
        await _sleep(reactor, 1.0)
        now, wall = sample(), time.monotonic()
        for name in now:
            cpu_series[name].append(
                (wall - wall_start, (now[name] - last[name]) / (wall - last_wall))
            )
        last, last_wall = now, wall
    wall = last_wall - wall_start
    etcd_writes = None
    if etcd is not None and revision_start is not None:
        revision_end = (await etcd.get_with_revision(LEADER_KEY)).revision
        etcd_writes = (revision_end - revision_start) / wall
    measuring["on"] = False
    readers.stop()
    writers.stop()
    load_end = os.getloadavg()[0]

    for _ in range(100):  # let the last writes reach every agent
        if len(workers.arrivals(write_started)) >= len(write_started):
            break
        await _sleep(reactor, 0.1)

    propagation = sorted(
        (write_started[d] - epoch_start, at - write_started[d])
        for d, at in workers.arrivals(write_started).items()
    )
    spread = [seconds for _, seconds in propagation]
    cpu = {name: (last[name] - first[name]) / wall for name in first}
    per_instance = {c.name: cpu[c.name] for c in controls}
    return {
        "instances": len(controls),
        "agents_per_instance": {
            c.name: len(range(i, options.agents, len(controls)))
            for i, c in enumerate(controls)
        },
        "duration_seconds": wall,
        "load_average_1min": {"start": load_start, "end": load_end},
        "agent_processes": len(workers.pids),
        "agent_connect_seconds": connected,
        "initial_sync_seconds": synced,
        "state_reports_per_second": options.agents / options.report_interval,
        "rest_reads_per_second": options.reads_per_second,
        "rest_writes_per_second": options.writes_per_second,
        "control_cpu_seconds_per_wall_second": sum(per_instance.values()),
        "control_cpu_per_instance": per_instance,
        "etcd_cpu_seconds_per_wall_second": cpu.get("etcd"),
        "etcd_writes_per_second": etcd_writes,
        "agents_process_cpu_seconds_per_wall_second": cpu["agents"],
        "rest_client_process_cpu_seconds_per_wall_second": cpu["rest_client"],
        "cpu_series": cpu_series,
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


async def leader_kill(
    reactor: Any,
    options: argparse.Namespace,
    http: Any,
    controls: list[Control],
    etcd: EtcdClient,
    node_uuids: list[str],
) -> dict[str, Any]:
    """
    Kill the leader instance with SIGKILL while writing to the others.

    Each surviving instance gets a write every ``--kill-write-interval``
    seconds (or as soon as its last write is answered, if that takes
    longer), from ``--kill-after`` seconds before the kill until a write
    sent after it was acknowledged and another instance holds the leader
    key (or ``--kill-limit`` seconds), plus one second.
    """
    found = None
    deadline = time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        found = await etcd.get(LEADER_KEY)
        if found is None:
            await _sleep(reactor, 0.1)
    if found is None:
        raise SystemExit(f"no control instance holds {LEADER_KEY}")
    holder = found.value
    victim = next(c for c in controls if c.name == leader_name(holder))
    survivors = [c for c in controls if c is not victim]
    attempts: list[dict[str, Any]] = []
    writing = {"on": True}

    async def write(target: Control) -> dict[str, Any]:
        attempt: dict[str, Any] = {"instance": target.name, "sent": time.monotonic()}
        try:
            response = await http.post(
                target.base + "/v1/configuration/datasets",
                json={"primary": random.choice(node_uuids), "dataset_id": str(uuid4())},
                timeout=10,
            )
            body = await response.content()
            attempt["code"] = response.code
            if response.code != 201:
                attempt["error"] = body[:300].decode("utf-8", "replace")
        except Exception as e:
            attempt["code"] = None
            attempt["error"] = str(e) or repr(e)
        attempt["answered"] = time.monotonic()
        return attempt

    async def writer(target: Control) -> None:
        # One write in flight per survivor (a closed loop): the writes
        # themselves never queue up behind each other.
        while writing["on"]:
            started = time.monotonic()
            attempts.append(await write(target))
            elapsed = time.monotonic() - started
            await _sleep(reactor, max(0.0, options.kill_write_interval - elapsed))

    writers = [Deferred.fromCoroutine(writer(c)) for c in survivors]
    await _sleep(reactor, options.kill_after)

    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    new_leader: tuple[float, str] | None = None
    while time.monotonic() - killed < options.kill_limit:
        if new_leader is None:
            try:
                current = await etcd.get(LEADER_KEY)
            except Exception:
                current = None
            if current is not None and current.value != holder:
                new_leader = (time.monotonic() - killed, leader_name(current.value))
        acknowledged = any(a["sent"] >= killed and a["code"] == 201 for a in attempts)
        if new_leader is not None and acknowledged:
            break
        await _sleep(reactor, 0.05)
    await _sleep(reactor, 1.0)
    writing["on"] = False
    await DeferredList(writers)
    victim.process.wait()

    result = kill_timeline(attempts, killed)
    result.update(
        {
            "killed_instance": victim.name,
            "survivors": [c.name for c in survivors],
            "write_interval_seconds": options.kill_write_interval,
            "writers": "one write in flight per survivor, one started every "
            f"{options.kill_write_interval:g} s or when the last is answered",
            "errors_after_kill": sorted(
                {a["error"] for a in attempts if a["sent"] >= killed and "error" in a}
            )[:5],
            "kill_to_new_leader_seconds": None if new_leader is None else new_leader[0],
            "new_leader": None if new_leader is None else new_leader[1],
            "leader_lease_ttl_seconds": LEADER_TTL,
            "writes_series": [
                (a["sent"] - killed, a["answered"] - a["sent"], a["code"])
                for a in sorted(attempts, key=lambda a: a["sent"])
            ],
        }
    )
    return result


async def run(reactor: Any, options: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario's phases; the results dict."""
    phases = set(options.phases.split(","))
    unknown = phases - {"baseline", "ha", "kill"}
    if unknown or ("kill" in phases and "ha" not in phases):
        raise SystemExit(
            f"--phases: baseline, ha and kill (kill needs ha): {options.phases}"
        )
    work = Path(tempfile.mkdtemp(prefix="flocker-bench-control-"))
    credentials_dir = work / "credentials"
    credentials_dir.mkdir()
    credentials = make_test_cluster_credentials(
        credentials_dir, nodes=options.agents, users=("bench",)
    )
    node_uuids = [str(u) for u in credentials.node_uuids]
    results: dict[str, Any] = {
        "agents": options.agents,
        "duration_seconds": options.duration,
        "simulation": {
            "agent_processes": options.agent_processes,
            "agent_decoding": "the simulated agents of one process share the "
            "decoded (immutable) values of equal pushed documents; each agent "
            "still gets its own push over its own TLS connection and applies "
            "its own diff",
        },
        "goals": {
            "change_to_all_agents_p99_seconds": GOAL_PROPAGATION_P99,
            "kill_to_first_acknowledged_write_seconds": GOAL_KILL_TO_WRITE,
        },
    }
    try:
        if "baseline" in phases:
            controls = await start_controls(
                reactor, work / "baseline", credentials, ["control"], None,
                options.profile,
            )  # fmt: skip
            try:
                results["baseline_file_store"] = await run_phase(
                    reactor, options, credentials, work, controls, []
                )
            finally:
                stop_controls(controls)
        if "ha" in phases:
            results["ha_etcd_store"] = await _ha(
                reactor, options, credentials, work, node_uuids, "kill" in phases
            )
    finally:
        if options.keep_work or options.profile:
            print("work directory:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    ha = results.get("ha_etcd_store")
    if ha is not None and "after" in ha:
        results["leader_kill"] = ha.pop("after")
    results["ratios"] = compare(results.get("baseline_file_store"), ha)
    kill = results.get("leader_kill")
    if kill is not None and ha is not None:
        results["ratios"]["kill_to_first_write_over_ha_write_p50"] = ratio(
            kill["kill_to_first_acknowledged_write_seconds"],
            ha["rest_write_latency_seconds"]["p50"],
        )
        results["ratios"]["kill_to_new_leader_over_lease_ttl"] = ratio(
            kill["kill_to_new_leader_seconds"], LEADER_TTL
        )
    results["goals_met"] = goals_met(results)
    return results


async def _ha(
    reactor: Any,
    options: argparse.Namespace,
    credentials: Any,
    work: Path,
    node_uuids: list[str],
    kill: bool,
) -> dict[str, Any]:
    """The etcd phase (and the leader kill after it, as its ``"after"``)."""
    cluster = EtcdCluster(work / "etcd", members=options.etcd_members)
    etcd = EtcdClient(reactor, cluster.endpoints)
    controls: list[Control] = []
    try:
        etcd_pids = children_named("etcd")
        names = [f"control{i + 1}" for i in range(options.instances)]
        controls = await start_controls(
            reactor, work / "ha", credentials, names, cluster.url, options.profile
        )

        async def after(http: Any) -> dict[str, Any]:
            return await leader_kill(reactor, options, http, controls, etcd, node_uuids)

        results = await run_phase(
            reactor,
            options,
            credentials,
            work,
            controls,
            etcd_pids,
            after if kill else None,
            etcd,
        )
        results["etcd_members"] = options.etcd_members
        return results
    finally:
        stop_controls(controls)
        await etcd.close()
        cluster.stop()


def main(reactor: Any, argv: list[str]) -> Deferred[None]:
    """Run the scenario and write ``<results-dir>/<name>.json`` and ``.png``."""
    options = _parser().parse_args(argv)
    if options.agent_worker:
        return Deferred.fromCoroutine(agent_worker(reactor, options))

    async def go() -> None:
        results = await run(reactor, options)
        paths = write_results(options.name, results, plot(results), options.results_dir)
        print(json.dumps(summary(results), indent=2))
        print("wrote", *[p for p in paths if p])

    return Deferred.fromCoroutine(go())


if __name__ == "__main__":
    react(main, [sys.argv[1:]])
