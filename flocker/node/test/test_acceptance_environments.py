"""
Acceptance tests: snapshots, clones, rollback and staging environments on a
real local cluster (``admin/lab``, zfs-fuse pools, real Docker), driven
through the REST API.

* The FAQ promise: a 2 GiB dataset cloned five times costs almost no pool
  space, and each clone is independent of the others and of its origin.
* The staging story: three linked applications (a frontend relaying to a
  database, and a search service, two of them with data on different
  nodes) cloned into three environments, each answering on its own ports
  with its own data; one modified, reset, and found identical to fresh.
* A rollback stops the application, returns its data and starts it again.
"""

import os
import subprocess
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from flocker.testtools.waiting import wait_for

from .test_acceptance_containers import (
    deploy_counter,
    deploy_frontend,
    relay,
    request,
)
from .test_acceptance_datasets import api, api_error, dataset_state

pytestmark = pytest.mark.acceptance

MIB = 1024 * 1024


def pool_used(node: dict[str, Any]) -> int:
    """Bytes the node's pool uses, as ZFS counts them."""
    out = subprocess.run(
        ["zfs", "get", "-Hp", "-o", "value", "used", node["pool"]],
        capture_output=True, text=True, check=True,
    ).stdout
    return int(out.strip())


def mounted(cluster: dict[str, Any], dataset_id: str) -> str:
    """The mount path of a dataset once its primary reports it, waiting."""
    state = wait_for(lambda: dataset_state(cluster, dataset_id), 180, f"{dataset_id} mounted")
    assert state is not None  # wait_for returns a true value
    path: str = state["path"]
    return path


def write_random(path: str, size: int, chunk: int = 8 * MIB) -> None:
    """``size`` bytes of random data in ``path``, flushed to disk."""
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(chunk, left)
            handle.write(os.urandom(n))
            left -= n
        handle.flush()
        os.fsync(handle.fileno())


def test_five_clones_of_two_gib_cost_almost_nothing(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    Five clones of a snapshot of a 2 GiB dataset add less than 10 MiB to
    the pool, and a write to one clone shows in neither the others nor the
    origin.
    """
    cluster = make_lab(nodes=1)
    [node] = cluster["nodes"]
    origin = api(cluster, "POST", "/v1/configuration/datasets", {"primary": node["uuid"]})["dataset_id"]
    path = mounted(cluster, origin)
    write_random(os.path.join(path, "data"), 2048 * MIB)
    with open(os.path.join(path, "marker"), "w") as handle:
        handle.write("origin")
    api(cluster, "POST", f"/v1/datasets/{origin}/snapshots", {"name": "base"})
    before = pool_used(node)
    started = time.monotonic()
    clones = [
        api(cluster, "POST", f"/v1/datasets/{origin}/clone", {"snapshot": "base"})["dataset_id"]
        for _ in range(5)
    ]
    paths = [mounted(cluster, clone) for clone in clones]
    elapsed = time.monotonic() - started
    extra = pool_used(node) - before
    print(f"\n5 clones of 2 GiB: {extra / MIB:.2f} MiB extra, mounted after {elapsed:.2f} s")
    assert extra < 10 * MIB
    for p in paths:
        assert os.path.getsize(os.path.join(p, "data")) == 2048 * MIB
    with open(os.path.join(paths[0], "marker"), "w") as handle:
        handle.write("clone 0")
    for p in [path, *paths[1:]]:
        with open(os.path.join(p, "marker")) as handle:
            assert handle.read() == "origin"
    # A snapshot with clones cannot be destroyed; the refusal says why.
    code, body = api_error(cluster, "DELETE", f"/v1/datasets/{origin}/snapshots/base")
    assert code == 409 and "clones" in body["description"]


def test_rollback_restarts_application_on_old_data(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    Rolling back a running application's dataset stops the application,
    returns the data to the snapshot and starts the application again.
    """
    cluster = make_lab(nodes=1)
    [node] = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, node)
    for n in range(3):
        request(node["address"], port, f"kept{n}")
    api(cluster, "POST", f"/v1/datasets/{dataset_id}/snapshots", {"name": "three"})
    for n in range(5):
        request(node["address"], port, f"lost{n}")
    accepted = api(cluster, "POST", f"/v1/datasets/{dataset_id}/rollback", {"snapshot": "three"})
    wait_for(
        lambda: (dataset_state(cluster, dataset_id) or {}).get("rolled_back") == accepted["request_id"],
        120,
        "the rollback to be done",
    )
    # ready + kept0..2 were in the snapshot; this write is the fifth line.
    assert wait_for(lambda: request(node["address"], port, "after"), 120, "the counter again") == 5
    code, _ = api_error(cluster, "POST", f"/v1/datasets/{dataset_id}/rollback", {"snapshot": "nope"})
    assert code == 404


def copy_ports(environment: Any, copy: str) -> dict[str, int]:
    """Application name (original) → its external port in ``copy``."""
    [found] = [c for c in environment["copies"] if c["name"] == copy]
    return {a["origin"]: a["ports"][0]["external"] for a in found["applications"]}


def copy_nodes(cluster: dict[str, Any], environment: Any, copy: str) -> dict[str, dict[str, Any]]:
    """Original application name → the node dict its copy runs on."""
    [found] = [c for c in environment["copies"] if c["name"] == copy]
    by_uuid = {n["uuid"]: n for n in cluster["nodes"]}
    return {a["origin"]: by_uuid[a["node_uuid"]] for a in found["applications"]}


def test_staging_environments(make_lab: Callable[..., dict[str, Any]]) -> None:
    """
    Three linked applications cloned into three environments answer on
    their own ports with their own data; a modified environment, reset,
    is identical to a fresh one, and the originals are untouched.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    db, db_data, db_port = deploy_counter(cluster, one, name="db")
    search, search_data, search_port = deploy_counter(cluster, two, name="search")
    web, web_port = deploy_frontend(cluster, one, db_port)
    for n in range(3):
        assert request(one["address"], db_port, f"production{n}") is not None
    assert request(two["address"], search_port, "indexed") is not None
    wait_for(lambda: relay(one["address"], web_port, "via-web"), 120, "the frontend")
    # db holds: ready, production0..2, via-web (5 lines)
    environment = api(
        cluster, "POST", "/v1/environments",
        {"name": "monday", "applications": [web, db, search], "copies": ["a", "b", "c"]},
    )
    assert sorted(c["name"] for c in environment["copies"]) == ["a", "b", "c"]
    used_ports: set[int] = set()
    for copy in "abc":
        ports = copy_ports(environment, copy)
        nodes = copy_nodes(cluster, environment, copy)
        assert nodes[db] == one and nodes[search] == two
        used_ports |= set(ports.values())
        # Each copy's frontend reaches its own database clone: 5 lines + this one.
        assert wait_for(
            partial(relay, nodes[web]["address"], ports[web], f"hello-{copy}"),
            240,
            f"copy {copy}'s frontend",
        ) == 6
        # The search copy starts on the other node in its own time.
        assert wait_for(
            partial(request, nodes[search]["address"], ports[search], "q"),
            240,
            f"copy {copy}'s search",
        ) == 3
    assert len(used_ports) == 9 and not used_ports & {db_port, search_port, web_port}
    # Copy a is modified; b does not see it; the original neither.
    a_ports, a_nodes = copy_ports(environment, "a"), copy_nodes(cluster, environment, "a")
    for n in range(4):
        assert relay(a_nodes[web]["address"], a_ports[web], f"dev{n}") == 7 + n
    b_ports, b_nodes = copy_ports(environment, "b"), copy_nodes(cluster, environment, "b")
    assert request(b_nodes[db]["address"], b_ports[db], "b-check") == 7
    assert request(one["address"], db_port, "production-check") == 6
    # Reset copy a: fresh clones, identical to the snapshot.
    reset = api(cluster, "POST", "/v1/environments/monday/copies/a/reset")
    [db_clone] = [d["dataset_id"] for d in reset["datasets"] if d["origin"]["dataset_id"] == db_data]
    path = wait_for(lambda: (dataset_state(cluster, db_clone) or {}).get("path"), 180, "the fresh clone")
    assert path is not None
    with open(os.path.join(path, "requests.log")) as handle:
        fresh = handle.read().split()
    assert fresh == ["ready", "production0", "production1", "production2", "via-web"]
    assert wait_for(
        lambda: relay(a_nodes[web]["address"], a_ports[web], "after-reset"), 240, "copy a after its reset"
    ) == 6
    # Deleting the environment leaves the originals running with their data.
    api(cluster, "DELETE", "/v1/environments/monday")
    wait_for(
        lambda: sorted(c["name"] for c in api(cluster, "GET", "/v1/state/containers"))
        == sorted([web, db, search]),
        180,
        "the copies to be removed",
    )
    assert request(one["address"], db_port, "still-here") == 7
    assert not [d for d in api(cluster, "GET", "/v1/configuration/datasets")
                if d["metadata"].get("flocker-environment") and not d["deleted"]]
