"""Tests for reading the REST API's JSON into the client's values."""

from __future__ import annotations

from uuid import UUID

from flocker.apiclient import (
    UNCHANGED,
    ContainerPort,
    HealthCheck,
    ImagePullState,
    RestartPolicy,
)
from flocker.apiclient._json import (
    container_from_json,
    container_state_from_json,
    container_to_json,
    container_update_to_json,
    health_from_json,
    health_to_json,
    node_from_json,
)

NODE = "11111111-1111-4111-8111-111111111111"


def test_a_node_in_the_original_shape_has_no_pulls() -> None:
    """A node entry of the original API (uuid and host) reads with defaults."""
    node = node_from_json({"uuid": NODE, "host": "10.0.0.1"})
    assert (node.uuid, node.host, dict(node.image_pulls)) == (UUID(NODE), "10.0.0.1", {})


def test_image_pulls_are_read_by_application() -> None:
    """A node's ``image_pulls`` are read by application name."""
    node = node_from_json(
        {
            "uuid": NODE,
            "image_pulls": [
                {
                    "application": "web",
                    "image": "127.0.0.1:5000/web:2",
                    "pulling": False,
                    "reason": "manifest unknown",
                    "attempts": 3,
                    "since": 1.0,
                    "layers_done": 0,
                    "layers_total": 0,
                    "bytes_done": 0,
                    "bytes_total": 0,
                }
            ],
        }
    )
    assert dict(node.image_pulls) == {
        "web": ImagePullState(
            application="web",
            image="127.0.0.1:5000/web:2",
            pulling=False,
            reason="manifest unknown",
            attempts=3,
        )
    }


# -- containers: health checks, revisions, updates --------------------------------

CONTAINER = {"node_uuid": NODE, "name": "web", "image": "nginx:2"}


def test_a_container_in_the_original_shape_has_no_health_or_history() -> None:
    """A container entry without the new keys has no health check, revision 0, no history."""
    container = container_from_json(dict(CONTAINER))
    assert (
        container.health,
        container.revision,
        container.updating,
        container.update_failed,
        container.previous_image,
    ) == (None, 0, False, None, None)


def test_a_container_reads_its_health_check_and_history() -> None:
    """``health``, ``revision``, ``updating``, ``update_failed`` and ``previous_image`` are read."""
    container = container_from_json(
        {
            **CONTAINER,
            "health": {
                "kind": "http",
                "port": 80,
                "path": "/healthz",
                "interval": 5,
                "timeout": 2.0,
                "retries": 3,
                "start_period": 30.0,
            },
            "revision": 3,
            "updating": True,
            "update_failed": "unhealthy: HTTP 503",
            "previous_image": "nginx:1",
        }
    )
    assert container.health == HealthCheck(kind="http", port=80, path="/healthz")
    assert (
        container.revision,
        container.updating,
        container.update_failed,
        container.previous_image,
    ) == (3, True, "unhealthy: HTTP 503", "nginx:1")


def test_a_health_check_round_trips_with_path_only_for_http() -> None:
    """A tcp check is written without ``path``; both kinds read back equal."""
    tcp = HealthCheck(kind="tcp", port=5432, interval=1.5, retries=7, start_period=0)
    assert "path" not in health_to_json(tcp)
    http = HealthCheck(kind="http", port=80, path="/")
    for check in (tcp, http):
        assert health_from_json(health_to_json(check)) == check


def test_a_container_is_created_with_its_health_but_not_its_history() -> None:
    """The creation body carries the health check, never the revision or history."""
    container = container_from_json(
        {
            **CONTAINER,
            "ports": [{"internal": 80, "external": 8080}],
            "health": {"kind": "tcp", "port": 80},
            "revision": 2,
            "previous_image": "nginx:1",
        }
    )
    body = container_to_json(container)
    assert body["health"] == health_to_json(HealthCheck(kind="tcp", port=80))
    assert not {"revision", "updating", "update_failed", "previous_image"} & set(body)
    assert "health" not in container_to_json(container.set(health=None))


def test_an_update_body_has_only_the_fields_given() -> None:
    """UNCHANGED fields are left out, ``None`` is sent as null to remove a field."""
    body = container_update_to_json(
        {
            "node_uuid": UNCHANGED,
            "image": "nginx:3",
            "command_line": ("nginx", "-g", "daemon off;"),
            "health": None,
            "cpu_shares": None,
            "ports": [ContainerPort(internal=80, external=8080)],
            "restart_policy": RestartPolicy(name="on-failure", maximum_retry_count=2),
            "environment": UNCHANGED,
        }
    )
    assert body == {
        "image": "nginx:3",
        "command_line": ["nginx", "-g", "daemon off;"],
        "health": None,
        "cpu_shares": None,
        "ports": [{"internal": 80, "external": 8080}],
        "restart_policy": {"name": "on-failure", "maximum_retry_count": 2},
    }


def test_a_state_entry_reads_the_reported_health() -> None:
    """A state entry's ``health`` string and ``health_reason`` are the node's report."""
    state = container_state_from_json(
        {
            **CONTAINER,
            "running": True,
            "health": "unhealthy",
            "health_reason": "HTTP 503",
        }
    )
    assert (state.running, state.health, state.health_reason) == (
        True,
        "unhealthy",
        "HTTP 503",
    )
    assert state.container == container_from_json(dict(CONTAINER))


def test_a_state_entry_without_health_has_none() -> None:
    """A state entry without a reported health (perhaps with its check) has none."""
    state = container_state_from_json(
        {
            **CONTAINER,
            "ports": [{"internal": 80, "external": 8080}],
            "health": {"kind": "tcp", "port": 80},
            "running": False,
        }
    )
    assert (state.running, state.health, state.health_reason) == (False, None, None)
    assert state.container.health == HealthCheck(kind="tcp", port=80)


# -- containers: instances ----------------------------------------------------------


def test_a_container_runs_once_unless_it_says_replicas() -> None:
    """
    A container entry without ``replicas`` runs once; with them, as many;
    creation sends them only above 1, so a request for one instance has
    the original API's shape.
    """
    once = container_from_json(dict(CONTAINER))
    scaled = container_from_json({**CONTAINER, "replicas": 3})
    assert (once.replicas, scaled.replicas) == (1, 3)
    assert "replicas" not in container_to_json(once)
    assert container_to_json(scaled)["replicas"] == 3


def test_an_update_body_carries_replicas() -> None:
    """An update's replicas are sent as given; left UNCHANGED, not at all."""
    assert container_update_to_json({"replicas": 5, "image": UNCHANGED}) == {
        "replicas": 5
    }
    assert container_update_to_json({"replicas": UNCHANGED, "image": "x"}) == {
        "image": "x"
    }
