"""
The control benchmark's simulated agents: one worker process runs many
`AgentAMPClient` s, each with its own node certificate and TLS connection.

Run by `benchmark.control` as ``python -m benchmark.control --agent-worker``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall, deferLater

from flocker.ca import identify_certificate, load_tls_files
from flocker.control import DatasetState, Deployment, DeploymentState, NodeState
from flocker.control._protocol_agent import AgentAMPClient

__all__ = [
    "AgentWorker",
    "agent_worker",
    "die_with_parent",
    "memoized",
    "share_decoding",
]


class AgentWorker:
    """
    One worker process's agents: counts, per dataset, how many of them have it.

    :ivar agents: how many agents this process simulates.
    :ivar nodes: how many nodes the cluster has (all processes' agents).
    """

    def __init__(self, agents: int, emit: Any, nodes: int | None = None) -> None:
        self.agents = agents
        self.nodes = agents if nodes is None else nodes
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
            min(self.nodes_known.values()) == self.nodes
        )

    def progress(self) -> dict[str, Any]:
        """How many agents were pushed anything, and how many know every node."""
        return {
            "event": "progress",
            "pushed": len(self.nodes_known),
            "synced": sum(1 for n in self.nodes_known.values() if n == self.nodes),
            "agents": self.agents,
        }


def memoized(decode: Any, limit: int = 20000) -> Any:
    """
    ``decode`` (a JSON document to an immutable model value), remembering
    what it returned for equal documents (compared as canonical JSON).
    """
    cache: dict[str, Any] = {}

    def decode_once(document: Any) -> Any:
        key = json.dumps(document, sort_keys=True, separators=(",", ":"))
        found = cache.get(key)
        if found is None:
            if len(cache) >= limit:
                cache.clear()
            found = cache[key] = decode(document)
        return found

    return decode_once


#: What the simulated agents decode pushed documents with (module globals
#: of `flocker.control._protocol_agent`).
SHARED_DECODERS = (
    "deployment_from_json",
    "deployment_state_from_json",
    "node_state_from_json",
)


def share_decoding() -> None:
    """
    Let the simulated agents of this process share decoded values.

    Every agent is pushed the same documents, and decoding one node's state
    (pyrsistent values, ~80 us) for every agent is the simulator's own cost
    — N agents in one process decode N times what one real agent does on
    its own machine — not the control service's: 1000 agents spent minutes
    of CPU decoding the initial synchronisation, stopped answering
    keep-alives within the control service's 15 s, were disconnected and
    pushed the whole state again.  Each agent still receives its own push
    over its own TLS connection and applies the diff to its own document;
    only the decoding of equal documents into (immutable) values is shared.
    """
    from flocker.control import _protocol_agent

    for name in SHARED_DECODERS:
        setattr(_protocol_agent, name, memoized(getattr(_protocol_agent, name)))


async def agent_worker(reactor: Any, options: argparse.Namespace) -> None:
    """
    Run agents against the control instances until killed.

    With ``--worker-part K/P`` this process simulates agents ``i`` of the
    ``--agents`` N with ``i mod P == K``; agent ``i`` connects to the
    ``i mod len(ports)``-th agent port.  Prints JSON lines: ``connected``,
    ``synced`` (every agent of this process knows every node), ``progress``
    every 10 s until then, and one ``dataset`` line when every agent of this
    process has a dataset.
    """
    die_with_parent()

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    share_decoding()
    part, parts = (int(n) for n in options.worker_part.split("/"))
    indexes = range(part, options.agents, parts)
    worker = AgentWorker(len(indexes), emit, nodes=options.agents)
    root = Path(options.credentials)
    ports = [int(p) for p in options.agent_ports.split(",")]
    clients: list[AgentAMPClient] = []
    states: list[NodeState] = []
    started = time.monotonic()
    for n, i in enumerate(indexes):
        tls = load_tls_files(root / f"node-{i}", "node")
        uuid = str(identify_certificate(tls.credential.certificate).node_uuid)

        def updated(c: Deployment, s: DeploymentState, n: int = n) -> None:
            worker.updated(n, c, s)

        client = AgentAMPClient.for_control_service(
            reactor, "127.0.0.1", ports[i % len(ports)], tls, "dataset", updated
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

    interval = options.report_interval
    for i in range(len(clients)):
        # The first report at once (within a second), as an agent's first
        # pass; then every interval, at a phase of its own: agents on their
        # own machines do not refresh their reports in step.
        reactor.callLater(random.random(), report, i)
        loop = LoopingCall(report, i)
        loop.clock = reactor
        reactor.callLater(random.uniform(0, interval), loop.start, interval)
    last_progress = time.monotonic()
    while not worker.synced():
        await deferLater(reactor, 0.2, lambda: None)
        if time.monotonic() - last_progress >= 10:
            emit(worker.progress())
            last_progress = time.monotonic()
    emit({"event": "synced", "seconds": time.monotonic() - started})
    # What the simulated agents hold from here on is long-lived: keep the
    # cyclic garbage collector from walking it again and again (a pause of
    # this one process is a late push for all its agents at once; a real
    # agent is one small process of its own).
    gc.freeze()
    await Deferred()  # until killed


def die_with_parent() -> None:
    """In a child before exec: get SIGKILL if the benchmark dies first."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
