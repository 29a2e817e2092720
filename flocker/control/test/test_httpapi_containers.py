"""Unit tests of the REST API v1 leases and containers (in memory, via StubTreq)."""

from __future__ import annotations

from typing import Any

import pytest

from flocker.control._model import Application, HealthCheck, Port
from flocker.control._state import ApplicationHealth, NodeState
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


# --------------------------------------------------------------------------
# health checks


def _health(**changes: Any) -> dict[str, Any]:
    """An HTTP health check of db's internal port, with ``changes``."""
    return {"kind": "http", "port": 5432, "path": "/healthz", **changes}


#: What the API answers for `_health()`: every key, the defaults filled in.
_HEALTH_ANSWER = {
    "kind": "http",
    "port": 5432,
    "path": "/healthz",
    "interval": 5.0,
    "timeout": 2.0,
    "retries": 3,
    "start_period": 30.0,
}


def test_create_container_with_health_check(api: APIHarness) -> None:
    """
    A container created with a health check answers and lists it with
    every key (the defaults filled in), and the configuration keeps it.
    """
    result = api.request(
        "POST", "/v1/configuration/containers", _container(health=_health())
    )
    assert (result.code, result.body) == (201, _container(health=_HEALTH_ANSWER))
    app, _ = api.stored().deployment.get_application("db")
    assert app.health == HealthCheck(kind="http", port=5432, path="/healthz")
    listed = api.request("GET", "/v1/configuration/containers")
    assert listed.body == [_container(health=_HEALTH_ANSWER)]


def test_create_container_with_tcp_health_check_and_integral_seconds(
    api: APIHarness,
) -> None:
    """
    A TCP health check has no path; its seconds may be given as integers
    and are answered as numbers of seconds.
    """
    health = {"kind": "tcp", "port": 5432, "interval": 1, "timeout": 1, "retries": 1,
              "start_period": 0}  # fmt: skip
    result = api.request(
        "POST", "/v1/configuration/containers", _container(health=health)
    )
    assert result.code == 201
    assert result.body["health"] == {**health, "interval": 1.0, "timeout": 1.0,
                                     "start_period": 0.0}  # fmt: skip
    app, _ = api.stored().deployment.get_application("db")
    assert app.health == HealthCheck(
        kind="tcp", port=5432, interval=1.0, timeout=1.0, retries=1, start_period=0.0
    )


@pytest.mark.parametrize(
    "health",
    [
        {"kind": "http", "port": 5432},
        {"kind": "tcp", "port": 5432, "path": "/"},
        {"kind": "udp", "port": 5432},
        {"kind": "http", "port": 5432, "path": "healthz"},
        {"kind": "http", "port": 5432, "path": "/a b"},
        {"kind": "tcp", "port": "5432"},
        {"kind": "tcp", "port": 0},
        {"kind": "tcp", "port": 5432, "interval": 0},
        {"kind": "tcp", "port": 5432, "interval": "5s"},
        {"kind": "tcp", "port": 5432, "timeout": 86401},
        {"kind": "tcp", "port": 5432, "retries": 0},
        {"kind": "tcp", "port": 5432, "retries": 1.5},
        {"kind": "tcp", "port": 5432, "start_period": -1},
        {"kind": "tcp", "port": 5432, "colour": "red"},
        {"port": 5432},
        "tcp",
    ],
)
def test_create_container_bad_health_check(api: APIHarness, health: Any) -> None:
    """
    A health check with a bad, missing or unknown key (an HTTP check
    without a path, a TCP check with one) is a 400 naming the health
    check, and nothing is created.
    """
    description = api.refused(
        400, "POST", "/v1/configuration/containers", _container(health=health)
    )
    assert "health" in description
    assert api.request("GET", "/v1/configuration/containers").body == []


def test_create_container_health_check_of_a_port_not_published(
    api: APIHarness,
) -> None:
    """A health check of a port the container does not publish is a 400 saying so."""
    description = api.refused(
        400, "POST", "/v1/configuration/containers", _container(health=_health(port=80))
    )
    assert "80" in description and "port" in description


# --------------------------------------------------------------------------
# updates


def _created(api: APIHarness, **changes: Any) -> None:
    """Create the `_container` db (with ``changes``)."""
    result = api.request("POST", "/v1/configuration/containers", _container(**changes))
    assert result.code == 201, result


def _listing(api: APIHarness) -> tuple[str, Any]:
    """The configured containers' tag and listing."""
    listed = api.request("GET", "/v1/configuration/containers")
    return listed.headers["x-configuration-tag"], listed.body


def test_update_image_makes_a_revision(api: APIHarness) -> None:
    """
    Updating the image answers the container at revision 1, waiting to be
    healthy, with the image it may be rolled back to; the configuration
    keeps the old specification as the previous one.
    """
    _created(api)
    result = api.request(
        "POST", "/v1/configuration/containers/db", {"image": "postgres:17"}
    )
    assert result.code == 200
    assert result.body == {
        **_container(image="postgres:17"),
        "revision": 1,
        "updating": True,
        "previous_image": "postgres:16",
    }
    app, node = api.stored().deployment.get_application("db")
    assert (node, app.image, app.revision, app.updating) == (NODE_A, "postgres:17", 1, True)
    assert app.previous is not None and app.previous.image == "postgres:16"
    assert _listing(api)[1] == [result.body]


def test_update_replaces_each_value_given(api: APIHarness) -> None:
    """
    Each key given replaces the whole value; null removes an optional
    setting; keys left out keep theirs.
    """
    _created(api)
    changes = {
        "environment": {"A": "1"},
        "ports": [{"internal": 5433, "external": 15433}],
        "links": [],
        "restart_policy": {"name": "always"},
        "command_line": None,
        "cpu_shares": None,
        "memory_limit": None,
        "swappiness": None,
        "health": {"kind": "tcp", "port": 5433},
    }
    result = api.request("POST", "/v1/configuration/containers/db", changes)
    assert result.code == 200
    expected = {
        "node_uuid": NODE_A,
        "name": "db",
        "image": "postgres:16",
        "ports": [{"internal": 5433, "external": 15433}],
        "environment": {"A": "1"},
        "restart_policy": {"name": "always"},
        "volumes": [{"dataset_id": DATASET, "mountpoint": "/data"}],
        "health": {"kind": "tcp", "port": 5433, "interval": 5.0, "timeout": 2.0,
                   "retries": 3, "start_period": 30.0},
        "revision": 1,
        "updating": True,
        "previous_image": "postgres:16",
    }  # fmt: skip
    assert result.body == expected


def test_update_removes_health_check_with_null(api: APIHarness) -> None:
    """Null for health removes the container's own health check."""
    _created(api, health=_health())
    result = api.request("POST", "/v1/configuration/containers/db", {"health": None})
    assert result.code == 200 and "health" not in result.body
    app, _ = api.stored().deployment.get_application("db")
    assert (app.health, app.revision) == (None, 1)


def test_update_to_the_same_specification_changes_nothing(api: APIHarness) -> None:
    """An update giving the values the container has makes no revision."""
    _created(api)
    tag, before = _listing(api)
    result = api.request(
        "POST", "/v1/configuration/containers/db", {"image": "postgres:16", "cpu_shares": 512}
    )
    assert (result.code, result.body) == (200, _container())
    assert _listing(api) == (tag, before)


def test_second_update_replaces_the_previous_specification(api: APIHarness) -> None:
    """A second update keeps only the specification it replaced as previous."""
    _created(api)
    api.request("POST", "/v1/configuration/containers/db", {"image": "postgres:17"})
    result = api.request(
        "POST", "/v1/configuration/containers/db", {"image": "postgres:18"}
    )
    assert (result.body["revision"], result.body["previous_image"]) == (2, "postgres:17")


def test_move_and_update_in_one_request(api: APIHarness) -> None:
    """A move and an update in one request are both made."""
    _created(api)
    result = api.request(
        "POST",
        "/v1/configuration/containers/db",
        {"node_uuid": NODE_B, "image": "postgres:17"},
    )
    assert result.code == 200
    assert (result.body["node_uuid"], result.body["image"], result.body["revision"]) == (
        NODE_B,
        "postgres:17",
        1,
    )
    deployment = api.stored().deployment
    assert deployment.get_application("db")[1] == NODE_B
    assert deployment.get_dataset(DATASET)[1] == NODE_B


def test_move_and_update_checks_the_new_ports_on_the_target(api: APIHarness) -> None:
    """
    A move with new ports is refused (409) when the target node publishes
    one of them, and neither the move nor the update is made.
    """
    _created(api)
    other = _container(node_uuid=NODE_B, name="web", volumes=[],
                       ports=[{"internal": 80, "external": 8080}])  # fmt: skip
    api.request("POST", "/v1/configuration/containers", other)
    tag, before = _listing(api)
    description = api.refused(
        409,
        "POST",
        "/v1/configuration/containers/db",
        {"node_uuid": NODE_B, "ports": [{"internal": 5432, "external": 8080}]},
    )
    assert "8080" in description
    assert _listing(api) == (tag, before)


def test_update_ports_taken_on_the_node(api: APIHarness) -> None:
    """An update to an external port another container on the node publishes is a 409."""
    _created(api)
    other = _container(name="web", volumes=[], ports=[{"internal": 80, "external": 8080}])
    api.request("POST", "/v1/configuration/containers", other)
    assert "8080" in api.refused(
        409,
        "POST",
        "/v1/configuration/containers/db",
        {"ports": [{"internal": 5432, "external": 8080}]},
    )


def test_update_health_check_of_a_port_the_request_does_not_publish(
    api: APIHarness,
) -> None:
    """
    An update whose health check probes a port its own new ports leave out
    contradicts itself: 400, and the configuration is unchanged.
    """
    _created(api)
    tag, before = _listing(api)
    description = api.refused(
        400,
        "POST",
        "/v1/configuration/containers/db",
        {"ports": [{"internal": 80, "external": 8080}], "health": _health()},
    )
    assert "5432" in description
    assert _listing(api) == (tag, before)


def test_update_health_check_of_a_port_the_container_does_not_publish(
    api: APIHarness,
) -> None:
    """
    A health check of a port the container does not publish conflicts with
    its configuration: 409 naming the port, and nothing changes.
    """
    _created(api)
    tag, before = _listing(api)
    description = api.refused(
        409, "POST", "/v1/configuration/containers/db", {"health": _health(port=80)}
    )
    assert "80" in description and "5432" in description
    assert _listing(api) == (tag, before)


def test_update_ports_leaving_out_the_health_check_port(api: APIHarness) -> None:
    """
    New ports that leave out the port the container's health check probes
    are a 409 saying so, and nothing changes.
    """
    _created(api, health=_health())
    tag, before = _listing(api)
    description = api.refused(
        409,
        "POST",
        "/v1/configuration/containers/db",
        {"ports": [{"internal": 80, "external": 8080}]},
    )
    assert "5432" in description and "health" in description
    assert _listing(api) == (tag, before)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "empty"),
        ({"image": 5}, "image"),
        ({"image": "has space"}, "image"),
        ({"ports": "15432"}, "ports"),
        ({"cpu_shares": "big"}, "cpu_shares"),
        ({"swappiness": 101}, "swappiness"),
        ({"environment": None}, "environment"),
        ({"restart_policy": None}, "restart_policy"),
        ({"health": {"kind": "http", "port": 5432}}, "health"),
        ({"volumes": [{"dataset_id": DATASET, "mountpoint": "/other"}]}, "volumes"),
        ({"volumes": []}, "volumes"),
        ({"name": "db2"}, "name"),
        ({"revision": 5}, "revision"),
        ({"image": "postgres:17", "updating": False}, "updating"),
    ],
)
def test_update_bad_body(api: APIHarness, body: Any, field: str) -> None:
    """
    An update with no key, a bad value, or a key that cannot be updated
    (volumes, the name, the revision and history, which are the control
    service's) is a 400 naming it, and the configuration is unchanged.
    """
    _created(api)
    tag, before = _listing(api)
    description = api.refused(400, "POST", "/v1/configuration/containers/db", body)
    assert field in description
    assert _listing(api) == (tag, before)


def test_update_unknown_container(api: APIHarness) -> None:
    """Updating a container that does not exist is a 404."""
    api.refused(404, "POST", "/v1/configuration/containers/db", {"image": "x"})


def test_update_honours_configuration_tag(api: APIHarness) -> None:
    """An update with a stale X-If-Configuration-Matches is a 412, changing nothing."""
    _created(api)
    tag, _ = _listing(api)
    api.request("POST", "/v1/configuration/containers/db", {"image": "postgres:17"})
    api.refused(
        412,
        "POST",
        "/v1/configuration/containers/db",
        {"image": "postgres:18"},
        headers={"X-If-Configuration-Matches": tag},
    )


# --------------------------------------------------------------------------
# rollback


def test_rollback_returns_to_the_previous_specification(api: APIHarness) -> None:
    """
    A rollback answers the container with the specification the last
    update replaced, as its next revision, with nothing left to roll back
    to; the configuration has it.
    """
    _created(api, health=_health())
    api.request(
        "POST",
        "/v1/configuration/containers/db",
        {"image": "postgres:17", "health": None, "environment": {}},
    )
    result = api.request("POST", "/v1/configuration/containers/db/rollback")
    assert result.code == 200
    assert result.body == {**_container(health=_HEALTH_ANSWER), "revision": 2}
    app, _ = api.stored().deployment.get_application("db")
    assert (app.image, app.revision, app.previous, app.updating) == (
        "postgres:16",
        2,
        None,
        False,
    )
    assert _listing(api)[1] == [result.body]


def test_rollback_with_an_empty_object(api: APIHarness) -> None:
    """A rollback's body may be an empty JSON object."""
    _created(api)
    api.request("POST", "/v1/configuration/containers/db", {"image": "postgres:17"})
    result = api.request("POST", "/v1/configuration/containers/db/rollback", {})
    assert (result.code, result.body["image"]) == (200, "postgres:16")


@pytest.mark.parametrize("raw", [b'{"image": "postgres:15"}', b"[]", b"{", b"null"])
def test_rollback_with_a_body_refused(api: APIHarness, raw: bytes) -> None:
    """A rollback with a body other than an empty object is a 400."""
    _created(api)
    api.request("POST", "/v1/configuration/containers/db", {"image": "postgres:17"})
    api.refused(400, "POST", "/v1/configuration/containers/db/rollback", raw=raw)


def test_rollback_without_previous_specification(api: APIHarness) -> None:
    """
    Rolling back a container never updated, or already rolled back, is a
    409 saying it has no previous specification.
    """
    _created(api)
    description = api.refused(409, "POST", "/v1/configuration/containers/db/rollback")
    assert description == "application 'db' has no previous specification to roll back to"
    api.request("POST", "/v1/configuration/containers/db", {"image": "postgres:17"})
    api.request("POST", "/v1/configuration/containers/db/rollback")
    api.refused(409, "POST", "/v1/configuration/containers/db/rollback")


def test_rollback_unknown_container(api: APIHarness) -> None:
    """Rolling back a container that does not exist is a 404."""
    api.refused(404, "POST", "/v1/configuration/containers/db/rollback")


def test_rollback_to_ports_taken_since(api: APIHarness) -> None:
    """
    A rollback to external ports another container on the node publishes
    since the update is a 409 naming them.
    """
    _created(api)
    api.request(
        "POST",
        "/v1/configuration/containers/db",
        {"ports": [{"internal": 5432, "external": 25432}]},
    )
    other = _container(name="web", volumes=[], ports=[{"internal": 80, "external": 15432}])
    assert api.request("POST", "/v1/configuration/containers", other).code == 201
    assert "15432" in api.refused(409, "POST", "/v1/configuration/containers/db/rollback")


def test_rollback_honours_configuration_tag(api: APIHarness) -> None:
    """A rollback with a stale X-If-Configuration-Matches is a 412, changing nothing."""
    _created(api)
    tag, _ = _listing(api)
    api.request("POST", "/v1/configuration/containers/db", {"image": "postgres:17"})
    api.refused(
        412,
        "POST",
        "/v1/configuration/containers/db/rollback",
        headers={"X-If-Configuration-Matches": tag},
    )
    fresh, _ = _listing(api)
    result = api.request(
        "POST",
        "/v1/configuration/containers/db/rollback",
        headers={"X-If-Configuration-Matches": fresh},
    )
    assert result.code == 200


def test_rolled_back_by_the_control_service_shows_why(api: APIHarness) -> None:
    """
    A container whose update the control service rolled back by itself
    answers why, until the next update.
    """
    _created(api)
    api.request("POST", "/v1/configuration/containers/db", {"image": "postgres:17"})
    api.configuration.change(
        lambda d: d.rollback_application("db", "unhealthy: HTTP 500")
    )
    listed = _listing(api)[1]
    assert listed == [{**_container(), "revision": 2, "update_failed": "unhealthy: HTTP 500"}]
    result = api.request(
        "POST", "/v1/configuration/containers/db", {"image": "postgres:18"}
    )
    assert "update_failed" not in result.body


def test_openapi_declares_update_and_rollback(api: APIHarness) -> None:
    """
    The OpenAPI document declares the update (its request schema: at least
    one key, no volumes) and the rollback, each with its 400, 404 and 409
    answers.
    """
    document = api.request("GET", "/v1/openapi.json").body
    paths = document["paths"]
    update = paths["/v1/configuration/containers/{name}"]["post"]
    rollback = paths["/v1/configuration/containers/{name}/rollback"]["post"]
    for operation in (update, rollback):
        assert {"200", "400", "404", "409", "412"} <= set(operation["responses"])
    ref = update["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["minProperties"] == 1
    assert "volumes" not in schema["properties"]
    assert {"node_uuid", "image", "health"} <= set(schema["properties"])
    container = document["components"]["schemas"]["configuration_container"]
    assert {"health", "revision", "updating", "update_failed", "previous_image"} <= set(
        container["properties"]
    )


# --------------------------------------------------------------------------
# state: health


def test_state_containers_health(api: APIHarness) -> None:
    """
    A container whose node reported its health is listed with the status
    and, when a probe failed, what it saw; one without a report has no
    health key.
    """
    web = Application(name="web", image="nginx")
    api_app = Application(name="api", image="api")
    cache = Application(name="cache", image="redis")
    health = {
        "web": ApplicationHealth(application="web", status="unhealthy", revision=1,
                                 reason="HTTP 500", failures=3, since=5.0),
        "api": ApplicationHealth(application="api", status="healthy", revision=0),
    }  # fmt: skip
    api.state.update_node_state(
        NodeState(
            uuid=NODE_B,
            applications={"web": web, "api": api_app, "cache": cache},
            health=health,
        )
    )
    body = {e["name"]: e for e in api.request("GET", "/v1/state/containers").body}
    assert (body["web"]["health"], body["web"]["health_reason"]) == (
        "unhealthy",
        "HTTP 500",
    )
    assert body["api"]["health"] == "healthy" and "health_reason" not in body["api"]
    assert "health" not in body["cache"]


# --------------------------------------------------------------------------
# replicas: how many instances a container runs

#: The model's reason for refusing replicas to a container with volumes.
_ONE_NODE = (
    "an application with volumes runs once: its data is on one node "
    "(replicas are for applications without volumes)"
)


def _stateless(**changes: Any) -> dict[str, Any]:
    """The `_container` db without volumes (so it may run several instances)."""
    return _container(volumes=None, **changes)


def test_create_container_with_replicas(api: APIHarness) -> None:
    """
    A container without volumes created with replicas answers and lists
    them; the configuration has them.
    """
    result = api.request("POST", "/v1/configuration/containers", _stateless(replicas=3))
    assert (result.code, result.body) == (201, _stateless(replicas=3))
    app, _ = api.stored().deployment.get_application("db")
    assert app.replicas == 3
    assert _listing(api)[1] == [result.body]


def test_container_running_once_answers_without_replicas(api: APIHarness) -> None:
    """
    A container created with replicas 1 (the default) runs once and
    answers without the key, as in the original API.
    """
    result = api.request("POST", "/v1/configuration/containers", _container(replicas=1))
    assert (result.code, result.body) == (201, _container())
    assert api.stored().deployment.get_application("db")[0].replicas == 1


def test_create_container_with_volumes_and_replicas_refused(api: APIHarness) -> None:
    """
    A container with volumes asking for more than one instance is a 400
    giving the model's reason, and nothing is configured.
    """
    description = api.refused(
        400, "POST", "/v1/configuration/containers", _container(replicas=2)
    )
    assert description == _ONE_NODE
    assert _listing(api)[1] == []


@pytest.mark.parametrize("replicas", [0, -1, 65, True, "2", 2.5, None])
def test_create_container_bad_replicas_refused(api: APIHarness, replicas: Any) -> None:
    """Replicas that are not an integer from 1 to 64 are a 400 naming them."""
    body = {**_stateless(), "replicas": replicas}
    assert "replicas" in api.refused(400, "POST", "/v1/configuration/containers", body)


def test_update_replicas_makes_a_revision(api: APIHarness) -> None:
    """
    A change of replicas alone is an update: the next revision, waiting to
    be healthy, the previous specification (running once) kept; back to
    1, the answer has no replicas again; the same number changes nothing.
    """
    api.request("POST", "/v1/configuration/containers", _stateless())
    result = api.request("POST", "/v1/configuration/containers/db", {"replicas": 4})
    assert (result.code, result.body) == (
        200,
        {
            **_stateless(replicas=4),
            "revision": 1,
            "updating": True,
            "previous_image": "postgres:16",
        },
    )
    app, _ = api.stored().deployment.get_application("db")
    assert app.previous is not None
    assert (app.replicas, app.previous.replicas) == (4, 1)
    tag, listed = _listing(api)
    same = api.request("POST", "/v1/configuration/containers/db", {"replicas": 4})
    assert (same.body, _listing(api)) == (result.body, (tag, listed))
    once = api.request("POST", "/v1/configuration/containers/db", {"replicas": 1})
    assert "replicas" not in once.body and once.body["revision"] == 2


def test_rollback_restores_replicas(api: APIHarness) -> None:
    """A rollback of a scale-out returns to the instances the container ran before."""
    api.request("POST", "/v1/configuration/containers", _stateless(replicas=2))
    api.request(
        "POST", "/v1/configuration/containers/db", {"replicas": 5, "image": "postgres:17"}
    )
    result = api.request("POST", "/v1/configuration/containers/db/rollback")
    assert result.body == {**_stateless(replicas=2), "revision": 2}


def test_move_keeps_replicas(api: APIHarness) -> None:
    """A container running several instances keeps them when moved."""
    api.request("POST", "/v1/configuration/containers", _stateless(replicas=2))
    result = api.request("POST", "/v1/configuration/containers/db", {"node_uuid": NODE_B})
    assert (result.body["node_uuid"], result.body["replicas"]) == (NODE_B, 2)
    assert "revision" not in result.body


@pytest.mark.parametrize(
    "body", [{"replicas": 2}, {"replicas": 3, "image": "postgres:17", "node_uuid": NODE_B}]
)
def test_update_replicas_with_volumes_refused(api: APIHarness, body: Any) -> None:
    """
    More than one instance of a container with volumes is a 400 giving the
    model's reason, and neither that nor the rest of the request (a new
    image, a move) is made.
    """
    _created(api)
    tag, before = _listing(api)
    description = api.refused(400, "POST", "/v1/configuration/containers/db", body)
    assert description == _ONE_NODE
    assert _listing(api) == (tag, before)


@pytest.mark.parametrize("replicas", [0, 65, None, True, "3"])
def test_update_bad_replicas_refused(api: APIHarness, replicas: Any) -> None:
    """
    An update's replicas that are not an integer from 1 to 64 (null does
    not remove them) are a 400 naming them, changing nothing.
    """
    api.request("POST", "/v1/configuration/containers", _stateless(replicas=2))
    description = api.refused(
        400, "POST", "/v1/configuration/containers/db", {"replicas": replicas}
    )
    assert "replicas" in description


def test_openapi_declares_replicas(api: APIHarness) -> None:
    """
    The OpenAPI document declares replicas (1 to 64) in a new container
    and in an update, and in a configured container answered (2 to 64:
    present only above 1).
    """
    schemas = api.request("GET", "/v1/openapi.json").body["components"]["schemas"]
    replicas = schemas["container_replicas"]
    assert (replicas["type"], replicas["minimum"], replicas["maximum"]) == ("integer", 1, 64)
    for name in ("container_create", "container_update"):
        assert schemas[name]["properties"]["replicas"] == {
            "$ref": "#/components/schemas/container_replicas"
        }
    answered = schemas["configuration_container"]["properties"]["replicas"]
    assert (answered["minimum"], answered["maximum"]) == (2, 64)
    assert "replicas" not in schemas["state_container"]["properties"]


def test_state_lists_each_instance(api: APIHarness) -> None:
    """
    Each node reporting an instance of a container is one entry of the
    state, on that node, with no replicas key.
    """
    web = Application(name="web", image="nginx", replicas=2)
    api.state.update_node_state(NodeState(uuid=NODE_A, applications={"web": web}))
    api.state.update_node_state(NodeState(uuid=NODE_B, applications={"web": web}))
    body = api.request("GET", "/v1/state/containers").body
    assert sorted(e["node_uuid"] for e in body) == sorted([NODE_A, NODE_B])
    assert all("replicas" not in e for e in body)
