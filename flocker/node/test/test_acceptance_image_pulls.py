"""
Acceptance tests: the container agent pulls the images its applications
need from real registries (``docker-registry`` on loopback, one of them
private with its credentials in every node's ``agent.yml``), on a real
local cluster; a tag the registry lacks is reported in the node's state
and by ``flocker apps ls``, in the registry's words.
"""

from __future__ import annotations

import os
from typing import Any
from uuid import uuid4

import docker.errors
import pytest

from flocker.cli.test.test_acceptance_cli import as_json
from flocker.runtime.testimages import COUNTER_IMAGE, ensure_counter_image
from flocker.testtools import lab
from flocker.testtools.pytest_plugin import PRIVATE_REGISTRY_CREDENTIALS
from flocker.testtools.waiting import wait_for

from .test_acceptance_containers import request
from .test_acceptance_datasets import api

pytestmark = pytest.mark.acceptance


@pytest.fixture
def registry_cluster(make_lab: Any, local_registries: Any) -> Any:
    """A one-node cluster whose agents have the private registry's credentials."""
    _, private = local_registries
    username, password = PRIVATE_REGISTRY_CREDENTIALS
    return make_lab(
        nodes=1, registries={private.address: {"username": username, "password": password}}
    )


def _deploy(cluster: dict[str, Any], image: str) -> tuple[str, int]:
    """Configure a counter of ``image`` (no dataset) on the node; (name, port)."""
    node = cluster["nodes"][0]
    name = f"pulled-{uuid4().hex[:8]}"
    port = lab._free_port([node["address"]])
    api(
        cluster,
        "POST",
        "/v1/configuration/containers",
        {
            "node_uuid": node["uuid"],
            "name": name,
            "image": image,
            "ports": [{"internal": 80, "external": port}],
        },
    )
    return name, port


def _logs(cluster: dict[str, Any]) -> list[str]:
    """Every log file of the cluster's agents and control services."""
    directories = [n["log_dir"] for n in cluster["nodes"]]
    directories += [c["log_dir"] for c in lab.controls(cluster)]
    return [
        os.path.join(root, name)
        for directory in directories
        for root, _, names in os.walk(directory)
        for name in names
    ]


def _pulls(cluster: dict[str, Any]) -> dict[str, Any]:
    """Application name → its image pull as ``GET /v1/state/nodes`` shows it."""
    return {
        pull["application"]: pull
        for node in api(cluster, "GET", "/v1/state/nodes")
        for pull in node.get("image_pulls", [])
    }


def test_images_are_pulled_from_a_private_registry_and_a_missing_tag_is_reported(
    registry_cluster: dict[str, Any], local_registries: Any, docker_client: Any
) -> None:
    """
    An application whose image is only in the private registry runs once
    the node pulled it with the credentials of its agent.yml; one whose tag
    the registry lacks is reported in the node's state and by the CLI as a
    failed pull with the registry's message, and the password is in no log.
    """
    _, private = local_registries
    ensure_counter_image(docker_client)
    name = f"flocker-test/pull-counter-{uuid4().hex[:8]}:1"
    reference = private.push(docker_client, COUNTER_IMAGE, name)
    cluster = registry_cluster
    node = cluster["nodes"][0]
    try:
        pulled, port = _deploy(cluster, reference)
        missing, _ = _deploy(cluster, reference.rsplit(":", 1)[0] + ":never-pushed")
        wait_for(
            lambda: request(node["address"], port, "ready") is not None,
            120,
            f"{pulled} to answer",
        )
        wait_for(
            lambda: (_pulls(cluster).get(missing) or {}).get("reason"),
            120,
            "the failed pull to be reported",
        )
        failed = _pulls(cluster)[missing]
        assert "manifest unknown" in failed["reason"] and failed["attempts"] >= 1
        assert pulled not in _pulls(cluster)
        views = as_json(cluster, "apps", "ls")
        states = {v["name"]: v["state"] for v in views}
        assert states[pulled].startswith("running")
        assert states[missing].startswith("image pull failed: ")
        password = PRIVATE_REGISTRY_CREDENTIALS[1]
        for log in _logs(cluster):
            with open(log, errors="replace") as handle:
                assert password not in handle.read(), log
    finally:
        try:
            docker_client.images.remove(reference, force=True)
        except docker.errors.ImageNotFound:
            pass


def test_an_update_to_an_image_that_cannot_be_got_rolls_back_while_the_old_one_serves(
    registry_cluster: dict[str, Any], local_registries: Any, docker_client: Any
) -> None:
    """
    An update of a running application to a tag the registry lacks is
    rolled back by the control service by itself once the node's pulls of
    it failed three times: the configuration returns to the image that
    runs, ``update_failed`` says the registry's words, and the old instance
    answered every request meanwhile.
    """
    _, private = local_registries
    ensure_counter_image(docker_client)
    reference = private.push(
        docker_client, COUNTER_IMAGE, f"flocker-test/update-counter-{uuid4().hex[:8]}:1"
    )
    cluster = registry_cluster
    node = cluster["nodes"][0]
    try:
        name, port = _deploy(cluster, reference)
        wait_for(
            lambda: request(node["address"], port, "ready") is not None, 120, f"{name} to answer"
        )
        missing = reference.rsplit(":", 1)[0] + ":never-pushed"
        updated = api(cluster, "POST", f"/v1/configuration/containers/{name}", {"image": missing})
        assert updated["updating"] is True and updated["image"] == missing
        failed: list[int] = []

        def rolled_back() -> Any:
            if request(node["address"], port, f"during-{len(failed)}") is None:
                failed.append(1)
            (configured,) = [
                c for c in api(cluster, "GET", "/v1/configuration/containers") if c["name"] == name
            ]
            return configured if configured.get("update_failed") else None

        configured = wait_for(rolled_back, 120, "the update to be rolled back")
        reason = configured["update_failed"]
        assert "could not get image" in reason and "manifest unknown" in reason, reason
        assert configured["image"] == reference and "updating" not in configured
        assert failed == [], "the old instance did not answer while the update failed"
        assert request(node["address"], port, "after") is not None
    finally:
        try:
            docker_client.images.remove(reference, force=True)
        except docker.errors.ImageNotFound:
            pass
