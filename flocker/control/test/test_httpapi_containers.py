"""Unit tests of the REST API v1 leases and containers (in memory, via StubTreq)."""

from __future__ import annotations

from typing import Any

import pytest

from flocker.control._model import Application, Port
from flocker.control._state import NodeState
from flocker.control.test.test_httpapi import (
    DATASET,
    NODE_A,
    NODE_B,
    OTHER_DATASET,
    UNKNOWN_NODE,
    APIHarness,
)


@pytest.fixture
def api() -> APIHarness:
    """A fresh API harness with dataset DATASET on node A."""
    harness = APIHarness()
    harness.create_dataset(dataset_id=DATASET)
    return harness


def _lease(node: str = NODE_A, expires: Any = None, dataset: str = DATASET) -> Any:
    return {"dataset_id": dataset, "node_uuid": node, "expires": expires}


# --------------------------------------------------------------------------
# leases


def test_acquire_lease(api: APIHarness) -> None:
    """Acquiring answers 201 with the lease; it is stored and listed."""
    result = api.request("POST", "/v1/configuration/leases", _lease(expires=60))
    assert (result.code, result.body) == (201, _lease(expires=60.0))
    stored = api.stored().deployment.leases.get(DATASET)
    assert stored is not None and stored.node_uuid == NODE_A
    listed = api.request("GET", "/v1/configuration/leases")
    assert listed.body == [_lease(expires=60.0)]
    assert (
        listed.headers["x-configuration-tag"] == result.headers["x-configuration-tag"]
    )


def test_lease_expires_counts_down(api: APIHarness) -> None:
    """A lease's expires is the time left; a lapsed lease is not listed."""
    api.request("POST", "/v1/configuration/leases", _lease(expires=60))
    api.clock.advance(15)
    assert api.request("GET", "/v1/configuration/leases").body == [_lease(expires=45.0)]
    api.clock.advance(45)
    assert api.request("GET", "/v1/configuration/leases").body == []


def test_renew_lease(api: APIHarness) -> None:
    """The holder acquiring again renews the lease: 200, new expiry."""
    api.request("POST", "/v1/configuration/leases", _lease(expires=10))
    result = api.request("POST", "/v1/configuration/leases", _lease(expires=None))
    assert (result.code, result.body) == (200, _lease())


def test_conflicting_lease(api: APIHarness) -> None:
    """Another node's lease on the dataset is a 409 naming the holder."""
    api.request("POST", "/v1/configuration/leases", _lease())
    description = api.refused(
        409, "POST", "/v1/configuration/leases", _lease(node=NODE_B)
    )
    assert NODE_A in description


def test_lapsed_lease_can_be_taken(api: APIHarness) -> None:
    """Once a lease lapses another node may acquire it."""
    api.request("POST", "/v1/configuration/leases", _lease(expires=5))
    api.clock.advance(5)
    result = api.request("POST", "/v1/configuration/leases", _lease(node=NODE_B))
    assert (result.code, result.body) == (201, _lease(node=NODE_B))


def test_lease_unknown_dataset(api: APIHarness) -> None:
    """A lease on a dataset that does not exist is a 404."""
    api.refused(404, "POST", "/v1/configuration/leases", _lease(dataset=OTHER_DATASET))


def test_lease_unknown_node(api: APIHarness) -> None:
    """A lease for a node that is not in the cluster is a 400."""
    description = api.refused(
        400, "POST", "/v1/configuration/leases", _lease(node=UNKNOWN_NODE)
    )
    assert UNKNOWN_NODE in description


def test_lease_deleted_dataset(api: APIHarness) -> None:
    """A deleted dataset cannot be leased: 409."""
    api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    api.refused(409, "POST", "/v1/configuration/leases", _lease())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataset_id": DATASET, "node_uuid": NODE_A}, "expires"),
        ({**_lease(), "expires": -1}, "expires"),
        ({**_lease(), "expires": "soon"}, "expires"),
        ({**_lease(), "node_uuid": "node-a"}, "node_uuid"),
        ({**_lease(), "dataset_id": 5}, "dataset_id"),
        ({**_lease(), "holder": "me"}, "holder"),
    ],
)
def test_lease_bad_fields(api: APIHarness, body: Any, field: str) -> None:
    """A lease request with a bad, missing or unknown field is a 400 naming it."""
    assert field in api.refused(400, "POST", "/v1/configuration/leases", body)


def test_release_lease(api: APIHarness) -> None:
    """Releasing answers the lease and removes it."""
    api.request("POST", "/v1/configuration/leases", _lease())
    result = api.request("DELETE", f"/v1/configuration/leases/{DATASET}")
    assert (result.code, result.body) == (200, _lease())
    assert len(api.stored().deployment.leases) == 0


def test_release_unknown_lease(api: APIHarness) -> None:
    """Releasing a lease that does not exist is a 404, and so is a malformed id."""
    api.refused(404, "DELETE", f"/v1/configuration/leases/{DATASET}")
    api.refused(404, "DELETE", "/v1/configuration/leases/12")


# --------------------------------------------------------------------------
# containers


def _container(**changes: Any) -> dict[str, Any]:
    body = {
        "node_uuid": NODE_A,
        "name": "db",
        "image": "postgres:16",
        "ports": [{"internal": 5432, "external": 15432}],
        "environment": {"PGDATA": "/data"},
        "restart_policy": {"name": "on-failure", "maximum_retry_count": 3},
        "volumes": [{"dataset_id": DATASET, "mountpoint": "/data"}],
        "links": [{"alias": "cache", "local_port": 6379, "remote_port": 16379}],
        "cpu_shares": 512,
        "memory_limit": 256 * 1024 * 1024,
        "swappiness": 30,
        "command_line": ["postgres", "-N", "10"],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def test_create_container(api: APIHarness) -> None:
    """Creating a container answers 201 with it; it is stored and listed."""
    result = api.request("POST", "/v1/configuration/containers", _container())
    assert (result.code, result.body) == (201, _container())
    app, node = api.stored().deployment.get_application("db")
    assert (node, app.image, len(app.volumes)) == (NODE_A, "postgres:16", 1)
    listed = api.request("GET", "/v1/configuration/containers")
    assert listed.body == [_container()]
    assert listed.headers["x-configuration-tag"]


def test_create_minimal_container(api: APIHarness) -> None:
    """
    Only node_uuid, name and image are required; the answer leaves out the
    empty ports, environment, volumes and links, as the original API did.
    """
    body = {"node_uuid": NODE_B, "name": "web", "image": "nginx"}
    result = api.request("POST", "/v1/configuration/containers", body)
    assert result.code == 201
    assert result.body == {**body, "restart_policy": {"name": "never"}}


def test_container_with_several_volumes(api: APIHarness) -> None:
    """A container may mount several datasets."""
    api.create_dataset(dataset_id=OTHER_DATASET)
    volumes = [
        {"dataset_id": DATASET, "mountpoint": "/data"},
        {"dataset_id": OTHER_DATASET, "mountpoint": "/logs"},
    ]
    result = api.request(
        "POST", "/v1/configuration/containers", _container(volumes=volumes)
    )
    assert (result.code, result.body["volumes"]) == (201, volumes)


def test_duplicate_container(api: APIHarness) -> None:
    """A container name already in use is a 409."""
    api.request("POST", "/v1/configuration/containers", _container())
    description = api.refused(
        409,
        "POST",
        "/v1/configuration/containers",
        _container(node_uuid=NODE_B, volumes=[], ports=[]),
    )
    assert "db" in description


def test_container_unknown_node(api: APIHarness) -> None:
    """A container on a node that is not in the cluster is a 400."""
    assert UNKNOWN_NODE in api.refused(
        400,
        "POST",
        "/v1/configuration/containers",
        _container(node_uuid=UNKNOWN_NODE, volumes=[]),
    )


def test_container_unknown_dataset(api: APIHarness) -> None:
    """A volume naming a dataset that does not exist is a 404."""
    volumes = [{"dataset_id": OTHER_DATASET, "mountpoint": "/data"}]
    assert OTHER_DATASET in api.refused(
        404, "POST", "/v1/configuration/containers", _container(volumes=volumes)
    )


def test_container_dataset_elsewhere(api: APIHarness) -> None:
    """A volume whose dataset's primary is another node is a 409."""
    assert NODE_A in api.refused(
        409, "POST", "/v1/configuration/containers", _container(node_uuid=NODE_B)
    )


def test_container_deleted_dataset(api: APIHarness) -> None:
    """A volume whose dataset is deleted is a 409."""
    api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    api.refused(409, "POST", "/v1/configuration/containers", _container())


def test_container_dataset_in_use(api: APIHarness) -> None:
    """A dataset another container mounts is a 409 naming that container."""
    api.request("POST", "/v1/configuration/containers", _container())
    description = api.refused(
        409, "POST", "/v1/configuration/containers", _container(name="db2", ports=[])
    )
    assert "'db'" in description


def test_container_port_clash(api: APIHarness) -> None:
    """An external port already published on the node is a 409."""
    api.request("POST", "/v1/configuration/containers", _container())
    description = api.refused(
        409, "POST", "/v1/configuration/containers", _container(name="db2", volumes=[])
    )
    assert "15432" in description


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "-bad"}, "name"),
        ({"name": "a b"}, "name"),
        ({"image": ""}, "image"),
        ({"image": "has space"}, "image"),
        ({"ports": [{"internal": 0, "external": 80}]}, "ports/0/internal"),
        ({"ports": [{"internal": 80, "external": 70000}]}, "ports/0/external"),
        ({"ports": [{"internal": 80}]}, "external"),
        ({"environment": {"A": 1}}, "environment/A"),
        ({"restart_policy": {"name": "sometimes"}}, "restart_policy"),
        (
            {"restart_policy": {"name": "always", "maximum_retry_count": 2}},
            "restart_policy",
        ),
        ({"volumes": [{"dataset_id": "x", "mountpoint": "/d"}]}, "dataset_id"),
        ({"volumes": [{"dataset_id": DATASET, "mountpoint": "rel"}]}, "mountpoint"),
        ({"cpu_shares": 0}, "cpu_shares"),
        ({"memory_limit": "1G"}, "memory_limit"),
        ({"command_line": "ls -l"}, "command_line"),
        ({"links": [{"alias": "x", "local_port": 1}]}, "remote_port"),
        ({"node_uuid": None}, "node_uuid"),
        ({"host": "10.0.0.1"}, "host"),
    ],
)
def test_container_bad_fields(api: APIHarness, changes: Any, field: str) -> None:
    """A container with a bad, missing or unknown field is a 400 naming it."""
    description = api.refused(
        400, "POST", "/v1/configuration/containers", _container(**changes)
    )
    assert field in description


@pytest.mark.parametrize("swappiness", [0, 100])
def test_container_swappiness_accepted(api: APIHarness, swappiness: int) -> None:
    """
    Swappiness from 0 to 100 is accepted, stored in the configuration and
    answered, as the original API did.
    """
    body = _container(swappiness=swappiness)
    result = api.request("POST", "/v1/configuration/containers", body)
    assert (result.code, result.body) == (201, body)
    app, _ = api.stored().deployment.get_application("db")
    assert app.swappiness == swappiness
    listed = api.request("GET", "/v1/configuration/containers")
    assert listed.body[0]["swappiness"] == swappiness


@pytest.mark.parametrize("swappiness", [-1, 101, "50", True, 50.5])
def test_container_swappiness_refused(api: APIHarness, swappiness: Any) -> None:
    """Swappiness that is not an integer from 0 to 100 is a 400 naming it."""
    description = api.refused(
        400, "POST", "/v1/configuration/containers", _container(swappiness=swappiness)
    )
    assert "swappiness" in description
    assert api.request("GET", "/v1/configuration/containers").body == []


def test_container_without_swappiness(api: APIHarness) -> None:
    """A container created without swappiness has none and answers none."""
    result = api.request(
        "POST", "/v1/configuration/containers", _container(swappiness=None)
    )
    assert "swappiness" not in result.body
    app, _ = api.stored().deployment.get_application("db")
    assert app.swappiness is None


def test_container_duplicate_mountpoints(api: APIHarness) -> None:
    """Two volumes at one mountpoint are a 400."""
    api.create_dataset(dataset_id=OTHER_DATASET)
    volumes = [
        {"dataset_id": DATASET, "mountpoint": "/data"},
        {"dataset_id": OTHER_DATASET, "mountpoint": "/data"},
    ]
    assert "mountpoint" in api.refused(
        400, "POST", "/v1/configuration/containers", _container(volumes=volumes)
    )


def test_move_container(api: APIHarness) -> None:
    """Moving a container moves it and the datasets it mounts."""
    api.request("POST", "/v1/configuration/containers", _container())
    result = api.request(
        "POST", "/v1/configuration/containers/db", {"node_uuid": NODE_B}
    )
    assert (result.code, result.body) == (200, _container(node_uuid=NODE_B))
    deployment = api.stored().deployment
    assert deployment.get_application("db")[1] == NODE_B
    assert deployment.get_dataset(DATASET)[1] == NODE_B


def test_move_unknown_container(api: APIHarness) -> None:
    """Moving a container that does not exist is a 404."""
    api.refused(404, "POST", "/v1/configuration/containers/db", {"node_uuid": NODE_B})


def test_move_container_unknown_node(api: APIHarness) -> None:
    """Moving a container to a node not in the cluster is a 400."""
    api.request("POST", "/v1/configuration/containers", _container())
    api.refused(
        400, "POST", "/v1/configuration/containers/db", {"node_uuid": UNKNOWN_NODE}
    )
    api.refused(400, "POST", "/v1/configuration/containers/db", {"node": NODE_B})


def test_move_container_leased_dataset(api: APIHarness) -> None:
    """A container whose dataset is leased on its node cannot move: 409."""
    api.request("POST", "/v1/configuration/containers", _container())
    api.request("POST", "/v1/configuration/leases", _lease())
    api.refused(409, "POST", "/v1/configuration/containers/db", {"node_uuid": NODE_B})


def test_move_container_port_clash(api: APIHarness) -> None:
    """A container cannot move to a node where its external port is taken: 409."""
    api.request("POST", "/v1/configuration/containers", _container())
    other = _container(node_uuid=NODE_B, name="web", volumes=[])
    api.request("POST", "/v1/configuration/containers", other)
    assert "15432" in api.refused(
        409, "POST", "/v1/configuration/containers/db", {"node_uuid": NODE_B}
    )


def test_delete_container(api: APIHarness) -> None:
    """Deleting a container answers it and removes it; its dataset stays."""
    api.request("POST", "/v1/configuration/containers", _container())
    result = api.request("DELETE", "/v1/configuration/containers/db")
    assert (result.code, result.body) == (200, _container())
    deployment = api.stored().deployment
    assert list(deployment.all_applications()) == []
    assert deployment.get_dataset(DATASET)[1] == NODE_A


def test_delete_unknown_container(api: APIHarness) -> None:
    """Deleting a container that does not exist is a 404."""
    api.refused(404, "DELETE", "/v1/configuration/containers/db")


def test_state_containers(api: APIHarness) -> None:
    """
    Containers nodes report are listed as running on their node, empty
    environment, volumes and links left out.
    """
    app = Application(
        name="web", image="nginx", ports=[Port(internal_port=80, external_port=8080)]
    )
    api.state.update_node_state(NodeState(uuid=NODE_B, applications={"web": app}))
    result = api.request("GET", "/v1/state/containers")
    assert result.body == [
        {
            "node_uuid": NODE_B,
            "name": "web",
            "image": "nginx",
            "running": True,
            "ports": [{"internal": 80, "external": 8080}],
            "restart_policy": {"name": "never"},
        }
    ]


def test_state_containers_swappiness(api: APIHarness) -> None:
    """A container a node reports with swappiness is listed with it."""
    app = Application(name="web", image="nginx", swappiness=0)
    api.state.update_node_state(NodeState(uuid=NODE_B, applications={"web": app}))
    result = api.request("GET", "/v1/state/containers")
    assert result.body[0]["swappiness"] == 0


def test_duplicate_link_alias_conflicts(api: APIHarness) -> None:
    """Two links with one alias are a 409 naming it, as in the original API."""
    links = [
        {"alias": "db", "local_port": 5432, "remote_port": 15432},
        {"alias": "db", "local_port": 5433, "remote_port": 15433},
    ]
    description = api.refused(
        409, "POST", "/v1/configuration/containers", _container(links=links)
    )
    assert "db" in description
