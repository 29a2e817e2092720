"""
Acceptance tests: a real local cluster (``admin/lab``) driven through the
REST API only — datasets created, written, moved between nodes and back,
resized and deleted, with agents and the control service killed mid-move.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest

from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

pytestmark = pytest.mark.acceptance

MIB = 1024 * 1024


def api(cluster: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    """A REST request with the user certificate; the JSON reply."""
    return lab.api_request(cluster, method, path, body)


def api_error(
    cluster: dict[str, Any], method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """A REST request expected to fail: (status, JSON body)."""
    with pytest.raises(urllib.error.HTTPError) as info:
        api(cluster, method, path, body)
    return info.value.code, json.loads(info.value.read())


def dataset_state(cluster: dict[str, Any], dataset_id: str) -> dict[str, Any] | None:
    """The dataset's entry in /v1/state/datasets, or None (also while the
    control service restarts).
    """
    try:
        entries: list[dict[str, Any]] = api(cluster, "GET", "/v1/state/datasets")
    except urllib.error.HTTPError:
        raise
    except OSError:
        return None
    for entry in entries:
        if entry["dataset_id"] == dataset_id:
            return entry
    return None


def wait_exposed(
    cluster: dict[str, Any], dataset_id: str, node: dict[str, Any], timeout: float = 180
) -> dict[str, Any]:
    """Wait until ``node`` exposes the dataset; its state entry."""

    def exposed() -> dict[str, Any] | None:
        entry = dataset_state(cluster, dataset_id)
        if entry and entry.get("primary") == node["uuid"] and entry.get("path"):
            return entry
        return None

    entry = wait_for(exposed, timeout, f"{dataset_id} on {node['address']}")
    assert entry is not None  # wait_for returns a true value
    return entry


def digest(path: str) -> dict[str, str]:
    """SHA-256 of every file under ``path``, by relative name."""
    found: dict[str, str] = {}
    for directory, _, files in os.walk(path):
        for name in files:
            full = os.path.join(directory, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def write_data(path: str, size: int) -> dict[str, str]:
    """Write ``size`` random bytes into ``path``/data; the file digests."""
    with open(os.path.join(path, "data"), "wb") as handle:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 4 * MIB))
            handle.write(chunk)
            remaining -= len(chunk)
    return digest(path)


def zfs_datasets(pool: str) -> list[str]:
    """Names of the datasets in a pool."""
    out = subprocess.run(
        ["zfs", "list", "-H", "-r", "-o", "name", pool], capture_output=True, text=True
    ).stdout.split()
    return [name.split("/", 1)[1] for name in out if "/" in name]


def create(cluster: dict[str, Any], node: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Create a dataset on ``node``; wait until it is exposed; its state."""
    dataset_id = str(uuid4())
    body = {"primary": node["uuid"], "dataset_id": dataset_id, **extra}
    reply = api(cluster, "POST", "/v1/configuration/datasets", body)
    assert reply["dataset_id"] == dataset_id
    return wait_exposed(cluster, dataset_id, node)


def move(cluster: dict[str, Any], dataset_id: str, node: dict[str, Any]) -> None:
    """Ask for a move to ``node``."""
    api(cluster, "POST", f"/v1/configuration/datasets/{dataset_id}", {"primary": node["uuid"]})


def test_dataset_lifecycle(make_lab: Callable[..., dict[str, Any]]) -> None:
    """
    A dataset with metadata and a maximum size is created on node 1, gets
    100 MiB, moves to node 2 and back with its bytes intact each time, is
    resized, and once deleted disappears from the state and from the pool.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    state = create(
        cluster, one, metadata={"name": "pg-data"}, maximum_size=512 * MIB
    )
    dataset_id = state["dataset_id"]
    assert state["maximum_size"] == 512 * MIB
    [configured] = [
        d for d in api(cluster, "GET", "/v1/configuration/datasets")
        if d["dataset_id"] == dataset_id
    ]
    assert configured["metadata"] == {"name": "pg-data"}
    written = write_data(state["path"], 100 * MIB)

    # While it moves, /v1/state/transfers shows node 2 receiving it.
    seen: list[Any] = []
    moved = threading.Event()

    def watch() -> None:
        while not moved.is_set():
            try:
                transfers = api(cluster, "GET", "/v1/state/transfers")
            except OSError:
                transfers = []
            seen.extend(t for t in transfers if t["dataset_id"] == dataset_id)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    move(cluster, dataset_id, two)
    state = wait_exposed(cluster, dataset_id, two)
    moved.set()
    watcher.join()
    assert digest(state["path"]) == written
    assert any(t["node_uuid"] == two["uuid"] and t["bytes"] > 0 for t in seen), seen
    assert dataset_id in zfs_datasets(two["pool"])
    wait_for(lambda: dataset_id not in zfs_datasets(one["pool"]), what="the source copy to go")

    move(cluster, dataset_id, one)
    state = wait_exposed(cluster, dataset_id, one)
    assert digest(state["path"]) == written

    api(cluster, "POST", f"/v1/configuration/datasets/{dataset_id}", {"maximum_size": 1024 * MIB})
    wait_for(lambda: (dataset_state(cluster, dataset_id) or {}).get("maximum_size") == 1024 * MIB,
             what="the resize")

    api(cluster, "DELETE", f"/v1/configuration/datasets/{dataset_id}")
    wait_for(lambda: dataset_state(cluster, dataset_id) is None, what="the dataset to leave the state")
    wait_for(lambda: dataset_id not in zfs_datasets(one["pool"]), what="the dataset to leave the pool")
    assert dataset_id not in zfs_datasets(two["pool"])


def test_bad_requests_answered_clearly(make_lab: Callable[..., dict[str, Any]]) -> None:
    """An unknown primary node is refused with a description; nothing changes."""
    cluster = make_lab(nodes=1)
    before = api(cluster, "GET", "/v1/configuration/datasets")
    status, body = api_error(
        cluster, "POST", "/v1/configuration/datasets", {"primary": str(uuid4())}
    )
    assert status == 400
    assert "primary" in body["description"]
    status, body = api_error(
        cluster, "POST", f"/v1/configuration/datasets/{uuid4()}", {"primary": cluster["nodes"][0]["uuid"]}
    )
    assert status == 404
    assert api(cluster, "GET", "/v1/configuration/datasets") == before


def test_move_to_stopped_node_waits(make_lab: Callable[..., dict[str, Any]]) -> None:
    """
    A move to a node whose agents are down leaves the dataset exposed on its
    old node (the state says so), and completes once the node is back.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    state = create(cluster, one)
    written = write_data(state["path"], 2 * MIB)
    lab.stop_node_agents(two)
    move(cluster, state["dataset_id"], two)
    time.sleep(3)
    entry = dataset_state(cluster, state["dataset_id"])
    assert entry is not None
    assert entry["primary"] == two["uuid"] or entry["path"] == state["path"]
    assert digest(state["path"]) == written
    lab.start_node_agents(cluster, two)
    state = wait_exposed(cluster, state["dataset_id"], two)
    assert digest(state["path"]) == written


@pytest.mark.parametrize("victim", ["source", "destination", "control"])
def test_kill_during_move(make_lab: Callable[..., dict[str, Any]], victim: str) -> None:
    """
    SIGKILL of the source agent, the destination agent or the control service
    during a move: once restarted, the cluster converges with the data intact.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    state = create(cluster, one)
    written = write_data(state["path"], 64 * MIB)
    move(cluster, state["dataset_id"], two)
    time.sleep(0.3)
    if victim == "control":
        os.killpg(cluster["control"]["pid"], signal.SIGKILL)
        time.sleep(0.5)
        lab.start_control(cluster)
    else:
        node = one if victim == "source" else two
        lab.stop_node_agents(node, signal.SIGKILL)
        time.sleep(0.5)
        lab.start_node_agents(cluster, node)
    lab.save(cluster)
    state = wait_exposed(cluster, state["dataset_id"], two, timeout=240)
    assert digest(state["path"]) == written
    wait_for(lambda: state["dataset_id"] not in zfs_datasets(one["pool"]),
             what="the source copy to go")


def test_logs_tell_the_story(make_lab: Callable[..., dict[str, Any]]) -> None:
    """
    eliot-tree renders every daemon's log, and a move reads as one task
    spanning the control service, the source agent and the destination agent.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    state = create(cluster, one)
    write_data(state["path"], MIB)
    move(cluster, state["dataset_id"], two)
    wait_exposed(cluster, state["dataset_id"], two)
    logs = {
        "control": os.path.join(cluster["control"]["log_dir"], "flocker-control.log"),
        "source": os.path.join(one["log_dir"], "flocker-dataset-agent.log"),
        "destination": os.path.join(two["log_dir"], "flocker-dataset-agent.log"),
    }
    tasks: dict[str, set[str]] = {}

    for name, path in logs.items():
        rendered = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "eliot-tree"), path],
            capture_output=True, text=True,
        )
        assert rendered.returncode == 0, rendered.stderr
        with open(path) as handle:
            tasks[name] = {json.loads(line)["task_uuid"] for line in handle if line.strip()}
    with open(logs["source"]) as handle:
        pushes = [
            json.loads(line) for line in handle
            if '"flocker:node:dataset:push"' in line
        ]
    assert pushes
    task = pushes[0]["task_uuid"]
    assert task in tasks["destination"]
    assert task in tasks["control"]
