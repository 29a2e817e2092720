"""Tests for flocker.control._serialization: round trips, fixtures, bad input."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from flocker.control import (
    Application,
    ApplicationHealth,
    ChangeFailure,
    DatasetState,
    Deployment,
    DeploymentState,
    HealthCheck,
    Leases,
    Node,
    NodeState,
    PoolState,
)
from flocker.control._serialization import (
    CURRENT_FORMAT_VERSION,
    UPGRADES,
    SerializationError,
    deployment_to_json,
    deserialize_deployment,
    deserialize_deployment_state,
    deserialize_node_state,
    node_state_to_json,
    serialize_deployment,
    serialize_deployment_state,
    serialize_node_state,
    upgrade_document,
)
from flocker.control.strategies import (
    applications,
    deployment_states,
    deployments,
    leases_collections,
    node_states,
    nodes,
)

from ._examples import (
    DATASET_PG,
    EXAMPLE_DEPLOYMENT,
    NODE_A,
    NODE_B,
    POSTGRES,
    REPLICATED_DEPLOYMENT,
    SCALED_DEPLOYMENT,
    UPDATED_DEPLOYMENT,
    WEB,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(version: int) -> bytes:
    return (FIXTURES / f"configuration_v{version}.json").read_bytes()


# -- round trips ----------------------------------------------------------


@given(deployments())
def test_deployment_round_trip(deployment: Deployment) -> None:
    """Any deployment survives serialization unchanged."""
    assert deserialize_deployment(serialize_deployment(deployment)) == deployment


@given(deployments())
def test_deployment_bytes_deterministic(deployment: Deployment) -> None:
    """Equal deployments serialize to identical bytes."""
    again = deserialize_deployment(serialize_deployment(deployment))
    assert serialize_deployment(again) == serialize_deployment(deployment)


@given(nodes())
def test_node_round_trip(node: Node) -> None:
    """Any node survives serialization inside a deployment."""
    d = Deployment(nodes={node.uuid: node})
    assert deserialize_deployment(serialize_deployment(d)).nodes[node.uuid] == node


@given(leases_collections())
def test_leases_round_trip(leases: Leases) -> None:
    """Any set of leases survives serialization."""
    d = Deployment(leases=leases)
    assert deserialize_deployment(serialize_deployment(d)).leases == leases


@given(applications())
def test_application_round_trip(app: Application) -> None:
    """Any application survives serialization (as reported state)."""
    state = NodeState(uuid=NODE_A, applications={app.name: app})
    assert deserialize_node_state(serialize_node_state(state)) == state


@given(node_states())
def test_node_state_round_trip(state: NodeState) -> None:
    """Any node state, unknown halves included, survives the wire format."""
    assert deserialize_node_state(serialize_node_state(state)) == state


@given(deployment_states())
def test_deployment_state_round_trip(state: DeploymentState) -> None:
    """Any deployment state survives the wire format."""
    assert deserialize_deployment_state(serialize_deployment_state(state)) == state


def test_unknown_is_distinct_from_empty() -> None:
    """A null half (unknown) and an empty half (known to be empty) stay distinct."""
    unknown = node_state_to_json(NodeState(uuid=NODE_A))
    empty = node_state_to_json(NodeState(uuid=NODE_A, applications={}, datasets={}))
    assert unknown["applications"] is None and unknown["datasets"] is None
    assert empty["applications"] == {} and empty["datasets"] == {}


# -- versions and fixtures -----------------------------------------------------


@pytest.mark.parametrize("version", range(1, CURRENT_FORMAT_VERSION + 1))
def test_stored_fixture_loads(version: int) -> None:
    """Each stored configuration, of every format version, loads as the example."""
    assert deserialize_deployment(fixture(version)) == EXAMPLE_DEPLOYMENT


def test_current_format_matches_fixture() -> None:
    """The current format writes exactly what its fixture stores.

    If this fails, the format changed: bump CURRENT_FORMAT_VERSION, add an
    upgrade function and a new fixture, keep the old one.
    """
    stored = json.loads(fixture(CURRENT_FORMAT_VERSION))
    assert deployment_to_json(EXAMPLE_DEPLOYMENT) == stored


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_replicated_fixture_loads(version: int) -> None:
    """The stored configurations with standing replicas, replication
    settings and an epoch load as the replicated example.
    """
    data = (FIXTURES / f"configuration_v{version}_replicated.json").read_bytes()
    assert deserialize_deployment(data) == REPLICATED_DEPLOYMENT


def test_replicated_fixture_is_current_format() -> None:
    """The current format writes exactly the stored replicated configuration."""
    data = (FIXTURES / f"configuration_v{CURRENT_FORMAT_VERSION}_replicated.json").read_bytes()
    assert deployment_to_json(REPLICATED_DEPLOYMENT) == json.loads(data)


@pytest.mark.parametrize("version", [5, 6])
def test_updated_fixture_loads(version: int) -> None:
    """
    The stored configurations of updated applications (a health check, a
    revision, the previous specification, waiting to be healthy, an
    update rolled back by itself) load as the updated example.
    """
    data = (FIXTURES / f"configuration_v{version}_updated.json").read_bytes()
    assert deserialize_deployment(data) == UPDATED_DEPLOYMENT
    web, _ = UPDATED_DEPLOYMENT.get_application("web")
    postgres, _ = UPDATED_DEPLOYMENT.get_application("postgres")
    assert (web.revision, web.updating, web.previous) == (1, True, WEB)
    assert (postgres.revision, postgres.previous, postgres.update_failed) == (
        2,
        None,
        "unhealthy: connection refused",
    )


def test_updated_and_scaled_fixtures_are_current_format() -> None:
    """
    The current format writes exactly the stored configurations of the
    updated example and of the scaled-out one (web at 5 instances, its
    previous specification at 3), which load as those examples.
    """
    for name, deployment in (("updated", UPDATED_DEPLOYMENT), ("scaled", SCALED_DEPLOYMENT)):
        path = FIXTURES / f"configuration_v{CURRENT_FORMAT_VERSION}_{name}.json"
        assert deployment_to_json(deployment) == json.loads(path.read_bytes())
        assert deserialize_deployment(path.read_bytes()) == deployment
    web, _ = SCALED_DEPLOYMENT.get_application("web")
    assert web.previous is not None
    assert (web.replicas, web.revision, web.previous.replicas) == (5, 2, 3)


def test_upgrade_from_version_2_adds_replication_defaults() -> None:
    """A version-2 document gains no standing replicas, default replication and epoch 0."""
    upgraded = UPGRADES[2](json.loads(fixture(2)))
    assert upgraded["format_version"] == 3
    for node in upgraded["nodes"].values():
        for m in node["manifestations"].values():
            assert m["standing"] is False
            assert m["dataset"]["replication"] == {
                "interval_seconds": 0,
                "failover": "manual",
            }
            assert m["dataset"]["epoch"] == 0
    assert upgraded == json.loads(fixture(3))


def test_upgrade_from_version_3_adds_no_failover_snapshot() -> None:
    """
    A version-3 document's datasets gain a ``failover_snapshot`` of null and
    its applications a ``swappiness`` of null.
    """
    upgraded = UPGRADES[3](json.loads(fixture(3)))
    assert upgraded["format_version"] == 4
    for node in upgraded["nodes"].values():
        for m in node["manifestations"].values():
            assert m["dataset"]["failover_snapshot"] is None
        for a in node["applications"].values():
            assert a["swappiness"] is None
    assert upgraded == json.loads(fixture(4))


def test_upgrade_from_version_4_adds_no_health_and_no_history() -> None:
    """
    A version-4 document's applications gain no health check of their own
    (``health`` null: the default one), revision 0 and no update history.
    """
    upgraded = UPGRADES[4](json.loads(fixture(4)))
    assert upgraded["format_version"] == 5
    for node in upgraded["nodes"].values():
        for a in node["applications"].values():
            assert (a["health"], a["revision"], a["previous"]) == (None, 0, None)
            assert (a["updating"], a["update_failed"]) == (False, None)
    assert upgraded == json.loads(fixture(5))


def test_upgrade_from_version_5_runs_each_application_once() -> None:
    """
    A version-5 document's applications, and the previous specifications
    they keep, gain ``replicas`` 1: each ran once.
    """
    upgraded = UPGRADES[5](json.loads(fixture(5)))
    assert upgraded["format_version"] == 6
    for node in upgraded["nodes"].values():
        for a in node["applications"].values():
            assert a["replicas"] == 1
    assert upgraded == json.loads(fixture(6))
    updated = json.loads((FIXTURES / "configuration_v5_updated.json").read_bytes())
    web = UPGRADES[5](updated)["nodes"][NODE_B]["applications"]["web"]
    assert (web["replicas"], web["previous"]["replicas"]) == (1, 1)
    assert upgrade_document(updated) == json.loads(
        (FIXTURES / "configuration_v6_updated.json").read_bytes()
    )


def test_previous_format_loads_with_one_instance_each() -> None:
    """
    A configuration written before replicas (format 5, its applications
    and their previous specifications without the key) loads with each
    application, and each previous specification, running once.
    """
    data = (FIXTURES / "configuration_v5_updated.json").read_bytes()
    assert b'"replicas"' not in data
    deployment = deserialize_deployment(data)
    for app, _ in deployment.all_applications():
        assert app.replicas == 1
        assert app.previous is None or app.previous.replicas == 1


@pytest.mark.parametrize("replicas", [0, 65, True, "2", None, 2.5])
def test_bad_replicas_refused(replicas: object) -> None:
    """
    A stored ``replicas`` that is not an integer from 1 to 64 is refused,
    saying where.
    """
    doc = deployment_to_json(EXAMPLE_DEPLOYMENT)
    doc["nodes"][NODE_B]["applications"]["web"]["replicas"] = replicas
    with pytest.raises(SerializationError) as info:
        deserialize_deployment(json.dumps(doc).encode())
    assert f"/nodes/{NODE_B}/applications/web" in str(info.value)


def test_replicas_of_an_application_with_volumes_refused() -> None:
    """
    A stored application with volumes and more than one instance is
    refused with the model's reason.
    """
    doc = deployment_to_json(EXAMPLE_DEPLOYMENT)
    doc["nodes"][NODE_A]["applications"]["postgres"]["replicas"] = 2
    with pytest.raises(SerializationError) as info:
        deserialize_deployment(json.dumps(doc).encode())
    assert "replicas are for applications without volumes" in str(info.value)


def test_old_shaped_configuration_loads_without_history() -> None:
    """
    A configuration written before health checks and updates (format 4,
    its applications without those keys) loads: each application has no
    health check of its own, revision 0 and nothing to roll back to.
    """
    old = json.loads(fixture(4))
    for node in old["nodes"].values():
        for a in node["applications"].values():
            assert not {"health", "revision", "previous", "updating", "update_failed"} & set(a)
    deployment = deserialize_deployment(json.dumps(old).encode())
    for app, _ in deployment.all_applications():
        assert (app.health, app.revision, app.previous) == (None, 0, None)
        assert (app.updating, app.update_failed) == (False, None)


def test_every_old_version_has_upgrade() -> None:
    """There is one upgrade function per older format version."""
    assert sorted(UPGRADES) == list(range(1, CURRENT_FORMAT_VERSION))


def test_upgrade_chain_applies_in_order() -> None:
    """Upgrades run one version at a time up to the current version."""
    calls: list[int] = []

    def up(n: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def step(doc: dict[str, Any]) -> dict[str, Any]:
            calls.append(n)
            return {**doc, "format_version": n + 1, f"v{n + 1}": True}

        return step

    result = upgrade_document({"format_version": 1}, {1: up(1), 2: up(2)}, current=3)
    assert calls == [1, 2]
    assert result == {"format_version": 3, "v2": True, "v3": True}


def test_upgrade_missing_step() -> None:
    """A version with no upgrade path is refused."""
    with pytest.raises(SerializationError, match="no upgrade from format version 1"):
        upgrade_document({"format_version": 1}, {}, current=2)


def test_upgrade_must_set_version() -> None:
    """An upgrade function that forgets to bump the version is caught."""
    with pytest.raises(SerializationError, match="did not set"):
        upgrade_document({"format_version": 1}, {1: lambda d: d}, current=2)


@pytest.mark.parametrize(
    "version, message",
    [
        (CURRENT_FORMAT_VERSION + 1, "newer than this Flocker"),
        (0, "not a format version"),
        ("1", "not a format version"),
        (True, "not a format version"),
        (None, "not a format version"),
    ],
)
def test_bad_format_version(version: object, message: str) -> None:
    """Missing, non-integer and future format versions are refused."""
    doc = deployment_to_json(EXAMPLE_DEPLOYMENT)
    doc["format_version"] = version
    with pytest.raises(SerializationError, match=message):
        deserialize_deployment(json.dumps(doc).encode())


# -- bad input ----------------------------------------------------------------


def _broken(change: Callable[[dict[str, Any]], object]) -> bytes:
    doc = deployment_to_json(EXAMPLE_DEPLOYMENT)
    change(doc)
    return json.dumps(doc).encode()


def _dataset_doc(doc: dict[str, Any]) -> dict[str, Any]:
    dataset: dict[str, Any] = doc["nodes"][NODE_A]["manifestations"][DATASET_PG]["dataset"]
    return dataset


def _app_doc(doc: dict[str, Any]) -> dict[str, Any]:
    application: dict[str, Any] = doc["nodes"][NODE_A]["applications"]["postgres"]
    return application


def _health_doc(**changes: Any) -> dict[str, Any]:
    """A stored TCP health check of postgres's port, with ``changes``."""
    return {
        "kind": "tcp",
        "port": 5432,
        "path": None,
        "interval": 5.0,
        "timeout": 2.0,
        "retries": 3,
        "start_period": 30.0,
        **changes,
    }


@pytest.mark.parametrize(
    "data, where",
    [
        (b"", "/"),
        (b"{", "/"),
        (b"\xff\xfe", "/"),
        (b"[]", "/"),
        (b"null", "/"),
        (_broken(lambda d: d.update(extra=1)), "/"),
        (_broken(lambda d: d.pop("nodes")), "/nodes"),
        (
            _broken(lambda d: _dataset_doc(d).update(maximum_size=0)),
            f"/nodes/{NODE_A}/manifestations/{DATASET_PG}/dataset",
        ),
        (_broken(lambda d: _dataset_doc(d).update(maximum_size="1")), "maximum_size"),
        (_broken(lambda d: _dataset_doc(d).update(maximum_size=1.5)), "maximum_size"),
        (_broken(lambda d: _dataset_doc(d).update(deleted=0)), "deleted"),
        (_broken(lambda d: _dataset_doc(d).update(dataset_id="nope")), "dataset"),
        (_broken(lambda d: _dataset_doc(d)["metadata"].update(x=1)), "metadata/x"),
        (_broken(lambda d: _dataset_doc(d).update(colour="red")), "dataset"),
        (_broken(lambda d: _app_doc(d).update(name="bad name")), "postgres"),
        (_broken(lambda d: _app_doc(d).update(cpu_shares=True)), "cpu_shares"),
        (_broken(lambda d: _app_doc(d).update(swappiness=True)), "swappiness"),
        (_broken(lambda d: _app_doc(d).update(swappiness="5")), "swappiness"),
        (_broken(lambda d: _app_doc(d).update(swappiness=101)), "postgres"),
        (_broken(lambda d: _app_doc(d).update(swappiness=-1)), "postgres"),
        (
            _broken(lambda d: _app_doc(d)["ports"].append({"internal_port": 1})),
            "ports/1",
        ),
        (
            _broken(lambda d: _app_doc(d)["restart_policy"].update(name="sometimes")),
            "restart_policy/name",
        ),
        (
            _broken(lambda d: _app_doc(d).update(command_line=["a", 1])),
            "command_line/1",
        ),
        (_broken(lambda d: _app_doc(d).update(volumes={})), "volumes"),
        (_broken(lambda d: _app_doc(d).pop("revision")), "postgres/revision"),
        (_broken(lambda d: _app_doc(d).pop("health")), "postgres/health"),
        (_broken(lambda d: _app_doc(d).pop("replicas")), "postgres/replicas"),
        (_broken(lambda d: _app_doc(d).update(revision=-1)), "postgres"),
        (_broken(lambda d: _app_doc(d).update(revision=True)), "revision"),
        (_broken(lambda d: _app_doc(d).update(updating="yes")), "updating"),
        (_broken(lambda d: _app_doc(d).update(update_failed=3)), "update_failed"),
        (
            _broken(lambda d: _app_doc(d).update(health={"kind": "tcp", "port": 5432})),
            "postgres/health/path",
        ),
        (
            _broken(lambda d: _app_doc(d).update(health=_health_doc(port=80))),
            "postgres",
        ),
        (
            _broken(lambda d: _app_doc(d).update(health=_health_doc(kind="udp"))),
            "postgres/health",
        ),
        (
            _broken(lambda d: _app_doc(d).update(health=_health_doc(interval=0))),
            "postgres/health",
        ),
        (
            _broken(lambda d: _app_doc(d).update(health=_health_doc(retries=1.5))),
            "health/retries",
        ),
        (
            _broken(lambda d: _app_doc(d).update(health=_health_doc(colour="red"))),
            "postgres/health",
        ),
        (
            _broken(lambda d: _app_doc(d).update(previous={**_app_doc(d), "name": "other"})),
            "postgres",
        ),
        (
            _broken(
                lambda d: _app_doc(d).update(
                    previous={**_app_doc(d), "previous": dict(_app_doc(d))}
                )
            ),
            "postgres/previous/previous",
        ),
        (
            _broken(
                lambda d: d["nodes"][NODE_A]["manifestations"][DATASET_PG].update(
                    primary=False
                )
            ),
            "/",
        ),
        (
            _broken(lambda d: d["leases"][DATASET_PG].update(node_uuid="x")),
            f"/leases/{DATASET_PG}",
        ),
        (
            _broken(
                lambda d: d["nodes"].update(
                    {"not-a-uuid": {"applications": {}, "manifestations": {}}}
                )
            ),
            "/nodes/not-a-uuid",
        ),
    ],
)
def test_bad_configuration(data: bytes, where: str) -> None:
    """Damaged configurations are refused with an error saying where."""
    with pytest.raises(SerializationError) as e:
        deserialize_deployment(data)
    assert where in str(e.value)


def test_serialization_error_is_value_error() -> None:
    """SerializationError is a ValueError carrying its path and reason."""
    e = SerializationError("/a/b", "wrong")
    assert isinstance(e, ValueError)
    assert (e.path, e.reason, str(e)) == ("/a/b", "wrong", "at /a/b: wrong")


def test_non_bytes_refused() -> None:
    """Deserializers take bytes, not text."""
    with pytest.raises(SerializationError):
        deserialize_deployment("{}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"uuid": NODE_A},
        {
            "uuid": NODE_A,
            "hostname": None,
            "era": None,
            "applications": [],
            "datasets": None,
        },
        {
            "uuid": NODE_A,
            "hostname": 3,
            "era": None,
            "applications": None,
            "datasets": None,
        },
        {
            "uuid": "x",
            "hostname": None,
            "era": None,
            "applications": None,
            "datasets": None,
        },
        {
            "uuid": NODE_A,
            "hostname": None,
            "era": None,
            "applications": None,
            "datasets": {DATASET_PG: {}},
        },
    ],
)
def test_bad_node_state(doc: dict[str, Any]) -> None:
    """Malformed node states from the wire are refused."""
    with pytest.raises(SerializationError):
        deserialize_node_state(json.dumps(doc).encode())


def test_bad_deployment_state() -> None:
    """A deployment state with a node keyed by another uuid is refused."""
    other = node_state_to_json(NodeState(uuid=NODE_A))
    doc = {"nodes": {"22222222-2222-4222-8222-222222222222": other}}
    with pytest.raises(SerializationError):
        deserialize_deployment_state(json.dumps(doc).encode())
    assert deserialize_deployment_state(b'{"nodes": {}}') == DeploymentState()


def test_dataset_state_role_and_epoch_travel() -> None:
    """A dataset's reported role and epoch survive the wire format."""
    state = NodeState(
        uuid=NODE_A,
        datasets={
            DATASET_PG: DatasetState(dataset_id=DATASET_PG, role="diverged", epoch=3)
        },
    )
    assert deserialize_node_state(serialize_node_state(state)) == state


def test_old_dataset_state_without_role_loads() -> None:
    """A report from an agent that sends no role or epoch loads with both unknown."""
    doc = node_state_to_json(
        NodeState(uuid=NODE_A, datasets={DATASET_PG: DatasetState(dataset_id=DATASET_PG)})
    )
    del doc["datasets"][DATASET_PG]["role"]
    del doc["datasets"][DATASET_PG]["epoch"]
    loaded = deserialize_node_state(json.dumps(doc).encode())
    copy = loaded.datasets[DATASET_PG]
    assert (copy.role, copy.epoch) == (None, None)


def test_dataset_state_unknown_role_refused() -> None:
    """A role that is not one of the known roles is refused."""
    doc = node_state_to_json(
        NodeState(uuid=NODE_A, datasets={DATASET_PG: DatasetState(dataset_id=DATASET_PG)})
    )
    doc["datasets"][DATASET_PG]["role"] = "boss"
    with pytest.raises(SerializationError):
        deserialize_node_state(json.dumps(doc).encode())


def test_busy_ports_travel() -> None:
    """A node's reported busy ports survive the wire format, sorted in the JSON."""
    state = NodeState(uuid=NODE_A, applications={}, busy_ports=[20001, 22, 20000])
    assert node_state_to_json(state)["busy_ports"] == [22, 20000, 20001]
    assert deserialize_node_state(serialize_node_state(state)) == state


def test_old_node_state_without_busy_ports_loads() -> None:
    """A report from an agent that sends no busy ports loads with them unknown."""
    doc = node_state_to_json(NodeState(uuid=NODE_A, applications={}))
    del doc["busy_ports"]
    assert deserialize_node_state(json.dumps(doc).encode()).busy_ports is None


@pytest.mark.parametrize("swappiness", [0, 100])
def test_swappiness_stored(swappiness: int) -> None:
    """An application's swappiness is written in the configuration and read back."""
    deployment = EXAMPLE_DEPLOYMENT.transform(
        ["nodes", NODE_A, "applications", "postgres"],
        POSTGRES.set(swappiness=swappiness),
    )
    doc = deployment_to_json(deployment)
    assert _app_doc(doc)["swappiness"] == swappiness
    assert deserialize_deployment(serialize_deployment(deployment)) == deployment


def test_old_node_state_application_without_swappiness_loads() -> None:
    """An application reported by an agent that sends no swappiness has none."""
    state = NodeState(uuid=NODE_A, applications={"postgres": POSTGRES})
    doc = node_state_to_json(state)
    del doc["applications"]["postgres"]["swappiness"]
    assert deserialize_node_state(json.dumps(doc).encode()) == state


@pytest.mark.parametrize("ports", [[0], [65536], ["80"], [True], {"80": 1}])
def test_bad_busy_ports_refused(ports: object) -> None:
    """Busy ports that are not a list of TCP port numbers are refused."""
    doc = node_state_to_json(NodeState(uuid=NODE_A))
    doc["busy_ports"] = ports
    with pytest.raises(SerializationError):
        deserialize_node_state(json.dumps(doc).encode())


def test_port_conflicts_travel_and_old_reports_load() -> None:
    """
    A node's port conflicts survive the wire format; a report without them
    (an older agent) loads with them unknown.
    """
    state = NodeState(uuid=NODE_A, applications={}, port_conflicts={"web-s-1": [20001, 20000]})
    doc = node_state_to_json(state)
    assert doc["port_conflicts"] == {"web-s-1": [20000, 20001]}
    assert deserialize_node_state(serialize_node_state(state)) == state
    del doc["port_conflicts"]
    assert deserialize_node_state(json.dumps(doc).encode()).port_conflicts is None


@pytest.mark.parametrize("conflicts", [[80], {"web": 80}, {"web": ["80"]}, {"web": [0]}])
def test_bad_port_conflicts_refused(conflicts: object) -> None:
    """Port conflicts that are not application name → port numbers are refused."""
    doc = node_state_to_json(NodeState(uuid=NODE_A))
    doc["port_conflicts"] = conflicts
    with pytest.raises(SerializationError):
        deserialize_node_state(json.dumps(doc).encode())


def test_convergence_and_pool_travel() -> None:
    """
    A node's last convergence, failing changes and pool survive the wire
    format with the JSON keys the REST API shows.
    """
    failure = ChangeFailure(
        dataset_id=DATASET_PG,
        change="flocker:node:dataset:push",
        reason="CommandFailed: zfs snapshot: out of space",
        since=1800000000.5,
        count=3,
    )
    pool = PoolState(size=100, free=0, full=True, oversized=[DATASET_PG])
    state = NodeState(
        uuid=NODE_A, datasets={}, last_converged=1800000000.0,
        failing_changes=[failure], pool=pool,
    )  # fmt: skip
    doc = node_state_to_json(state)
    assert doc["last_converged"] == 1800000000.0
    assert doc["failing_changes"] == [
        {
            "dataset_id": DATASET_PG,
            "change": "flocker:node:dataset:push",
            "reason": "CommandFailed: zfs snapshot: out of space",
            "since": 1800000000.5,
            "count": 3,
        }
    ]
    assert doc["pool"] == {"size": 100, "free": 0, "full": True, "oversized": [DATASET_PG]}
    assert deserialize_node_state(serialize_node_state(state)) == state


def test_old_node_state_without_convergence_loads() -> None:
    """A report of an agent before protocol 6 loads with those fields unknown."""
    doc = node_state_to_json(NodeState(uuid=NODE_A, datasets={}))
    for key in ("last_converged", "failing_changes", "pool"):
        del doc[key]
    state = deserialize_node_state(json.dumps(doc).encode())
    assert (state.last_converged, state.failing_changes, state.pool) == (None, None, None)


@pytest.mark.parametrize(
    "key, value",
    [
        ("last_converged", "yesterday"),
        ("failing_changes", [{"dataset_id": None, "change": "x", "reason": "y"}]),
        (
            "failing_changes",
            [{"dataset_id": None, "change": "x", "reason": "y", "since": 1.0, "count": 0}],
        ),
        ("pool", {"size": 1, "free": -1, "full": False, "oversized": []}),
        ("pool", {"size": 1, "free": 0, "full": "yes", "oversized": []}),
    ],
)
def test_bad_convergence_fields_refused(key: str, value: object) -> None:
    """Malformed convergence or pool fields from the wire are refused."""
    doc = node_state_to_json(NodeState(uuid=NODE_A))
    doc[key] = value
    with pytest.raises(SerializationError):
        deserialize_node_state(json.dumps(doc).encode())


def test_update_node_keeps_convergence_when_a_report_leaves_it_unknown() -> None:
    """
    The container agent's report (no convergence fields) keeps what the
    dataset agent reported; the dataset agent's next report replaces it.
    """
    failure = ChangeFailure(change="flocker:node:discover", reason="boom", since=1.0, count=1)
    dataset_half = NodeState(uuid=NODE_A, datasets={}, last_converged=5.0, failing_changes=[failure])
    state = DeploymentState().update_node(dataset_half)
    state = state.update_node(NodeState(uuid=NODE_A, applications={}))
    assert state.get_node(NodeState(uuid=NODE_A).uuid).failing_changes == [failure]
    state = state.update_node(NodeState(uuid=NODE_A, datasets={}, last_converged=9.0, failing_changes=[]))
    node = state.get_node(NODE_A)
    assert (node.last_converged, list(node.failing_changes)) == (9.0, [])


# -- health checks, update history and reported health --------------------


def test_health_and_history_stored() -> None:
    """
    An application's health check and update history are written in the
    configuration with every key, and read back as they were.
    """
    doc = deployment_to_json(UPDATED_DEPLOYMENT)
    web = doc["nodes"][NODE_B]["applications"]["web"]
    assert web["health"] == {
        "kind": "http",
        "port": 80,
        "path": "/healthz",
        "interval": 2.5,
        "timeout": 2.0,
        "retries": 5,
        "start_period": 30.0,
    }
    assert (web["revision"], web["updating"], web["update_failed"]) == (1, True, None)
    assert web["previous"]["image"] == "example/web:1.2"
    assert web["previous"]["previous"] is None
    assert deserialize_deployment(serialize_deployment(UPDATED_DEPLOYMENT)) == UPDATED_DEPLOYMENT


def test_integral_health_seconds_load_as_floats() -> None:
    """Health check seconds written as integers load as the same floats."""
    doc = deployment_to_json(EXAMPLE_DEPLOYMENT)
    _app_doc(doc)["health"] = _health_doc(interval=5, timeout=1, start_period=0)
    app, _ = deserialize_deployment(json.dumps(doc).encode()).get_application("postgres")
    assert app.health == HealthCheck(kind="tcp", port=5432, interval=5.0, timeout=1.0, start_period=0.0)
    assert isinstance(app.health.interval, float)


def test_reported_health_travels() -> None:
    """
    A node's reported health of its applications survives the wire format,
    keyed by application, with every field.
    """
    health = ApplicationHealth(
        application="web",
        status="unhealthy",
        revision=3,
        reason="HTTP 500",
        failures=4,
        since=1800000000.5,
        ports={8080: 49153, 80: 49152},
    )
    state = NodeState(uuid=NODE_A, applications={}, health={"web": health})
    doc = node_state_to_json(state)
    assert doc["health"] == {
        "web": {
            "application": "web",
            "status": "unhealthy",
            "revision": 3,
            "reason": "HTTP 500",
            "failures": 4,
            "since": 1800000000.5,
            "ports": [[80, 49152], [8080, 49153]],
        }
    }
    assert deserialize_node_state(serialize_node_state(state)) == state


def test_reported_health_without_ports_loads_with_none() -> None:
    """
    A health report whose ``ports`` are left out loads with none; ports
    that are not pairs of TCP port numbers are refused, saying where.
    """
    doc = node_state_to_json(
        NodeState(
            uuid=NODE_A,
            health={"web": ApplicationHealth(application="web", status="healthy")},
        )
    )
    del doc["health"]["web"]["ports"]
    loaded = deserialize_node_state(json.dumps(doc).encode())
    assert loaded.health is not None and loaded.health["web"].ports == {}
    for bad in ([[80]], [[80, 0]], [["80", 1]], {"80": 1}):
        doc["health"]["web"]["ports"] = bad
        with pytest.raises(SerializationError) as info:
            deserialize_node_state(json.dumps(doc).encode())
        assert "/health/web/ports" in str(info.value)


def test_old_node_state_without_health_loads() -> None:
    """
    A report of an agent before protocol 9 (no health, its applications
    without health checks or history) loads with health unknown and the
    applications as they were.
    """
    state = NodeState(uuid=NODE_A, applications={"postgres": POSTGRES})
    doc = node_state_to_json(state)
    del doc["health"]
    for key in ("health", "revision", "previous", "updating", "update_failed"):
        del doc["applications"]["postgres"][key]
    loaded = deserialize_node_state(json.dumps(doc).encode())
    assert loaded == state
    assert loaded.health is None


def test_reported_replicas_travel_and_may_be_left_out() -> None:
    """
    A reported application's ``replicas`` survives the wire format; a
    report leaving it out (an agent that does not send it) loads with the
    application running once.
    """
    state = NodeState(uuid=NODE_B, applications={"web": WEB.set(replicas=4)})
    doc = node_state_to_json(state)
    assert doc["applications"]["web"]["replicas"] == 4
    assert deserialize_node_state(serialize_node_state(state)) == state
    del doc["applications"]["web"]["replicas"]
    loaded = deserialize_node_state(json.dumps(doc).encode())
    assert loaded.applications is not None
    assert loaded.applications["web"] == WEB


@pytest.mark.parametrize(
    "health",
    [
        [],
        {"web": {"application": "web", "status": "dead", "revision": None,
                 "reason": None, "failures": 0, "since": 1.0}},
        {"web": {"application": "web", "status": "healthy", "revision": "1",
                 "reason": None, "failures": 0, "since": 1.0}},
        {"web": {"application": "web", "status": "healthy", "revision": None,
                 "reason": None, "failures": -1, "since": 1.0}},
        {"web": {"application": "web", "status": "healthy", "revision": None,
                 "reason": None, "failures": 0}},
        {"web": {"application": "web", "status": "healthy", "revision": True,
                 "reason": None, "failures": 0, "since": 1.0}},
    ],
)  # fmt: skip
def test_bad_reported_health_refused(health: object) -> None:
    """Malformed health reports from the wire are refused."""
    doc = node_state_to_json(NodeState(uuid=NODE_A))
    doc["health"] = health
    with pytest.raises(SerializationError):
        deserialize_node_state(json.dumps(doc).encode())
