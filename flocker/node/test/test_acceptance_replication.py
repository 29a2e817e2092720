"""
Acceptance tests: standing replicas and manual failover on a real local
cluster (``admin/lab``: real zfs-fuse pools, real Docker, real TLS),
driven through the REST API — replicas following a steady writer, the
replica set changed, pruning, a move to a replica, a node lost outright
and failed over by hand, and a forced failover while the primary runs.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from uuid import uuid4

import pytest

from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

from .test_acceptance_containers import Writer, deploy_counter, request, running_on
from .test_acceptance_datasets import api, api_error, wait_exposed

pytestmark = pytest.mark.acceptance

MIB = 1024 * 1024
REPLICA_PREFIX = "flocker-replica-"


def state_entry(cluster: dict[str, Any], dataset_id: str) -> dict[str, Any] | None:
    """The dataset's entry in /v1/state/datasets (exposed primaries), or None."""
    with contextlib.suppress(OSError):
        entries: list[dict[str, Any]] = api(cluster, "GET", "/v1/state/datasets")
        for entry in entries:
            if entry["dataset_id"] == dataset_id:
                return entry
    return None


def exposing(cluster: dict[str, Any], dataset_id: str) -> list[str] | None:
    """The nodes the state shows exposing the dataset (with a path)."""
    try:
        entries = api(cluster, "GET", "/v1/state/datasets")
    except OSError:
        return None
    return [e["primary"] for e in entries if e["dataset_id"] == dataset_id and e.get("path")]


class ExposureWatch(threading.Thread):
    """Polls the state throughout a test: the most nodes ever exposing a dataset."""

    def __init__(self, cluster: dict[str, Any], dataset_id: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.dataset_id = cluster, dataset_id
        self.samples: list[list[str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        """Sample every 50 ms until stopped."""
        while not self.stopping.is_set():
            nodes = exposing(self.cluster, self.dataset_id)
            if nodes is not None:
                self.samples.append(nodes)
            time.sleep(0.05)

    def most(self) -> int:
        """Stop and return the largest number of nodes seen exposing it at once."""
        self.stopping.set()
        self.join()
        return max((len(s) for s in self.samples), default=0)


def zfs_snapshots(pool: str, dataset_id: str) -> list[str]:
    """Names of a dataset's snapshots in a pool (empty if it is not there)."""
    out = subprocess.run(
        ["zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-r", f"{pool}/{dataset_id}"],
        capture_output=True, text=True,
    ).stdout.split()
    return [name.split("@", 1)[1] for name in out if "@" in name]


def zfs_has(pool: str, dataset_id: str) -> bool:
    """Whether a pool holds the dataset."""
    return subprocess.run(
        ["zfs", "list", "-H", f"{pool}/{dataset_id}"], capture_output=True
    ).returncode == 0


def replica_lags(cluster: dict[str, Any], dataset_id: str) -> dict[str, float | None]:
    """Replica node → lag_seconds, from the state (empty if not reported)."""
    entry = state_entry(cluster, dataset_id) or {}
    return {r["node_uuid"]: r.get("lag_seconds") for r in entry.get("replicas", [])}


def replicated_to(
    cluster: dict[str, Any],
    dataset_id: str,
    nodes: Iterable[dict[str, Any]],
    within: float = 10.0,
) -> bool:
    """Whether every one of ``nodes`` reports a replica no older than ``within`` seconds."""
    lags = replica_lags(cluster, dataset_id)
    return all((lag := lags.get(n["uuid"])) is not None and lag <= within for n in nodes)


def replicated_since(
    cluster: dict[str, Any], dataset_id: str, nodes: Iterable[dict[str, Any]], since: float
) -> bool:
    """Whether every one of ``nodes`` holds a replica snapshot taken at ``since`` or later."""
    entry = state_entry(cluster, dataset_id) or {}
    taken = {r["node_uuid"]: r.get("replicated_at") for r in entry.get("replicas", [])}
    return all((taken.get(n["uuid"]) or 0) >= since for n in nodes)


class FileWriter(threading.Thread):
    """Appends a numbered line to a file in a dataset every 20 ms, fsyncing each."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.written = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        """Write until stopped (or the dataset goes away)."""
        with open(os.path.join(self.path, "log"), "a") as handle:
            while not self.stopping.is_set():
                try:
                    handle.write(f"line{self.written}\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    return
                self.written += 1
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop writing."""
        self.stopping.set()
        self.join()


def set_replicas(
    cluster: dict[str, Any],
    dataset_id: str,
    nodes: Iterable[dict[str, Any]],
    **replication: Any,
) -> Any:
    """Replace the dataset's standing replicas; the reply."""
    body: dict[str, Any] = {"replicas": [n["uuid"] for n in nodes]}
    if replication:
        body["replication"] = replication
    return api(cluster, "POST", f"/v1/configuration/datasets/{dataset_id}", body)


def test_replicas_follow_a_writer_and_the_replica_set(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    Two standing replicas follow a steady writer with a small, reported lag
    and are never exposed; pruning keeps few replication snapshots and
    always one the primary and each replica share; removing a replica
    destroys its copy and adding one back fills it again; moving the
    primary to a replica node sends only the final increment.
    """
    cluster = make_lab(nodes=3)
    one, two, three = cluster["nodes"]
    dataset_id = str(uuid4())
    api(cluster, "POST", "/v1/configuration/datasets", {
        "primary": one["uuid"], "dataset_id": dataset_id,
        "replicas": [two["uuid"], three["uuid"]],
        "replication": {"interval_seconds": 0},
    })
    state = wait_exposed(cluster, dataset_id, one)
    with open(os.path.join(state["path"], "bulk"), "wb") as handle:
        handle.write(os.urandom(32 * MIB))
    watch = ExposureWatch(cluster, dataset_id)
    watch.start()
    writer = FileWriter(state["path"])
    writer.start()
    try:
        wait_for(lambda: replicated_to(cluster, dataset_id, [two, three]), 120,
                 "both replicas to follow the writer")
        # The lag stays small while the writer goes on.
        time.sleep(5)
        lags = replica_lags(cluster, dataset_id)
        assert all(lag is not None and lag < 10 for lag in lags.values()), lags
        for node in (one, two, three):
            ours = [s for s in zfs_snapshots(node["pool"], dataset_id) if s.startswith(REPLICA_PREFIX)]
            assert 1 <= len(ours) <= 6, (node["address"], ours)
        shared = set(zfs_snapshots(one["pool"], dataset_id)) & set(zfs_snapshots(two["pool"], dataset_id))
        assert any(s.startswith(REPLICA_PREFIX) for s in shared)

        # Remove node 3's replica, then add it back.
        set_replicas(cluster, dataset_id, [two])
        wait_for(lambda: not zfs_has(three["pool"], dataset_id), 60, "node 3's copy to go")
        set_replicas(cluster, dataset_id, [two, three])
        wait_for(lambda: replicated_to(cluster, dataset_id, [two, three]), 120, "node 3 to follow again")
    finally:
        writer.stop()
    assert watch.most() == 1

    # A move to a current replica sends only what changed since its last round.
    with open(os.path.join(state["path"], "log")) as handle:
        written = handle.read()
    api(cluster, "POST", f"/v1/configuration/datasets/{dataset_id}", {"primary": two["uuid"]})
    moved = wait_exposed(cluster, dataset_id, two)
    with open(os.path.join(moved["path"], "log")) as handle:
        assert handle.read() == written
    pushed = final_push_bytes(one, dataset_id)
    assert pushed < 4 * MIB, pushed
    # The old primary stays as a replica of the new one.
    wait_for(lambda: replicated_to(cluster, dataset_id, [one, three]), 120, "node 1 to become a replica")
    configured = [d for d in api(cluster, "GET", "/v1/configuration/datasets") if d["dataset_id"] == dataset_id]
    assert sorted(configured[0]["replicas"]) == sorted([one["uuid"], three["uuid"]])


def final_push_bytes(node: dict[str, Any], dataset_id: str) -> int:
    """The bytes of the streams ``node`` sent in its moves of the dataset."""
    total = 0
    with open(os.path.join(node["log_dir"], "flocker-dataset-agent.log")) as handle:
        entries = [json.loads(line) for line in handle if dataset_id in line]
    pushes = {e["task_uuid"] for e in entries if e.get("action_type") == "flocker:node:dataset:push"}
    for entry in entries:
        if (
            entry["task_uuid"] in pushes
            and entry.get("action_type") == "flocker:volume:transfer:send"
            and entry.get("action_status") == "succeeded"
        ):
            total += entry.get("bytes", 0)
    return total


@contextlib.contextmanager
def cut_off(address: str) -> Iterator[None]:
    """Drop every packet to and from ``address`` on lo; the rules go afterwards."""
    rules = [["-s", address], ["-d", address]]
    for rule in rules:
        subprocess.run(["iptables", "-I", "INPUT", "-i", "lo", *rule, "-j", "DROP"], check=True)
    try:
        yield
    finally:
        for rule in rules:
            subprocess.run(["iptables", "-D", "INPUT", "-i", "lo", *rule, "-j", "DROP"], check=False)


def kill_node(node: dict[str, Any]) -> None:
    """SIGKILL a node's agents and its containers."""
    import docker

    lab.stop_node_agents(node, signal.SIGKILL)
    client = docker.from_env()
    try:
        for container in client.containers.list(filters={"label": f"org.flocker.node={node['uuid']}"}):
            with contextlib.suppress(Exception):
                container.kill()
    finally:
        client.close()


def test_manual_failover_after_losing_a_node(make_lab: Callable[..., dict[str, Any]]) -> None:
    """
    Node 1 dies outright under a steady writer (agents and containers
    killed, its address cut off); failing over by hand to a replica is
    refused while node 1 may still be alive, then brings the application
    back on node 2 (reached through node 3's port too) with a prefix of
    the acknowledged writes, with no holes, and no moment where two nodes
    expose the dataset.
    """
    cluster = make_lab(nodes=3)
    one, two, three = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, one)
    set_replicas(cluster, dataset_id, [two, three])
    watch = ExposureWatch(cluster, dataset_id)
    watch.start()
    writer = Writer(one["address"], port)
    writer.start()
    wait_for(lambda: len(writer.acknowledged) >= 50, 120, "50 acknowledged writes")
    acknowledged, at = len(writer.acknowledged), time.time()
    # Snapshot times have a resolution of one second.
    wait_for(lambda: replicated_since(cluster, dataset_id, [two, three], at + 1), 120,
             "a replication round after those writes on both replicas")
    with cut_off(one["address"]):
        kill_node(one)
        time.sleep(0.5)
        writer.stopping.set()
        writer.join()
        status, body = api_error(cluster, "POST", f"/v1/datasets/{dataset_id}/failover",
                                 {"node_uuid": two["uuid"]})
        assert status == 409, body
        assert "description" in body

        def failed_over() -> Any:
            """The accepted failover's reply (decoded JSON), or None while refused."""
            try:
                return api(cluster, "POST", f"/v1/datasets/{dataset_id}/failover", {"node_uuid": two["uuid"]})
            except urllib.error.HTTPError as error:
                assert error.code == 409, error.read()
                return None

        answer = wait_for(failed_over, 90, "the failover to be accepted")
        assert answer["primary"] == two["uuid"]
        assert answer["epoch"] == 1
        assert answer["data_loss_window_seconds"] >= 0
        wait_exposed(cluster, dataset_id, two)
        wait_for(lambda: running_on(cluster, name, two, port), 180, "the application on node 2")
        entry = state_entry(cluster, dataset_id)
        assert entry is not None
        with open(os.path.join(entry["path"], "requests.log")) as handle:
            lines = [x for x in handle.read().split() if x.startswith("w")]
    assert watch.most() == 1
    assert lines == [f"w{n}" for n in range(len(lines))]
    assert len(lines) >= acknowledged
    assert request(two["address"], port, "after-failover") is not None
    # Routing follows: node 3's port reaches the application on node 2.
    wait_for(lambda: request(three["address"], port, "via-node-3") is not None, 60,
             "node 3 to route to node 2")


def test_forced_failover_while_the_primary_runs(make_lab: Callable[..., dict[str, Any]]) -> None:
    """
    A forced failover while node 1 still runs: node 1 stops exposing its
    copy as soon as it sees the new epoch and keeps it as diverged, with
    what it wrote last; node 2 exposes the replicated data.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    dataset_id = str(uuid4())
    api(cluster, "POST", "/v1/configuration/datasets", {
        "primary": one["uuid"], "dataset_id": dataset_id, "replicas": [two["uuid"]],
    })
    state = wait_exposed(cluster, dataset_id, one)
    with open(os.path.join(state["path"], "data"), "w") as handle:
        handle.write("replicated")
    wait_for(lambda: replicated_to(cluster, dataset_id, [two], within=5), 60, "the replica")
    time.sleep(3)
    watch = ExposureWatch(cluster, dataset_id)
    watch.start()
    answer = api(cluster, "POST", f"/v1/datasets/{dataset_id}/failover",
                 {"node_uuid": two["uuid"], "force": True})
    assert answer["epoch"] == 1
    promoted = wait_exposed(cluster, dataset_id, two)
    with open(os.path.join(promoted["path"], "data")) as handle:
        assert handle.read() == "replicated"

    def reported_diverged() -> dict[str, Any] | None:
        e = state_entry(cluster, dataset_id)
        return e if e and e.get("diverged") else None

    entry = wait_for(reported_diverged, 60, "node 1's copy reported diverged")
    assert entry is not None  # wait_for returns a true value
    assert [d["node_uuid"] for d in entry["diverged"]] == [one["uuid"]]
    assert watch.most() == 1
    assert zfs_has(one["pool"], dataset_id)
    assert_story_told(cluster, one, two, dataset_id)


def log_entries(path: str) -> list[Any]:
    """The eliot messages of one log file; eliot-tree must render it."""
    rendered = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "eliot-tree"), path],
        capture_output=True, text=True,
    )
    assert rendered.returncode == 0, rendered.stderr
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def assert_story_told(
    cluster: dict[str, Any], one: dict[str, Any], two: dict[str, Any], dataset_id: str
) -> None:
    """
    The logs tell the story: a replication round on node 1 is one task that
    node 2's receiver continues; the failover is one task on the control
    service, with its reason and new epoch, and the agents log node 2's
    promotion and node 1's divergence at that epoch.
    """
    control = log_entries(os.path.join(cluster["control"]["log_dir"], "flocker-control.log"))
    source = log_entries(os.path.join(one["log_dir"], "flocker-dataset-agent.log"))
    target = log_entries(os.path.join(two["log_dir"], "flocker-dataset-agent.log"))
    rounds = {
        e["task_uuid"] for e in source
        if e.get("action_type") == "flocker:node:dataset:replicate" and e.get("dataset_id") == dataset_id
    }
    received = {e["task_uuid"] for e in target}
    assert rounds & received, "no replication round continues on the replica"
    [failover] = [
        e for e in control
        if e.get("action_type") == "flocker:control:failover" and e.get("action_status") == "started"
    ]
    assert failover["dataset_id"] == dataset_id
    [epoch] = [
        e["epoch"] for e in control
        if e.get("action_type") == "flocker:control:failover"
        and e["task_uuid"] == failover["task_uuid"]
        and e.get("action_status") == "succeeded"
    ]
    promoted = [
        e for e in target
        if e.get("action_type") == "flocker:node:dataset:promote"
        and e.get("dataset_id") == dataset_id and e.get("epoch") == epoch
    ]
    diverged = [
        e for e in source
        if e.get("action_type") == "flocker:node:dataset:diverge"
        and e.get("dataset_id") == dataset_id and e.get("configured_epoch") == epoch
    ]
    assert promoted and diverged
