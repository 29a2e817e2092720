"""
Acceptance tests: applications with their data on a real local cluster
(``admin/lab``, real Docker), driven through the REST API — moved under a
steady write load with no acknowledged write lost, linked applications
talking across moves of either, agents and containers killed mid-move.
"""

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import uuid4

import pytest

from flocker.runtime.testimages import COUNTER_IMAGE, ensure_counter_image
from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

from .test_acceptance_datasets import api, dataset_state

pytestmark = pytest.mark.acceptance


def request(address: str, port: int, text: str, timeout: float = 2.0) -> int | None:
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


def attempt(address: str, port: int, text: str, timeout: float) -> tuple[int | None, str]:
    """One write to the counter: (its count or None, what went wrong or "")."""
    count, error, _ = versioned_attempt(address, port, text, timeout)
    return count, error


def versioned_attempt(
    address: str, port: int, text: str, timeout: float
) -> tuple[int | None, str, str]:
    """
    One write to the counter: its count or None, what went wrong or "", and
    the version that answered (its ``X-Version`` header, "" if none).
    """
    try:
        with urllib.request.urlopen(
            f"http://{address}:{port}/?{text}", timeout=timeout
        ) as reply:
            version = reply.headers.get("X-Version", "")
            return int(reply.read().decode().strip()), "", version
    except urllib.error.HTTPError as error:
        return None, f"HTTP {error.code}", ""
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return None, type(reason).__name__, ""


class Writer(threading.Thread):
    """
    Sends numbered writes through one node's port, keeping what was acked,
    what failed (and how) and how long each write waited for its answer.
    """

    def __init__(self, address: str, port: int, timeout: float = 1.0) -> None:
        """Write to ``address:port``, each write given ``timeout`` seconds."""
        super().__init__(daemon=True)
        self.address, self.port, self.timeout = address, port, timeout
        self.acknowledged: list[str] = []
        self.times: list[float] = []
        self.failures: list[tuple[str, str]] = []
        self.waits: list[float] = []
        #: The version that answered each acknowledged write.
        self.versions: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        """Write w0, w1, … until stopped, at most ~50 per second."""
        n = 0
        while not self.stopping.is_set():
            sent = time.monotonic()
            count, error, version = versioned_attempt(
                self.address, self.port, f"w{n}", self.timeout
            )
            answered = time.monotonic()
            self.waits.append(answered - sent)
            if count is not None:
                self.acknowledged.append(f"w{n}")
                self.times.append(answered)
                self.versions.append(version)
            else:
                self.failures.append((f"w{n}", error))
            n += 1
            time.sleep(0.02)

    def longest_gap(self) -> float:
        """The longest time between two acknowledged writes."""
        return max((b - a for a, b in zip(self.times, self.times[1:], strict=False)), default=0.0)

    def longest_wait(self) -> float:
        """The longest any one write waited for its answer (or its failure)."""
        return max(self.waits, default=0.0)


def deploy_counter(
    cluster: dict[str, Any],
    node: dict[str, Any],
    name: str | None = None,
    links: Sequence[dict[str, Any]] = (),
) -> tuple[str, str, int]:
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


def deploy_frontend(
    cluster: dict[str, Any], node: dict[str, Any], backend_port: int
) -> tuple[str, int]:
    """
    A counter without a dataset on ``node``, linked to a backend as
    ``backend`` (local port 80 → ``backend_port``); (name, port).
    """
    name = f"front-{uuid4().hex[:8]}"
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
            "links": [{"alias": "backend", "local_port": 80, "remote_port": backend_port}],
        },
    )
    return name, port


def relay(address: str, port: int, text: str, timeout: float = 5.0) -> int | None:
    """Ask the frontend at ``address:port`` to pass a write on: the backend's count, or None."""
    try:
        with urllib.request.urlopen(
            f"http://{address}:{port}/cgi-bin/relay.cgi?{text}", timeout=timeout
        ) as reply:
            answer = reply.read().decode().split()
            if reply.status == 200 and answer[:1] == ["relayed"]:
                return int(answer[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def move_application(cluster: dict[str, Any], name: str, node: dict[str, Any]) -> None:
    """Ask for the application to move to ``node``."""
    api(cluster, "POST", f"/v1/configuration/containers/{name}", {"node_uuid": node["uuid"]})


def running_on(cluster: dict[str, Any], name: str, node: dict[str, Any], port: int) -> bool:
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


def logged_writes(cluster: dict[str, Any], dataset_id: str, node: dict[str, Any]) -> list[str]:
    """The lines of the counter's log in the dataset, read on its node."""

    def on_node() -> dict[str, Any] | None:
        s = dataset_state(cluster, dataset_id)
        return s if s and s["primary"] == node["uuid"] else None

    state = wait_for(on_node, what="the dataset on its node")
    assert state is not None  # wait_for returns a true value
    with open(os.path.join(state["path"], "requests.log")) as handle:
        return handle.read().split()


def is_subsequence(items: Iterable[str], sequence: Iterable[str]) -> bool:
    """Whether ``items`` appear in ``sequence`` in the same order."""
    it = iter(sequence)
    return all(item in it for item in items)


def test_move_under_write_load_loses_nothing(make_lab: Callable[..., dict[str, Any]]) -> None:
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
    answered = wait_for(lambda: lab.logged_answering(two, name), 60, "node 2 to log when the application answered")
    assert answered is not None
    print(
        f"\nmove took {time.monotonic() - moved_at:.2f} s; longest gap between acknowledged writes "
        f"{gap:.2f} s; node 2 logged {answered['unavailable_seconds']} s unavailable"
    )
    assert answered["action_status"] == "succeeded"
    assert 0 < answered["unavailable_seconds"] <= gap + 0.5
    lines = logged_writes(cluster, dataset_id, two)
    assert is_subsequence(writer.acknowledged, lines), "an acknowledged write is missing"


def test_linked_applications_talk_across_moves(make_lab: Callable[..., dict[str, Any]]) -> None:
    """
    A frontend linked to a counter with a dataset reaches it through its
    link before and after the counter moves to node 2 and after the
    frontend itself follows it there, through either node's published
    port; every relayed write is in the counter's dataset, in order.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    if one["address"].startswith("127."):
        pytest.fail("the local cluster's node addresses are loopback-only: containers cannot reach them (run as root)")
    backend, dataset_id, backend_port = deploy_counter(cluster, one)
    frontend, port = deploy_frontend(cluster, one, backend_port)
    sent: list[str] = []

    def relayed(address: str, text: str) -> bool:
        count = relay(address, port, text)
        if count is not None:
            sent.append(text)
        return count is not None

    wait_for(lambda: relayed(one["address"], "first"), 180, "the frontend to reach the backend")
    move_application(cluster, backend, two)
    wait_for(lambda: running_on(cluster, backend, two, backend_port), 240, "the backend on node 2")
    wait_for(lambda: relayed(one["address"], "backend-moved"), 60, "the frontend on node 1 to reach the moved backend")
    assert relayed(two["address"], "through-node-2")
    move_application(cluster, frontend, two)
    wait_for(
        lambda: frontend in [
            c["name"] for c in api(cluster, "GET", "/v1/state/containers")
            if c["node_uuid"] == two["uuid"] and c.get("running")
        ],
        240,
        "the frontend on node 2",
    )
    wait_for(lambda: relayed(two["address"], "frontend-moved"), 60, "the moved frontend to reach the backend")
    assert relayed(one["address"], "both-moved-via-node-1")
    lines = logged_writes(cluster, dataset_id, two)
    assert is_subsequence(sent, lines)
    assert "backend-moved" in lines and "both-moved-via-node-1" in lines


@pytest.mark.parametrize("victim", ["container-agent", "container"])
def test_kill_during_move_converges(make_lab: Callable[..., dict[str, Any]], victim: str) -> None:
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
