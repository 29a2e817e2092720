"""
Acceptance tests: automatic failover with self-fencing, and failback, on a
real three-node local cluster (``admin/lab``: real zfs-fuse pools, real
Docker, real TLS, real iptables rules on ``lo``) — a node lost outright, a
primary partitioned from everyone, and a node that comes back before
``failover_after``.  Nothing here asks the REST API for a failover: every
request that changes anything is made before the fault.

The clusters run with short timings (agents fence after 4 s, the control
service fails over after 10 s of silence) and on node addresses of their
own, so cutting a node off touches no other local cluster.
"""

import contextlib
import json
import os
import subprocess
import threading
import time
import urllib.error
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

from .test_acceptance_containers import deploy_counter, request
from .test_acceptance_datasets import api
from .test_acceptance_replication import (
    ExposureWatch,
    replicated_since,
    set_replicas,
    state_entry,
)

pytestmark = pytest.mark.acceptance

MIB = 1024 * 1024
FENCE_AFTER = 4.0
FAILOVER_AFTER = 10.0
DIVERGED_PREFIX = "flocker-diverged-"


def failover_cluster(
    make_lab: Callable[..., dict[str, Any]], failover_after: float = FAILOVER_AFTER
) -> dict[str, Any]:
    """Three nodes with short fencing and failover timings."""
    return make_lab(nodes=3, fence_after=FENCE_AFTER, failover_after=failover_after)


class TimedWriter(threading.Thread):
    """
    Sends numbered writes through one node's published port (the routing
    layer takes them wherever the application runs), keeping each
    acknowledged write with its wall-clock time.
    """

    def __init__(self, address: str, port: int) -> None:
        super().__init__(daemon=True)
        self.address, self.port = address, port
        self.acknowledged: list[tuple[str, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        """
        Write w0, w1, … until stopped, at most ~50 per second; a write not
        acknowledged is sent again until it is (so a request lost or
        answered late on a loaded machine leaves no hole, only perhaps the
        same write logged twice).
        """
        n = 0
        while not self.stopping.is_set():
            if request(self.address, self.port, f"w{n}", timeout=1.0) is not None:
                self.acknowledged.append((f"w{n}", time.time()))
                n += 1
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop writing."""
        self.stopping.set()
        self.join()


def configured(cluster: dict[str, Any], dataset_id: str) -> dict[str, Any] | None:
    """The dataset's entry in /v1/configuration/datasets, or None."""
    with contextlib.suppress(OSError):
        entries: list[dict[str, Any]] = api(cluster, "GET", "/v1/configuration/datasets")
        for entry in entries:
            if entry["dataset_id"] == dataset_id:
                return entry
    return None


def replicate_automatically(
    cluster: dict[str, Any], dataset_id: str, replicas: Iterable[dict[str, Any]]
) -> None:
    """Standing replicas on ``replicas``, a round every second, automatic failover."""
    set_replicas(
        cluster, dataset_id, replicas, interval_seconds=1, failover="automatic"
    )


def exposed_entry(cluster: dict[str, Any], dataset_id: str) -> dict[str, Any]:
    """The dataset's state entry once it is exposed (has a path), waiting."""

    def exposed() -> dict[str, Any] | None:
        e = state_entry(cluster, dataset_id)
        return e if e and e.get("path") else None

    entry = wait_for(exposed, 60, "the dataset exposed")
    assert entry is not None  # wait_for returns a true value
    return entry


def write_bulk(cluster: dict[str, Any], dataset_id: str, size: int, name: str = "bulk") -> None:
    """Write ``size`` random bytes into the exposed dataset, through its mount."""
    entry = exposed_entry(cluster, dataset_id)
    with open(os.path.join(entry["path"], name), "wb") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())


def node_named(cluster: dict[str, Any], node_uuid: str) -> dict[str, Any]:
    """The lab's node with ``node_uuid``."""
    nodes: list[dict[str, Any]] = cluster["nodes"]
    [node] = [n for n in nodes if n["uuid"] == node_uuid]
    return node


def logged(node: dict[str, Any], agent: str = "dataset") -> list[Any]:
    """Every eliot message a node's agent logged so far."""
    path = os.path.join(node["log_dir"], f"flocker-{agent}-agent.log")
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def control_log(cluster: dict[str, Any]) -> list[Any]:
    """Every eliot message the control service logged so far."""
    path = os.path.join(cluster["control"]["log_dir"], "flocker-control.log")
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def automatic_failovers(cluster: dict[str, Any], dataset_id: str) -> list[dict[str, Any]]:
    """The succeeded ``flocker:control:failover:automatic`` actions of a dataset."""
    messages = control_log(cluster)
    started = {
        m["task_uuid"]: m for m in messages
        if m.get("action_type") == "flocker:control:failover:automatic"
        and m.get("action_status") == "started"
        and m.get("dataset_id") == dataset_id
    }
    return [
        {**started[m["task_uuid"]], **m} for m in messages
        if m.get("action_type") == "flocker:control:failover:automatic"
        and m.get("action_status") == "succeeded"
        and m["task_uuid"] in started
    ]


def bytes_pushed_to(node: dict[str, Any], peer_address: str, since: float) -> int:
    """The bytes ``node``'s dataset agent sent in streams to ``peer_address`` since ``since``."""
    messages = logged(node)
    # An action's messages share its task and its task level but the last part.
    starts = {
        (m["task_uuid"], tuple(m["task_level"][:-1])) for m in messages
        if m.get("action_type") == "flocker:volume:transfer:send"
        and m.get("action_status") == "started"
        and peer_address in str(m.get("peer", ""))
        and m.get("timestamp", 0) >= since
    }
    return sum(
        m.get("bytes", 0) for m in messages
        if m.get("action_type") == "flocker:volume:transfer:send"
        and m.get("action_status") == "succeeded"
        and (m["task_uuid"], tuple(m["task_level"][:-1])) in starts
    )


def set_aside_snapshots(
    cluster: dict[str, Any], dataset_id: str, node: dict[str, Any]
) -> list[Any]:
    """The set-aside (diverged) snapshots the snapshots API lists on ``node``."""
    try:
        listed = api(cluster, "GET", f"/v1/datasets/{dataset_id}/snapshots")
    except (OSError, urllib.error.HTTPError):
        return []
    return [
        s for s in listed
        if s.get("node_uuid") == node["uuid"] and s["name"].startswith(DIVERGED_PREFIX)
    ]


def rejoined(cluster: dict[str, Any], dataset_id: str, node: dict[str, Any]) -> bool:
    """
    Whether the state lists ``node``'s copy as a standing replica of the
    current epoch (not as diverged), with the snapshots it set aside.
    """
    entry = state_entry(cluster, dataset_id) or {}
    mine = [r for r in entry.get("replicas", []) if r["node_uuid"] == node["uuid"]]
    diverged = [d for d in entry.get("diverged", []) if d["node_uuid"] == node["uuid"]]
    return bool(mine) and not diverged and bool(mine[0].get("set_aside"))


def answering_through(cluster: dict[str, Any], port: int, nodes: Iterable[dict[str, Any]]) -> bool:
    """Whether a probe through any of ``nodes``' published port is answered."""
    return any(request(n["address"], port, "probe", timeout=1.0) is not None for n in nodes)


def requests_log(cluster: dict[str, Any], dataset_id: str) -> list[str]:
    """
    The ``w…`` lines of the counter's log, read where the dataset is
    exposed, each once (a write sent again after a late answer is logged
    twice).
    """
    entry = exposed_entry(cluster, dataset_id)
    with open(os.path.join(entry["path"], "requests.log")) as handle:
        lines = [x for x in handle.read().split() if x.startswith("w")]
    return list(dict.fromkeys(lines))


def test_a_node_lost_outright_fails_over_and_rejoins_without_a_full_resend(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    Node 1 loses power under a steady writer (agents and containers
    SIGKILLed, its packets dropped): with nobody asking, the dataset and
    its application come back on a replica node within failover_after and
    a little, reached through node 3's port; no two nodes ever expose the
    dataset; the new primary holds a prefix of the acknowledged writes
    with no holes, missing only writes acknowledged after the snapshot it
    started from.  When node 1 returns it keeps its divergence as a
    ``flocker-diverged-…`` snapshot, becomes a replica, and is sent far
    less than the dataset's size.
    """
    cluster = failover_cluster(make_lab)
    one, two, three = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, one)
    write_bulk(cluster, dataset_id, 32 * MIB)
    replicate_automatically(cluster, dataset_id, [two, three])
    watch = ExposureWatch(cluster, dataset_id)
    watch.start()
    writer = TimedWriter(three["address"], port)
    writer.start()
    wait_for(lambda: len(writer.acknowledged) >= 50, 120, "50 acknowledged writes")
    at = time.time()
    wait_for(lambda: replicated_since(cluster, dataset_id, [two, three], at + 1), 120,
             "a replication round after those writes on both replicas")

    killed = time.time()
    lab.stop_node(cluster["dir"], 1, power_cut=True)
    # Writes stop with the node: those after the starting snapshot are
    # lost, and a write numbered after them must not look like a hole.
    time.sleep(0.5)
    writer.stop()
    wait_for(lambda: answering_through(cluster, port, [two, three]), 180,
             "the application to answer again from another node")
    answered = time.time()

    def moved_off_node_1() -> dict[str, Any] | None:
        c = configured(cluster, dataset_id)
        return c if c and c["primary"] != one["uuid"] else None

    entry = wait_for(moved_off_node_1, 30, "the configuration to name a new primary")
    assert entry is not None  # wait_for returns a true value
    new_primary = node_named(cluster, entry["primary"])
    assert entry.get("failover_snapshot"), entry
    lines = requests_log(cluster, dataset_id)
    assert watch.most() == 1
    # A prefix of what was acknowledged, with no holes.
    assert lines == [f"w{n}" for n in range(len(lines))]
    acknowledged = [w for w, _ in writer.acknowledged]
    assert acknowledged[: len(lines)] == lines[: len(acknowledged)]
    # Only writes after the starting snapshot were lost: its name carries
    # the primary's clock, to the nanosecond, when it was taken.
    prefix = "flocker-replica-"
    assert entry["failover_snapshot"].startswith(prefix), entry
    taken = int(entry["failover_snapshot"][len(prefix):].split("-")[0]) / 1e9
    before = [w for w, t in writer.acknowledged if t < taken - 1]
    assert len(lines) >= len(before)
    # One failover task, with its reason, and none asked through the API.
    [failover] = automatic_failovers(cluster, dataset_id)
    assert failover["to"] == new_primary["uuid"]
    assert "reason" in failover
    assert answered - killed < FAILOVER_AFTER + 60

    # Node 1 comes back: its divergence set aside, a replica again.
    returned = time.time()
    lab.start_node(cluster["dir"], 1)
    wait_for(lambda: set_aside_snapshots(cluster, dataset_id, one), 180,
             "node 1 to keep its divergence as a flocker-diverged snapshot")
    wait_for(lambda: rejoined(cluster, dataset_id, one), 180,
             "node 1 to become a replica of the new epoch")
    since = time.time()
    wait_for(lambda: replicated_since(cluster, dataset_id, [one], since + 1), 120,
             "a replication round to node 1")
    sent = bytes_pushed_to(new_primary, one["address"], returned)
    assert 0 < sent < 4 * MIB, sent
    assert request(new_primary["address"], port, "after-rejoin") is not None


def container_running(node: dict[str, Any], name: str) -> bool:
    """Whether ``node``'s container agent runs a container of application ``name``."""
    import docker

    client = docker.from_env()
    try:
        return any(
            name in container.name
            for container in client.containers.list(
                filters={"label": f"org.flocker.node={node['uuid']}"}
            )
        )
    finally:
        client.close()


def writable_here(node: dict[str, Any], dataset_id: str) -> bool:
    """Whether ``node``'s copy of the dataset is mounted writable (read-only off)."""
    result = subprocess.run(
        ["zfs", "get", "-H", "-o", "value", "readonly,mounted", f"{node['pool']}/{dataset_id}"],
        capture_output=True, text=True,
    )
    return result.returncode == 0 and result.stdout.split() == ["off", "yes"]


class ServingWatch(threading.Thread):
    """
    Samples, every 100 ms, whether the partitioned node still serves
    writes (its container runs on a writable copy) and whether another
    node runs the application.
    """

    def __init__(
        self,
        cut: dict[str, Any],
        others: list[dict[str, Any]],
        name: str,
        dataset_id: str,
        port: int,
    ) -> None:
        super().__init__(daemon=True)
        self.cut, self.others = cut, others
        self.name, self.dataset_id, self.port = name, dataset_id, port
        self.samples: list[tuple[float, bool, bool]] = []  # (time, old serves, new serves)
        self.stopping = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stopping.is_set():
            old = container_running(self.cut, self.name) and writable_here(self.cut, self.dataset_id)
            # Not a request through the others' ports: before the failover
            # their routing takes it to node 1.
            new = any(container_running(n, self.name) for n in self.others)
            self.samples.append((time.time(), old, new))
            time.sleep(0.1)

    def stop(self) -> list[tuple[float, bool, bool]]:
        """Stop sampling; the samples."""
        self.stopping.set()
        self.join()
        return self.samples


def test_a_partitioned_primary_fences_itself_before_a_replica_is_promoted(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    Node 1 is cut off from everyone while its agents and container run on:
    it stops its application and makes its copy read-only after
    fence_after, before the control service promotes a replica after
    failover_after, so at no sampled moment do both serve writes.  When
    the partition ends, node 1 rejoins as a replica of the new epoch.
    """
    cluster = failover_cluster(make_lab)
    one, two, three = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, one)
    replicate_automatically(cluster, dataset_id, [two, three])
    at = time.time()
    wait_for(lambda: replicated_since(cluster, dataset_id, [two, three], at + 1), 120,
             "a replication round on both replicas")
    assert writable_here(one, dataset_id)
    watch = ServingWatch(one, [two, three], name, dataset_id, port)
    watch.start()
    lab.cut_node(cluster["dir"], 1)
    try:
        # Routing reaches containers by their bridge address, so node 1's
        # application would answer through the other nodes' ports too:
        # wait for it to run on another node.
        wait_for(lambda: any(container_running(n, name) for n in (two, three))
                 and answering_through(cluster, port, [two, three]), 180,
                 "the application to run and answer on another node")
        time.sleep(1)
        samples = watch.stop()
        fenced = wait_for(
            lambda: [m for m in logged(one) if m.get("message_type") == "flocker:node:fence:up"
                     or m.get("action_type") == "flocker:node:fence:up"],
            10, "node 1 to log its fence",
        )
        assert fenced
    finally:
        if watch.is_alive():
            watch.stop()
        lab.start_node(cluster["dir"], 1)
    assert not any(old and new for _, old, new in samples), [
        s for s in samples if s[1] or s[2]
    ][:20]
    stopped = [t for t, old, _ in samples if not old]
    served = [t for t, _, new in samples if new]
    assert stopped and served and min(stopped) < min(served)
    entry = configured(cluster, dataset_id)
    assert entry is not None
    assert entry["epoch"] == 1 and entry["primary"] != one["uuid"]
    wait_for(lambda: rejoined(cluster, dataset_id, one), 180, "node 1 to rejoin as a replica")


def test_a_node_back_before_failover_after_is_not_failed_over(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    Node 1 is cut off for longer than fence_after but shorter than
    failover_after: it fences itself (its application stops), then, when
    it hears the control service again at the same epoch, exposes its copy
    and runs its application again by itself; nothing fails over.
    """
    # Long enough a failover_after for a cut well past fence_after, and the
    # agents' reconnection, to fit in it.
    failover_after = FENCE_AFTER + 25
    cluster = failover_cluster(make_lab, failover_after)
    one, two, three = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, one)
    replicate_automatically(cluster, dataset_id, [two, three])
    at = time.time()
    wait_for(lambda: replicated_since(cluster, dataset_id, [two, three], at + 1), 120,
             "a replication round on both replicas")
    cut = time.monotonic()
    lab.cut_node(cluster["dir"], 1)
    try:
        wait_for(lambda: not container_running(one, name), failover_after - 1,
                 "node 1 to stop its application (fenced)")
        # Cut off for longer than fence_after and its reconnection attempts.
        time.sleep(max(0.0, cut + FENCE_AFTER + 4 - time.monotonic()))
    finally:
        lab.start_node(cluster["dir"], 1)
    wait_for(lambda: request(one["address"], port, "back") is not None, 120,
             "the application to answer on node 1 again")
    entry = configured(cluster, dataset_id)
    assert entry is not None
    assert entry["epoch"] == 0 and entry["primary"] == one["uuid"]
    assert automatic_failovers(cluster, dataset_id) == []
    # It stays put: well past failover_after, still no failover.
    time.sleep(failover_after)
    entry = configured(cluster, dataset_id)
    assert entry is not None
    assert entry["epoch"] == 0
    assert request(one["address"], port, "still-here") is not None
