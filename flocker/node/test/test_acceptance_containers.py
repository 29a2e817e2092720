"""
Acceptance tests: applications with their data on a real local cluster
(``admin/lab``, real Docker), driven through the REST API — moved under a
steady write load with no acknowledged write lost, agents and containers
killed mid-move.
"""

import os
import signal
import threading
import time
import urllib.request
from uuid import uuid4

import pytest

from flocker.runtime.testimages import COUNTER_IMAGE, ensure_counter_image
from flocker.testtools import lab

from .test_acceptance_datasets import api, dataset_state, wait_for

pytestmark = pytest.mark.acceptance


def request(address, port, text, timeout=2.0):
    """One write to the counter: its count, or None if not acknowledged."""
    try:
        with urllib.request.urlopen(
            f"http://{address}:{port}/?{text}", timeout=timeout
        ) as reply:
            if reply.status == 200:
                return int(reply.read().decode().strip())
    except (OSError, ValueError):
        return None
    return None


class Writer(threading.Thread):
    """Sends numbered writes through one node's port, keeping what was acked."""

    def __init__(self, address, port):
        super().__init__(daemon=True)
        self.address, self.port = address, port
        self.acknowledged = []
        self.times = []
        self.stopping = threading.Event()

    def run(self):
        """Write w0, w1, … until stopped, at most ~50 per second."""
        n = 0
        while not self.stopping.is_set():
            if request(self.address, self.port, f"w{n}", timeout=1.0) is not None:
                self.acknowledged.append(f"w{n}")
                self.times.append(time.monotonic())
            n += 1
            time.sleep(0.02)

    def longest_gap(self):
        """The longest time between two acknowledged writes."""
        return max((b - a for a, b in zip(self.times, self.times[1:], strict=False)), default=0.0)


def deploy_counter(cluster, node, name=None, links=()):
    """A dataset and a counter application on ``node``; (name, dataset, port)."""
    import docker

    client = docker.from_env()
    try:
        ensure_counter_image(client)
    finally:
        client.close()
    dataset_id = str(uuid4())
    api(cluster, "POST", "/v1/configuration/datasets", {"primary": node["uuid"], "dataset_id": dataset_id})
    name = name or f"counter-{uuid4().hex[:8]}"
    port = lab._free_port([n["address"] for n in cluster["nodes"]])
    api(
        cluster,
        "POST",
        "/v1/configuration/containers",
        {
            "node_uuid": node["uuid"],
            "name": name,
            "image": COUNTER_IMAGE,
            "ports": [{"internal": 80, "external": port}],
            "volumes": [{"dataset_id": dataset_id, "mountpoint": "/data"}],
            "links": list(links),
        },
    )
    wait_for(lambda: request(node["address"], port, "ready") is not None, 180, f"{name} to answer")
    return name, dataset_id, port


def move_application(cluster, name, node):
    """Ask for the application to move to ``node``."""
    api(cluster, "POST", f"/v1/configuration/containers/{name}", {"node_uuid": node["uuid"]})


def running_on(cluster, name, node, port):
    """Whether the state says ``name`` runs on ``node`` and it answers there."""
    try:
        containers = api(cluster, "GET", "/v1/state/containers")
    except OSError:
        return False
    here = [
        c for c in containers
        if c["name"] == name and c["node_uuid"] == node["uuid"] and c.get("running")
    ]
    return bool(here) and request(node["address"], port, "probe") is not None


def logged_writes(cluster, dataset_id, node):
    """The lines of the counter's log in the dataset, read on its node."""
    state = wait_for(
        lambda: (s := dataset_state(cluster, dataset_id)) and s["primary"] == node["uuid"] and s,
        what="the dataset on its node",
    )
    with open(os.path.join(state["path"], "requests.log")) as handle:
        return handle.read().split()


def is_subsequence(items, sequence):
    """Whether ``items`` appear in ``sequence`` in the same order."""
    it = iter(sequence)
    return all(item in it for item in items)


def test_move_under_write_load_loses_nothing(make_lab):
    """
    A client writes steadily through node 1's published port while the
    application moves to node 2: every write it saw acknowledged is in the
    dataset afterwards, in order, and the interruption is measured.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, one)
    writer = Writer(one["address"], port)
    writer.start()
    wait_for(lambda: len(writer.acknowledged) >= 20, what="writes before the move")
    moved_at = time.monotonic()
    move_application(cluster, name, two)
    wait_for(lambda: running_on(cluster, name, two, port), 240, "the application on node 2")
    before = len(writer.acknowledged)
    wait_for(lambda: len(writer.acknowledged) >= before + 20, 120, "writes through node 1 after the move")
    writer.stopping.set()
    writer.join()
    gap = writer.longest_gap()
    print(f"\nmove took {time.monotonic() - moved_at:.2f} s; longest gap between acknowledged writes {gap:.2f} s")
    lines = logged_writes(cluster, dataset_id, two)
    assert is_subsequence(writer.acknowledged, lines), "an acknowledged write is missing"


@pytest.mark.parametrize("victim", ["container-agent", "container"])
def test_kill_during_move_converges(make_lab, victim):
    """
    Killing the source's container agent, or the container itself, during a
    move ends with the application running on node 2 with its data.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, one)
    for n in range(10):
        assert request(one["address"], port, f"before{n}") is not None
    move_application(cluster, name, two)
    if victim == "container-agent":
        os.killpg(one["pids"]["container"], signal.SIGKILL)
        time.sleep(1)
        lab.start_node_agents_kind(cluster, one, "container")
    else:
        import docker

        client = docker.from_env()
        try:
            for container in client.containers.list(
                filters={"label": f"org.flocker.node={one['uuid']}"}
            ):
                container.kill()
        finally:
            client.close()
    wait_for(lambda: running_on(cluster, name, two, port), 240, "the application on node 2")
    lines = logged_writes(cluster, dataset_id, two)
    assert [f"before{n}" for n in range(10)] == [x for x in lines if x.startswith("before")]
    assert request(two["address"], port, "after") == lines.__len__() + 1
