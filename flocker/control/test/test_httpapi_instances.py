"""
Unit tests of the REST API v1 for applications running more instances than
there are nodes: reserved names, long names of replicated containers
(refused when asked for, kept when an earlier release stored them), and
how their state is listed.
"""

from __future__ import annotations

from flocker.control._model import Application, Deployment, Node, Port
from flocker.control._persistence import MemoryConfigurationStore
from flocker.control._state import ApplicationHealth, NodeState
from flocker.control.test.test_httpapi import NODE_A, NODE_B, APIHarness

RESERVED = (
    "a name ending in '..' and digits (like web..2) is reserved for the extra "
    "instances Flocker runs of a replicated application on one node"
)


def _container(**changes: object) -> dict[str, object]:
    """A stateless container body on node A."""
    body: dict[str, object] = {"node_uuid": NODE_A, "name": "web", "image": "nginx"}
    body.update(changes)
    return body


def test_create_with_an_instance_name_is_a_400_saying_why() -> None:
    """
    A container named like an extra instance (``..`` and digits at the
    end) is refused (400, why); nothing is stored.
    """
    api = APIHarness()
    description = api.refused(
        400, "POST", "/v1/configuration/containers", _container(name="web..2")
    )
    assert RESERVED in description
    assert api.request("GET", "/v1/configuration/containers").body == []


def test_names_with_two_dots_elsewhere_are_accepted() -> None:
    """
    ``..`` not followed by digits at the end is part of a name like any
    other: ``my..app`` is created, replicated, listed and updated under its name.
    """
    api = APIHarness()
    created = api.request(
        "POST", "/v1/configuration/containers", _container(name="my..app", replicas=3)
    )
    assert (created.code, created.body["name"]) == (201, "my..app")
    listed = api.request("GET", "/v1/configuration/containers").body
    assert [(c["name"], c["replicas"]) for c in listed] == [("my..app", 3)]
    scaled = api.request("POST", "/v1/configuration/containers/my..app", {"replicas": 2})
    assert (scaled.code, scaled.body["replicas"]) == (200, 2)


def test_a_link_alias_of_the_instance_form_is_accepted() -> None:
    """
    A link alias names no container: ``db..2`` is an alias like any other
    (only container names are reserved).
    """
    api = APIHarness()
    link = {"alias": "db..2", "local_port": 5432, "remote_port": 15432}
    created = api.request("POST", "/v1/configuration/containers", _container(links=[link]))
    assert created.code == 201
    assert created.body["links"] == [link]


def test_long_replicated_name_is_a_400() -> None:
    """
    A replicated container whose name leaves no room for ``..k`` is
    refused, at creation and when an update asks for replicas.
    """
    api = APIHarness()
    description = api.refused(
        400, "POST", "/v1/configuration/containers", _container(name="w" * 125, replicas=2)
    )
    assert "at most 124 characters" in description
    created = api.request("POST", "/v1/configuration/containers", _container(name="w" * 125))
    assert created.code == 201
    description = api.refused(
        400, "POST", f"/v1/configuration/containers/{'w' * 125}", {"replicas": 2}
    )
    assert "at most 124 characters" in description


#: Why a replicated container's name is refused (the model's words), for
#: a name of that length running 3 instances.
TOO_LONG = (
    "a replicated application's name is at most 124 characters, so that the "
    "names of its extra instances on a node (wwwwwwww.....3) are valid too"
)

#: A container running several instances under a name an earlier release
#: allowed and new ones refuse (longer than 124 characters).
LEGACY = Application(name="w" * 126, image="nginx", replicas=3)


def _api_with_legacy_container() -> APIHarness:
    """The API over a configuration an earlier release stored with `LEGACY` on node A."""
    store = MemoryConfigurationStore()
    stored = Deployment().update_node(Node(uuid=NODE_A, applications={LEGACY.name: LEGACY}))
    store.save(stored, 0)
    return APIHarness(store)


def test_create_with_a_long_replicated_name_is_a_400_saying_why() -> None:
    """
    Creating a container with several instances under a name of 126
    characters is refused (400, why); the configuration is unchanged.
    """
    api = APIHarness()
    description = api.refused(
        400, "POST", "/v1/configuration/containers", _container(name="w" * 126, replicas=3)
    )
    assert description == TOO_LONG
    assert api.request("GET", "/v1/configuration/containers").body == []


def test_a_124_character_replicated_name_is_accepted() -> None:
    """
    A name of 124 characters leaves room for ``..k``: the container is
    created with several instances and scaled to 64.
    """
    api = APIHarness()
    name = "w" * 124
    created = api.request(
        "POST", "/v1/configuration/containers", _container(name=name, replicas=2)
    )
    assert (created.code, created.body["replicas"]) == (201, 2)
    scaled = api.request("POST", f"/v1/configuration/containers/{name}", {"replicas": 64})
    assert (scaled.code, scaled.body["replicas"]) == (200, 64)


def test_a_long_replicated_container_stored_earlier_is_listed_as_it_was() -> None:
    """
    A container an earlier release stored with several instances under a
    name of 126 characters loads: it is listed with its replicas.
    """
    api = _api_with_legacy_container()
    listed = api.request("GET", "/v1/configuration/containers").body
    assert [(c["name"], c["node_uuid"], c["replicas"]) for c in listed] == [
        (LEGACY.name, NODE_A, 3)
    ]


def test_scaling_up_a_long_replicated_container_stored_earlier_is_a_400() -> None:
    """
    Asking for more instances of a container stored earlier with several
    under a name of 126 characters is refused (400, why); the
    configuration is unchanged.  A new image with its instances as they
    are is taken.
    """
    api = _api_with_legacy_container()
    path = f"/v1/configuration/containers/{LEGACY.name}"
    description = api.refused(400, "POST", path, {"replicas": 4})
    assert description == TOO_LONG.replace(".....3)", ".....4)")
    updated = api.request("POST", path, {"image": "httpd"})
    assert (updated.code, updated.body["image"], updated.body["replicas"]) == (200, "httpd", 3)


def test_a_long_replicated_container_stored_earlier_moves_and_scales_to_one() -> None:
    """
    A container stored earlier with several instances under a name of 126
    characters can be moved as it is, and scaled to one instance.
    """
    api = _api_with_legacy_container()
    path = f"/v1/configuration/containers/{LEGACY.name}"
    moved = api.request("POST", path, {"node_uuid": NODE_B})
    assert (moved.code, moved.body["node_uuid"], moved.body["replicas"]) == (200, NODE_B, 3)
    scaled = api.request("POST", path, {"replicas": 1})
    assert (scaled.code, "replicas" in scaled.body) == (200, False)


def test_replicas_beyond_the_nodes_are_accepted() -> None:
    """More replicas than nodes is a valid request: the extra ones double up."""
    api = APIHarness()
    created = api.request("POST", "/v1/configuration/containers", _container(replicas=5))
    assert (created.code, created.body["replicas"]) == (201, 5)


def _web(name: str = "web") -> Application:
    """A stateless application running three instances."""
    return Application(
        name=name,
        image="nginx",
        ports=[Port(internal_port=80, external_port=8080)],
        replicas=3,
    )


def _health(name: str, status: str) -> ApplicationHealth:
    """The health a node reports for an instance."""
    return ApplicationHealth(application=name, status=status, revision=0)


def test_state_reports_each_instance() -> None:
    """
    Every instance a node reports is listed, in instance order, with its
    own health and under its application's name: three instances on two
    nodes are three entries; an instance name never appears as a name.
    """
    api = APIHarness()
    api.state.update_node_state(
        NodeState(
            uuid=NODE_A,
            applications={"web": _web()},
            health={
                "web..2": _health("web..2", "starting"),
                "web": _health("web", "healthy"),
            },
        )
    )
    api.state.update_node_state(
        NodeState(
            uuid=NODE_B,
            applications={"web": _web()},
            health={"web": _health("web", "unhealthy")},
        )
    )
    body = api.request("GET", "/v1/state/containers").body
    assert [(e["name"], e["node_uuid"], e["health"]) for e in body] == sorted(
        [
            ("web", NODE_A, "healthy"),
            ("web", NODE_A, "starting"),
            ("web", NODE_B, "unhealthy"),
        ],
        key=lambda e: e[1],
    )


def test_state_lists_a_node_reporting_no_health_once() -> None:
    """
    A node reporting an application without the health of any of its
    instances is listed once for it, without health.
    """
    api = APIHarness()
    api.state.update_node_state(
        NodeState(uuid=NODE_A, applications={"web": _web()}, health={})
    )
    body = api.request("GET", "/v1/state/containers").body
    assert [(e["name"], e["node_uuid"], "health" in e) for e in body] == [
        ("web", NODE_A, False)
    ]


def test_state_tells_instances_of_names_with_two_dots_apart() -> None:
    """
    The instances of ``my..app`` are its own, not another application's:
    ``my`` and ``my..app`` on one node are listed with their own instances.
    """
    api = APIHarness()
    mine = _web("my..app").set(ports=[Port(internal_port=80, external_port=8081)])
    api.state.update_node_state(
        NodeState(
            uuid=NODE_A,
            applications={"my": _web("my"), "my..app": mine},
            health={
                "my": _health("my", "healthy"),
                "my..app": _health("my..app", "starting"),
                "my..app..2": _health("my..app..2", "unhealthy"),
            },
        )
    )
    body = api.request("GET", "/v1/state/containers").body
    assert [(e["name"], e["health"]) for e in body] == [
        ("my", "healthy"),
        ("my..app", "starting"),
        ("my..app", "unhealthy"),
    ]
