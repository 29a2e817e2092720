"""
Acceptance test: the real ``flocker-deploy`` command against a real local
cluster (``admin/lab``, directory backend, real Docker) — an application
with its data deployed from Flocker's format, moved to another node by a
changed deployment file with its data, joined by a linked application from
a compose file, and bad files refused with the configuration untouched.
"""

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from flocker.node.test.test_acceptance_containers import logged_writes, relay, request
from flocker.node.test.test_acceptance_datasets import api
from flocker.runtime.testimages import COUNTER_IMAGE, ensure_counter_image
from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

pytestmark = pytest.mark.acceptance

FLOCKER_DEPLOY = os.path.join(os.path.dirname(sys.executable), "flocker-deploy")


def flocker_deploy(
    cluster: dict[str, Any],
    directory: Path,
    deployment: str,
    application: str,
    *options: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``flocker-deploy`` on two files written in ``directory``; the process result."""
    paths = []
    for name, text in (("deployment.yml", deployment), ("application.yml", application)):
        path = directory / name
        path.write_text(textwrap.dedent(text))
        paths.append(str(path))
    return subprocess.run(
        [FLOCKER_DEPLOY, *paths, *options],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLOCKER_CLUSTER": os.path.join(cluster["dir"], "cluster.json")},
    )


def configuration(cluster: dict[str, Any]) -> tuple[Any, Any]:
    """The configured containers and datasets, as the REST API gives them."""
    return (
        api(cluster, "GET", "/v1/configuration/containers"),
        api(cluster, "GET", "/v1/configuration/datasets"),
    )


def runs_on(cluster: dict[str, Any], name: str, node: dict[str, Any]) -> bool:
    """Whether the cluster state says ``name`` runs on ``node``."""
    return any(
        c["name"] == name and c["node_uuid"] == node["uuid"] and c.get("running")
        for c in api(cluster, "GET", "/v1/state/containers")
    )


def test_deploy_move_compose_and_refusals(
    make_lab: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """
    ``flocker-deploy`` runs a counter with its dataset on node 1 (a re-run
    changes nothing), moves it to node 2 when the deployment file says so,
    its count carrying on there, adds a linked frontend from a compose file
    without touching the counter, and refuses bad files and an unreachable
    control service with one line on stderr and the configuration unchanged.
    """
    client = docker.from_env()
    try:
        ensure_counter_image(client)
    finally:
        client.close()
    cluster = make_lab(nodes=2, backend="directory")
    one, two = cluster["nodes"]
    if one["address"].startswith("127."):
        pytest.fail("the local cluster's node addresses are loopback-only: containers cannot reach them (run as root)")
    port, front_port = (
        lab._free_port([n["address"] for n in cluster["nodes"]]) for _ in range(2)
    )
    application = f"""
        version: 1
        applications:
          counter:
            image: {COUNTER_IMAGE}
            ports: [{{internal: 80, external: {port}}}]
            volume: {{mountpoint: /data, maximum_size: 64M}}
            environment: {{COUNTER_FILE: /data/requests.log}}
        """

    # Flocker format, node named by its address.
    on_one = f"version: 1\nnodes:\n  {one['address']}: [counter]\n  {two['address']}: []\n"
    first = flocker_deploy(cluster, tmp_path, on_one, application)
    assert (first.returncode, first.stderr) == (0, "")
    containers, datasets = configuration(cluster)
    assert [(c["name"], c["node_uuid"]) for c in containers] == [("counter", one["uuid"])]
    assert [(d["metadata"], d["maximum_size"], d["primary"]) for d in datasets] == [
        ({"name": "counter"}, 64 * 1024 * 1024, one["uuid"])
    ]
    wait_for(lambda: request(one["address"], port, "first") is not None, 180, "the counter on node 1")
    for n in range(3):
        assert request(one["address"], port, f"before{n}") is not None

    again = flocker_deploy(cluster, tmp_path, on_one, application)
    assert again.returncode == 0
    assert "nothing to change" in again.stdout
    assert configuration(cluster) == (containers, datasets)

    # A changed deployment file, naming node 2 by its UUID, moves it with its data.
    on_two = f"version: 1\nnodes:\n  {two['uuid']}: [counter]\n"
    moved = flocker_deploy(cluster, tmp_path, on_two, application)
    assert (moved.returncode, moved.stderr) == (0, "")
    assert moved.stdout.splitlines() == [f"moved application counter to node {two['uuid']}"]
    wait_for(lambda: runs_on(cluster, "counter", two), 240, "the counter on node 2")
    wait_for(lambda: request(two["address"], port, "after") is not None, 120, "the counter to answer on node 2")
    lines = logged_writes(cluster, datasets[0]["dataset_id"], two)
    assert [x for x in lines if x.startswith("before")] == ["before0", "before1", "before2"]
    assert lines[-1] == "after"
    after_move = configuration(cluster)
    assert [d["primary"] for d in after_move[1]] == [two["uuid"]]

    # A compose file: the same counter (unchanged) and a frontend linked to it.
    compose = f"""
        services:
          counter:
            image: {COUNTER_IMAGE}
            ports: ["{port}:80"]
            volumes: [/data]
            environment: [COUNTER_FILE=/data/requests.log]
          front:
            image: {COUNTER_IMAGE}
            ports: ["{front_port}:80"]
            links: ["counter:backend"]
        """
    both = f"version: 1\nnodes:\n  {one['address']}: [front]\n  {two['address']}: [counter]\n"
    composed = flocker_deploy(cluster, tmp_path, both, compose)
    assert (composed.returncode, composed.stderr) == (0, "")
    assert composed.stdout.splitlines() == [f"deployed application front on node {one['uuid']}"]
    count = len(lines)
    relayed = wait_for(lambda: relay(one["address"], front_port, "relayed"), 180, "the frontend to reach the counter")
    assert relayed is not None  # wait_for returns a true value
    assert relayed > count
    assert flocker_deploy(cluster, tmp_path, both, compose).stdout.startswith("nothing to change")
    settled = configuration(cluster)

    # Bad files and an unreachable control service change nothing.
    refusals = [
        (both, compose.replace("links:", "linkz:"), 1, "services.front.linkz: unknown key"),
        (both, compose.replace("image: ", "build: .\n            image: ", 1), 1, "services.counter.build: is not supported"),
        (on_one, application.replace("ports:", "portz:"), 1, "applications.counter.portz: unknown key"),
        (both.replace(one["address"], "10.255.255.1"), compose, 1, "nodes.10.255.255.1: no node of the cluster"),
        (f"version: 1\nnodes:\n  {one['address']}: [front]\n", compose, 1, "link 'backend' goes to port"),
        ("version: 1\nnodes: {a: [nothing]}\n", compose, 1, "'nothing' is not an application"),
        ("version: 1\nnodes: [\n", compose, 1, "not valid YAML"),
    ]
    for deployment, app_file, status, message in refusals:
        refused = flocker_deploy(cluster, tmp_path, deployment, app_file)
        assert refused.returncode == status, refused.stderr
        assert message in refused.stderr
        assert refused.stderr.count("\n") == 1 and refused.stdout == ""
        assert configuration(cluster) == settled
    closed = lab._free_port([cluster["control"]["host"]])
    unreachable = flocker_deploy(cluster, tmp_path, on_one, application, "--port", str(closed))
    assert unreachable.returncode == 3
    assert unreachable.stderr.startswith("flocker-deploy: cannot read the cluster's configuration: ")
    assert unreachable.stderr.count("\n") == 1
    assert configuration(cluster) == settled
