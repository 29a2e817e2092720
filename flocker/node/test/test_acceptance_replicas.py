"""
Acceptance tests: a stateless application runs several instances on a
real local cluster; every node's router spreads connections over the
healthy ones, an update rolls over them under load without a failed
request, scaling up and down follows, and an instance killed with SIGKILL
is taken out of rotation and replaced.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import docker
import pytest

from flocker.cli.test.test_acceptance_cli import ok
from flocker.runtime import container_name
from flocker.runtime.testimages import COUNTER_IMAGE, ensure_counter_image
from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

from .test_acceptance_containers import Writer
from .test_acceptance_datasets import api
from .test_acceptance_updates import QUICK_HEALTH

pytestmark = pytest.mark.acceptance


def _instances(cluster: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """Node UUID → the application's entry in GET /v1/state/containers."""
    return {
        c["node_uuid"]: c
        for c in api(cluster, "GET", "/v1/state/containers")
        if c["name"] == name
    }


def _healthy_on(cluster: dict[str, Any], name: str) -> set[str]:
    """The nodes reporting the application's instance healthy."""
    return {
        node
        for node, entry in _instances(cluster, name).items()
        if entry.get("health") == "healthy"
    }


def _answered(node: dict[str, Any], name: str) -> int:
    """How many requests the instance on ``node`` logged (its own file)."""
    client = docker.from_env()
    try:
        container = client.containers.get(container_name(node["uuid"], name))
        output = container.exec_run(["wc", "-l", "/data/requests.log"]).output
    finally:
        client.close()
    return int(output.split()[0]) if output.split() else 0


def _environment(node: dict[str, Any], name: str) -> list[str]:
    """The environment of the instance's container on ``node`` (none yet: empty)."""
    client = docker.from_env()
    try:
        container = client.containers.get(container_name(node["uuid"], name))
        environment: list[str] = container.attrs["Config"]["Env"] or []
        return environment
    except docker.errors.NotFound:
        return []
    finally:
        client.close()


def _deploy(
    cluster: dict[str, Any], node: dict[str, Any], prefix: str, **fields: Any
) -> tuple[str, int]:
    """
    Configure a counter without a dataset, with a quick health check, on
    ``node`` (and ``fields``, e.g. replicas); its name and external port.
    """
    name = f"{prefix}-{uuid4().hex[:8]}"
    port = lab._free_port([n["address"] for n in cluster["nodes"]])
    body = {
        "node_uuid": node["uuid"],
        "name": name,
        "image": COUNTER_IMAGE,
        "ports": [{"internal": 80, "external": port}],
        "health": QUICK_HEALTH,
        **fields,
    }
    api(cluster, "POST", "/v1/configuration/containers", body)
    return name, port


def _configured(cluster: dict[str, Any], name: str) -> dict[str, Any]:
    """The application's entry in GET /v1/configuration/containers."""
    (found,) = [
        c for c in api(cluster, "GET", "/v1/configuration/containers") if c["name"] == name
    ]
    return dict(found)


def test_replicas_share_the_load_roll_over_an_update_and_replace_a_killed_instance(
    make_lab: Callable[..., dict[str, Any]], docker_client: Any
) -> None:
    """
    Two instances of a stateless counter run on nodes 1 and 2 and share the
    requests a client sends through node 3's router.  Under that load an
    update rolls over both instances without one failed request, every
    answer from the old or the new version and none from the old once both
    run the new one; an update whose health check fails is rolled back by
    itself while the other instance keeps answering every request, none of
    them from the unhealthy revision.  Scaled
    to three, node 3 runs one too; scaled back to one, only node 1.  An
    instance SIGKILLed by hand is taken out of rotation (reported not
    healthy) and started again by its agent.
    """
    ensure_counter_image(docker_client)
    cluster = make_lab(nodes=3)
    one, two, three = sorted(cluster["nodes"], key=lambda n: n["uuid"])
    name, port = _deploy(cluster, one, "web", replicas=2, environment={"VERSION": "1"})
    wait_for(
        lambda: _healthy_on(cluster, name) == {one["uuid"], two["uuid"]},
        120,
        "two healthy instances on nodes 1 and 2",
    )

    writer = Writer(three["address"], port, timeout=30.0)
    writer.start()
    try:
        wait_for(lambda: len(writer.acknowledged) >= 40, 60, "writes through node 3")
        assert _answered(one, name) > 5 and _answered(two, name) > 5
        updated = api(
            cluster,
            "POST",
            f"/v1/configuration/containers/{name}",
            {"environment": {"VERSION": "2"}},
        )
        revision = updated["revision"]

        def rolled_over() -> bool:
            return _healthy_on(cluster, name) == {one["uuid"], two["uuid"]} and all(
                "VERSION=2" in _environment(node, name) for node in (one, two)
            )

        wait_for(rolled_over, 120, "both instances to run the new revision")
        rolled = len(writer.acknowledged)
        wait_for(lambda: "updating" not in _configured(cluster, name), 60, "confirmation")
        before = len(writer.acknowledged)
        wait_for(lambda: len(writer.acknowledged) >= before + 20, 60, "writes after it")
    finally:
        writer.stopping.set()
        writer.join()
    print(
        f"\nrolling update to revision {revision}: {len(writer.acknowledged)} writes, "
        f"longest wait {writer.longest_wait():.2f} s, failures {writer.failures[:5]}"
    )
    assert writer.failures == [], "the rolling update failed requests"
    assert set(writer.versions) == {"1", "2"}, "every answer is from the old or the new version"
    assert set(writer.versions[rolled + 1 :]) <= {"2"}, "an old instance answered after it stopped"

    writer = Writer(three["address"], port, timeout=30.0)
    writer.start()
    try:
        wait_for(lambda: len(writer.acknowledged) >= 20, 60, "writes before a bad update")
        api(
            cluster,
            "POST",
            f"/v1/configuration/containers/{name}",
            {"environment": {"VERSION": "3", "COUNTER_FILE": "/nowhere/requests.log"}},
        )
        reason = wait_for(
            lambda: _configured(cluster, name).get("update_failed"), 120, "the rollback"
        )
        wait_for(
            lambda: _healthy_on(cluster, name) == {one["uuid"], two["uuid"]},
            120,
            "both instances healthy again",
        )
        before = len(writer.acknowledged)
        wait_for(lambda: len(writer.acknowledged) >= before + 20, 60, "writes after it")
    finally:
        writer.stopping.set()
        writer.join()
    print(f"bad update rolled back ({reason}); failures {writer.failures[:5]}")
    assert writer.failures == [], "the service stopped answering during a bad update"
    assert set(writer.versions) == {"2"}, "the unhealthy revision answered a request"
    assert all("VERSION=2" in _environment(node, name) for node in (one, two))

    ok(cluster, "apps", "scale", name, "3")
    wait_for(lambda: len(_healthy_on(cluster, name)) == 3, 120, "three healthy instances")
    ok(cluster, "apps", "scale", name, "1")
    wait_for(
        lambda: set(_instances(cluster, name)) == {one["uuid"]},
        120,
        "one instance, on node 1",
    )
    ok(cluster, "apps", "scale", name, "2")
    wait_for(lambda: len(_healthy_on(cluster, name)) == 2, 120, "two healthy instances again")

    client = docker.from_env()
    try:
        victim = client.containers.get(container_name(two["uuid"], name))
        started = victim.attrs["State"]["StartedAt"]
        victim.kill()
    finally:
        client.close()
    deadline = time.monotonic() + 60
    replaced = False
    while time.monotonic() < deadline:
        client = docker.from_env()
        try:
            state = client.containers.get(container_name(two["uuid"], name)).attrs["State"]
        finally:
            client.close()
        if state["Running"] and state["StartedAt"] != started:
            replaced = True
            break
        time.sleep(0.2)
    assert replaced, "the killed instance was not started again"
    wait_for(lambda: len(_healthy_on(cluster, name)) == 2, 120, "both healthy after the kill")


def test_a_single_stateless_instance_is_updated_beside_its_new_revision(
    make_lab: Callable[..., dict[str, Any]], docker_client: Any
) -> None:
    """
    An application without volumes running once is updated under a steady
    client load without a failed request: the new revision starts on the
    other node first, the old instance is replaced once it is healthy, and
    the extra instance goes again, leaving one instance, of the new
    revision, on the application's node.
    """
    ensure_counter_image(docker_client)
    cluster = make_lab(nodes=2)
    one, two = sorted(cluster["nodes"], key=lambda n: n["uuid"])
    name, port = _deploy(cluster, one, "solo")
    wait_for(lambda: _healthy_on(cluster, name) == {one["uuid"]}, 120, "the instance")
    writer = Writer(two["address"], port, timeout=30.0)
    writer.start()
    seen_beside = False
    try:
        wait_for(lambda: len(writer.acknowledged) >= 20, 60, "writes before the update")
        api(
            cluster,
            "POST",
            f"/v1/configuration/containers/{name}",
            {"environment": {"VERSION": "2"}},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            where = set(_instances(cluster, name))
            seen_beside = seen_beside or two["uuid"] in where
            if (
                where == {one["uuid"]}
                and "VERSION=2" in _environment(one, name)
                and _healthy_on(cluster, name) == {one["uuid"]}
            ):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the update did not end with one new instance on node 1")
        before = len(writer.acknowledged)
        wait_for(lambda: len(writer.acknowledged) >= before + 20, 60, "writes after it")
    finally:
        writer.stopping.set()
        writer.join()
    print(
        f"\nsingle instance updated beside its new revision: {len(writer.acknowledged)} "
        f"writes, longest wait {writer.longest_wait():.2f} s, failures {writer.failures[:5]}"
    )
    assert seen_beside, "no instance ran on node 2 during the update"
    assert writer.failures == []


def _container_names(node: dict[str, Any]) -> set[str]:
    """The Docker names of the containers of ``node``'s agent (running or not)."""
    client = docker.from_env()
    try:
        prefix = container_name(node["uuid"], "x")[:-1]
        return {
            c.name
            for c in client.containers.list(all=True)
            if c.name.startswith(prefix)
        }
    finally:
        client.close()


def test_more_replicas_than_nodes_all_run_and_answer_through_the_router(
    make_lab: Callable[..., dict[str, Any]], docker_client: Any
) -> None:
    """
    Three instances of a stateless counter on a two-node cluster all run:
    ``NAME`` and ``NAME..2`` on the application's node, ``NAME`` on the
    other, and each of the three answers requests sent through a node's
    router.  Scaled back to two, the extra instance is removed and one
    instance per node answers on.
    """
    ensure_counter_image(docker_client)
    cluster = make_lab(nodes=2)
    one, two = sorted(cluster["nodes"], key=lambda n: n["uuid"])
    name, port = _deploy(cluster, one, "many", replicas=3)
    extra = f"{name}..2"
    wait_for(
        lambda: _healthy_on(cluster, name) == {one["uuid"], two["uuid"]},
        120,
        "instances healthy on both nodes",
    )
    assert _container_names(one) == {container_name(one["uuid"], n) for n in (name, extra)}
    assert _container_names(two) == {container_name(two["uuid"], name)}
    instances = [(one, name), (one, extra), (two, name)]
    writer = Writer(two["address"], port, timeout=30.0)
    writer.start()
    try:
        wait_for(
            lambda: all(_answered(node, n) >= 5 for node, n in instances),
            120,
            "each of the three instances to answer requests",
        )
    finally:
        writer.stopping.set()
        writer.join()
    assert writer.failures == [], "requests failed while three instances ran"

    ok(cluster, "apps", "scale", name, "2")
    wait_for(
        lambda: _container_names(one) == {container_name(one["uuid"], name)},
        120,
        "the extra instance on node 1 to be removed",
    )
    assert _container_names(two) == {container_name(two["uuid"], name)}
    wait_for(
        lambda: _healthy_on(cluster, name) == {one["uuid"], two["uuid"]},
        120,
        "one healthy instance per node",
    )
    counts = {node["uuid"]: _answered(node, name) for node in (one, two)}
    writer = Writer(one["address"], port, timeout=30.0)
    writer.start()
    try:
        wait_for(
            lambda: all(_answered(node, name) >= counts[node["uuid"]] + 3 for node in (one, two)),
            60,
            "both remaining instances to answer",
        )
    finally:
        writer.stopping.set()
        writer.join()
    assert writer.failures == [], "requests failed after scaling down"


def _stopping_on(cluster: dict[str, Any], name: str, node: dict[str, Any]) -> bool:
    """Whether ``node`` reports its instance of the application *stopping*."""
    entry = _instances(cluster, name).get(node["uuid"])
    return entry is not None and entry.get("health") == "stopping"


def test_a_request_open_through_another_nodes_router_finishes_before_its_instance_stops(
    make_lab: Callable[..., dict[str, Any]], docker_client: Any
) -> None:
    """
    A request still open to an instance about to be replaced by an update,
    forwarded by another node's router (which the instance's own node
    never sees), is waited for: the old instance, draining, keeps running
    until the request is finished and answers it as the old version; then
    the update completes.
    """
    ensure_counter_image(docker_client)
    cluster = make_lab(nodes=2)
    one, two = sorted(cluster["nodes"], key=lambda n: n["uuid"])
    name, port = _deploy(cluster, one, "slow", environment={"VERSION": "1"})
    wait_for(lambda: _healthy_on(cluster, name) == {one["uuid"]}, timeout=60)
    old = docker_client.containers.get(container_name(one["uuid"], name))
    with socket.create_connection((two["address"], port), timeout=30) as client:
        # Half a request: the counter waits for the rest of its headers.
        client.sendall(b"GET /?slow-request HTTP/1.0\r\n")
        api(
            cluster,
            "POST",
            f"/v1/configuration/containers/{name}",
            {"environment": {"VERSION": "2"}},
        )
        wait_for(lambda: _stopping_on(cluster, name, one), timeout=60)
        time.sleep(2.0)  # far past the settle time of a drain
        try:
            old.reload()
        except docker.errors.NotFound:
            pytest.fail("the draining instance was removed under an open request")
        assert old.status == "running", "the draining instance stopped under an open request"
        client.sendall(b"\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0], answer
    assert b"X-Version: 1" in answer, answer
    wait_for(
        lambda: "VERSION=2" in _environment(one, name) or "VERSION=2" in _environment(two, name),
        timeout=60,
    )
    wait_for(lambda: _configured(cluster, name).get("updating") in (None, False), timeout=60)
