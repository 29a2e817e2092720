"""
Unit tests of the REST API v1's standing replicas, replication state and
failover (``POST /v1/datasets/{id}/failover``), in memory through
``StubTreq`` like the other ``test_httpapi_*`` modules.
"""

from __future__ import annotations

from typing import Any

import pytest
from eliot import MemoryLogger
from eliot.testing import LoggedAction
from treq.testing import StubTreq

from flocker.control._logging import FAILOVER
from flocker.control._rest import DEFAULT_FAILOVER_AFTER
from flocker.control._state import DatasetState, NodeState, Snapshot
from flocker.control.rest_service import make_api_resource

from .test_httpapi import (
    DATASET,
    NODE_A,
    NODE_B,
    OTHER_DATASET,
    UNKNOWN_NODE,
    APIHarness,
)

NODE_C = "cccccccc-0000-4000-8000-00000000000c"
MORE_NODES = [f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-00000000000{n}" for n in "1234"]


@pytest.fixture
def api() -> APIHarness:
    """An API harness where nodes A, B, C and four more have reported."""
    harness = APIHarness()
    for node in [NODE_C, *MORE_NODES]:
        harness.state.update_node_state(NodeState(uuid=node))
    return harness


def report(
    api: APIHarness,
    node: str,
    dataset_id: str = DATASET,
    *,
    role: str,
    path: str | None = None,
    snapshots: list[tuple[str, float | None]] = (),  # type: ignore[assignment]
    epoch: int | None = 0,
) -> None:
    """Make ``node``'s dataset agent report a copy of the dataset."""
    copy = DatasetState(
        dataset_id=dataset_id,
        path=path,
        role=role,
        epoch=epoch,
        snapshots=[Snapshot(name=n, created=c) for n, c in snapshots],
    )
    old = api.state.as_deployment_state().get_node(node).datasets or {}
    api.state.update_node_state(
        NodeState(uuid=node, datasets={**old, dataset_id: copy})
    )


def update(api: APIHarness, body: dict[str, Any], dataset_id: str = DATASET) -> Any:
    """POST changes to a dataset; the response."""
    return api.request("POST", f"/v1/configuration/datasets/{dataset_id}", body)


def replicated(api: APIHarness, *replicas: str, **body: Any) -> dict[str, Any]:
    """Create DATASET on A with standing replicas."""
    return api.create_dataset(dataset_id=DATASET, replicas=list(replicas), **body)


# --------------------------------------------------------------------------
# configuration


def test_create_with_replicas(api: APIHarness) -> None:
    """A dataset created with replicas answers them, its replication and epoch."""
    body = replicated(
        api, NODE_C, NODE_B, replication={"interval_seconds": 30, "failover": "automatic"}
    )
    assert body["replicas"] == sorted([NODE_B, NODE_C])
    assert body["replication"] == {"interval_seconds": 30, "failover": "automatic"}
    assert body["epoch"] == 0
    (listed,) = api.request("GET", "/v1/configuration/datasets").body
    assert listed == body
    deployment = api.stored().deployment
    assert deployment.replicas_of(DATASET) == sorted([NODE_B, NODE_C])


def test_dataset_without_replication_answers_as_before(api: APIHarness) -> None:
    """A dataset that does not use replication has no replica keys at all."""
    body = api.create_dataset(dataset_id=DATASET, metadata={"name": "x"})
    assert body == {
        "dataset_id": DATASET,
        "primary": NODE_A,
        "metadata": {"name": "x"},
        "deleted": False,
    }
    (listed,) = api.request("GET", "/v1/configuration/datasets").body
    assert set(listed) == {"dataset_id", "primary", "metadata", "deleted"}


def test_replication_settings_alone_show_keys(api: APIHarness) -> None:
    """Non-default replication without replicas still shows the keys."""
    body = api.create_dataset(dataset_id=DATASET, replication={"interval_seconds": 5})
    assert body["replicas"] == []
    assert body["replication"] == {"interval_seconds": 5, "failover": "manual"}


def test_update_replaces_replicas(api: APIHarness) -> None:
    """An update's replicas replace the set; left-out nodes lose their copy."""
    replicated(api, NODE_B)
    result = update(api, {"replicas": [NODE_C]})
    assert result.code == 200, result
    assert result.body["replicas"] == [NODE_C]
    assert NODE_B not in api.stored().deployment.nodes


def test_update_replication_keeps_unnamed_keys(api: APIHarness) -> None:
    """Replication keys left out of an update keep their values, as do replicas."""
    replicated(api, NODE_B, replication={"interval_seconds": 30})
    result = update(api, {"replication": {"failover": "automatic"}})
    assert result.body["replication"] == {"interval_seconds": 30, "failover": "automatic"}
    assert result.body["replicas"] == [NODE_B]


def test_move_then_replicas(api: APIHarness) -> None:
    """A move and replicas in one request: the move first, then the replica set."""
    replicated(api, NODE_B)
    result = update(api, {"primary": NODE_B, "replicas": [NODE_A, NODE_C]})
    assert result.code == 200, result
    assert result.body["primary"] == NODE_B
    assert result.body["replicas"] == sorted([NODE_A, NODE_C])


def test_move_to_replica_swaps(api: APIHarness) -> None:
    """A move to a replica's node makes the old primary a replica."""
    replicated(api, NODE_B)
    result = update(api, {"primary": NODE_B})
    assert (result.body["primary"], result.body["replicas"]) == (NODE_B, [NODE_A])


@pytest.mark.parametrize(
    "body, words",
    [
        ({"replicas": [UNKNOWN_NODE]}, "not a node of this cluster"),
        ({"replicas": [NODE_A]}, "primary"),
        ({"replicas": [NODE_B, NODE_B]}, "more than once"),
        ({"replicas": MORE_NODES + [NODE_B]}, "at most 4"),
        ({"replicas": ["not-a-uuid"]}, "replicas/0"),
        ({"replication": {"interval_seconds": -1}}, "interval_seconds"),
        ({"replication": {"failover": "sometimes"}}, "failover"),
        ({"replication": {"every": 3}}, "replication/every"),
        ({"primary": NODE_B, "replicas": [NODE_B]}, "primary"),
    ],
)
def test_bad_replicas_refused(api: APIHarness, body: dict[str, Any], words: str) -> None:
    """Each bad replica request is a 400 naming the problem; nothing changes."""
    api.create_dataset(dataset_id=DATASET)
    path = f"/v1/configuration/datasets/{DATASET}"
    assert words in api.refused(400, "POST", path, body)


def test_bad_replicas_refused_at_creation(api: APIHarness) -> None:
    """A creation listing its own primary as a replica is a 400; nothing is created."""
    description = api.refused(
        400,
        "POST",
        "/v1/configuration/datasets",
        {"primary": NODE_A, "replicas": [NODE_A]},
    )
    assert "primary" in description


def test_replicas_of_deleted_dataset_refused(api: APIHarness) -> None:
    """A deleted dataset gets no replicas (409)."""
    api.create_dataset(dataset_id=DATASET)
    api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    path = f"/v1/configuration/datasets/{DATASET}"
    api.refused(409, "POST", path, {"replicas": [NODE_B]})


# --------------------------------------------------------------------------
# state


def test_state_lists_replicas_with_lag(api: APIHarness) -> None:
    """
    The primary's entry lists the configured replicas as they report them,
    with their newest snapshot and lag; a copy reported as a replica by a
    node that is not configured to hold one (a move's destination, a
    removed replica's leftover) is not listed.
    """
    replicated(api, NODE_B, NODE_C)
    report(api, MORE_NODES[0], role="replica", snapshots=[("s2", api.clock.seconds())])
    now = api.clock.seconds()
    report(api, NODE_A, role="primary", path="/flocker/d", snapshots=[("s2", now - 1)])
    report(api, NODE_C, role="replica", snapshots=[("s1", now - 10), ("s2", now - 1.5)])
    report(api, NODE_B, role="replica")
    (entry,) = api.request("GET", "/v1/state/datasets").body
    assert entry["replicas"] == [
        {
            "node_uuid": NODE_B,
            "last_snapshot": None,
            "replicated_at": None,
            "lag_seconds": None,
        },
        {
            "node_uuid": NODE_C,
            "last_snapshot": "s2",
            "replicated_at": now - 1.5,
            "lag_seconds": 1.5,
        },
    ]
    assert "diverged" not in entry


def test_state_lag_is_never_negative(api: APIHarness) -> None:
    """A snapshot dated in the control service's future counts as no lag."""
    replicated(api, NODE_B)
    future = api.clock.seconds() + 5
    report(api, NODE_A, role="primary", path="/flocker/d")
    report(api, NODE_B, role="replica", snapshots=[("s", future)])
    (entry,) = api.request("GET", "/v1/state/datasets").body
    assert entry["replicas"][0]["lag_seconds"] == 0


def test_state_lists_diverged_copies(api: APIHarness) -> None:
    """Copies reported as diverged are listed with their epoch and newest snapshot."""
    report(api, NODE_B, role="primary", path="/flocker/d", epoch=1)
    report(api, NODE_A, role="diverged", epoch=0, snapshots=[("old", 5.0)])
    (entry,) = api.request("GET", "/v1/state/datasets").body
    assert entry["diverged"] == [
        {"node_uuid": NODE_A, "epoch": 0, "last_snapshot": "old"}
    ]
    assert "replicas" not in entry


def test_state_never_shows_a_superseded_primary_exposed(api: APIHarness) -> None:
    """
    After a failover, a node still reporting its copy exposed at the old
    epoch (it has not heard of the failover yet) is not shown as the
    dataset's primary: only the promoted copy is, and the old one is listed
    as diverged.
    """
    ready(api, NODE_B)
    assert failover(api, {"node_uuid": NODE_B, "force": True}).code == 200
    report(api, NODE_A, role="primary", path="/flocker/a", epoch=0)
    report(api, NODE_B, role="primary", path="/flocker/b", epoch=1)
    (entry,) = api.request("GET", "/v1/state/datasets").body
    assert (entry["primary"], entry["path"]) == (NODE_B, "/flocker/b")
    assert [d["node_uuid"] for d in entry["diverged"]] == [NODE_A]


def test_state_without_replicas_answers_as_before(api: APIHarness) -> None:
    """
    A dataset without standing replicas answers exactly the old keys, even
    while another node reports a copy being moved in.
    """
    report(api, NODE_A, role="primary", path="/flocker/d")
    report(api, NODE_B, role="replica")  # a copy being moved in
    (entry,) = api.request("GET", "/v1/state/datasets").body
    assert entry == {"dataset_id": DATASET, "primary": NODE_A, "path": "/flocker/d"}


# --------------------------------------------------------------------------
# failover


def failover(api: APIHarness, body: dict[str, Any], dataset_id: str = DATASET) -> Any:
    """POST a failover request; the response."""
    return api.request("POST", f"/v1/datasets/{dataset_id}/failover", body)


def ready(api: APIHarness, *replicas: str) -> float:
    """DATASET on A replicated to ``replicas``, each reporting snapshot "s" 4 s old."""
    replicated(api, *replicas)
    created = api.clock.seconds() - 4
    for node in replicas:
        report(api, node, role="replica", snapshots=[("s0", created - 60), ("s", created)])
    return created


def add_app(api: APIHarness, *dataset_ids: str) -> None:
    """Configure the application "db" on A, mounting the datasets."""
    result = api.request(
        "POST",
        "/v1/configuration/containers",
        {
            "node_uuid": NODE_A,
            "name": "db",
            "image": "postgres:16",
            "volumes": [
                {"dataset_id": d, "mountpoint": f"/m{i}"} for i, d in enumerate(dataset_ids)
            ],
        },
    )
    assert result.code == 201, result


def test_failover(api: APIHarness) -> None:
    """A failover to a replica answers the new primary, epoch, snapshot and window."""
    created = ready(api, NODE_B, NODE_C)
    result = failover(api, {"node_uuid": NODE_B})
    assert result.code == 200, result
    assert result.body == {
        "dataset_id": DATASET,
        "primary": NODE_B,
        "epoch": 1,
        "datasets": [DATASET],
        "snapshot": "s",
        "snapshot_created": created,
        "data_loss_window_seconds": 4.0,
    }
    (dataset,) = api.request("GET", "/v1/configuration/datasets").body
    assert (dataset["primary"], dataset["epoch"], dataset["replicas"]) == (
        NODE_B,
        1,
        [NODE_C],
    )
    assert result.headers["x-configuration-tag"]


def test_failover_moves_application_datasets(api: APIHarness) -> None:
    """Every dataset of the application fails over, and the application moves."""
    ready(api, NODE_B)
    api.create_dataset(dataset_id=OTHER_DATASET, replicas=[NODE_B])
    report(api, NODE_B, OTHER_DATASET, role="replica", snapshots=[("t", 1.0)])
    add_app(api, DATASET, OTHER_DATASET)
    result = failover(api, {"node_uuid": NODE_B})
    assert result.code == 200, result
    assert result.body["datasets"] == sorted([DATASET, OTHER_DATASET])
    deployment = api.stored().deployment
    assert deployment.get_application("db")[1] == NODE_B
    assert deployment.get_dataset(OTHER_DATASET)[0].epoch == 1


def test_failover_unknown_dataset(api: APIHarness) -> None:
    """Failing over an unknown dataset is a 404."""
    path = f"/v1/datasets/{DATASET}/failover"
    api.refused(404, "POST", path, {"node_uuid": NODE_B})


def test_failover_to_node_without_replica(api: APIHarness) -> None:
    """A node holding no standing replica is refused (409)."""
    ready(api, NODE_B)
    path = f"/v1/datasets/{DATASET}/failover"
    description = api.refused(409, "POST", path, {"node_uuid": NODE_C})
    assert "no standing replica" in description


def test_failover_before_replica_has_snapshot(api: APIHarness) -> None:
    """A replica that reported no snapshot yet cannot become the primary (409)."""
    replicated(api, NODE_B)
    report(api, NODE_B, role="replica")
    path = f"/v1/datasets/{DATASET}/failover"
    assert "no snapshot" in api.refused(409, "POST", path, {"node_uuid": NODE_B})


def test_failover_needs_replicas_of_application_datasets(api: APIHarness) -> None:
    """If the application's other dataset has no replica there, 409 naming it."""
    ready(api, NODE_B)
    api.create_dataset(dataset_id=OTHER_DATASET)
    add_app(api, DATASET, OTHER_DATASET)
    path = f"/v1/datasets/{DATASET}/failover"
    assert OTHER_DATASET in api.refused(409, "POST", path, {"node_uuid": NODE_B})


def test_failover_refused_while_primary_alive(api: APIHarness) -> None:
    """A primary heard from within failover_after is not failed over without force."""
    ready(api, NODE_B)
    api.state.touch(NODE_A, "dataset")
    api.clock.advance(DEFAULT_FAILOVER_AFTER - 1)
    path = f"/v1/datasets/{DATASET}/failover"
    description = api.refused(409, "POST", path, {"node_uuid": NODE_B})
    assert "force" in description and NODE_A in description
    api.clock.advance(1)
    assert failover(api, {"node_uuid": NODE_B}).code == 200


def test_failover_after_is_configurable(api: APIHarness) -> None:
    """The silence a failover needs is the API's failover_after, not a constant."""
    api.treq = StubTreq(
        make_api_resource(api.configuration, api.state, api.clock, failover_after=5.0)
    )
    ready(api, NODE_B)
    api.state.touch(NODE_A, "dataset")
    api.clock.advance(4)
    path = f"/v1/datasets/{DATASET}/failover"
    assert "(5 s)" in api.refused(409, "POST", path, {"node_uuid": NODE_B})
    api.clock.advance(1)
    assert failover(api, {"node_uuid": NODE_B}).code == 200


def test_failover_forced_while_primary_alive(api: APIHarness) -> None:
    """With force, a primary heard from just now is failed over anyway."""
    ready(api, NODE_B)
    api.state.touch(NODE_A, "dataset")
    result = failover(api, {"node_uuid": NODE_B, "force": True})
    assert (result.code, result.body["primary"]) == (200, NODE_B)


def test_failover_honours_configuration_tag(api: APIHarness) -> None:
    """A failover with a stale X-If-Configuration-Matches is refused (412)."""
    ready(api, NODE_B)
    tag = api.request("GET", "/v1/configuration/datasets").headers["x-configuration-tag"]
    update(api, {"metadata": {"changed": "yes"}})
    path = f"/v1/datasets/{DATASET}/failover"
    api.refused(
        412, "POST", path, {"node_uuid": NODE_B}, headers={"X-If-Configuration-Matches": tag}
    )


def test_failover_bad_body(api: APIHarness) -> None:
    """A failover body without a node or with unknown keys is a 400."""
    ready(api, NODE_B)
    path = f"/v1/datasets/{DATASET}/failover"
    api.refused(400, "POST", path, {})
    api.refused(400, "POST", path, {"node_uuid": NODE_B, "now": True})


def test_failover_logged(api: APIHarness, eliot_logger: MemoryLogger) -> None:
    """One flocker:control:failover action records what failed over, where and why."""
    ready(api, NODE_B)
    api.state.touch(NODE_A, "dataset")
    assert failover(api, {"node_uuid": NODE_B, "force": True}).code == 200
    (action,) = LoggedAction.of_type(eliot_logger.messages, FAILOVER)
    assert action.succeeded
    assert action.start_message["dataset_id"] == DATASET
    assert action.start_message["to"] == NODE_B
    assert action.start_message["force"] is True
    assert action.end_message["from"] == NODE_A
    assert action.end_message["epoch"] == 1
    assert action.end_message["reason"].startswith("forced")


def test_openapi_documents_replication(api: APIHarness) -> None:
    """The OpenAPI document has the failover operation and the replica fields."""
    document = api.request("GET", "/v1/openapi.json").body
    post = document["paths"]["/v1/datasets/{dataset_id}/failover"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/dataset_failover"}
    assert set(post["responses"]) >= {"200", "404", "409", "412"}
    schemas = document["components"]["schemas"]
    for name in ("dataset_create", "dataset_update"):
        assert {"replicas", "replication"} <= set(schemas[name]["properties"])
    assert {"replicas", "replication", "epoch"} <= set(
        schemas["configuration_dataset"]["properties"]
    )
    assert {"replicas", "diverged"} <= set(schemas["state_dataset"]["properties"])


def test_failover_to_a_copy_not_reported_as_replica_refused(api: APIHarness) -> None:
    """
    A failover to a node whose copy is not reported as a replica (it still
    exposes it, a move being under way, or it diverged) is a 409; nothing
    changes.
    """
    ready(api, NODE_B)
    report(api, NODE_B, role="handoff", snapshots=[("s", 1.0)])
    before = api.request("GET", "/v1/configuration/datasets").body
    result = failover(api, {"node_uuid": NODE_B, "force": True})
    assert result.code == 409, result
    assert "not as a replica" in result.body["description"]
    assert api.request("GET", "/v1/configuration/datasets").body == before


def test_move_to_a_node_keeping_a_diverged_copy_refused(api: APIHarness) -> None:
    """
    Moving a dataset to a node that keeps a diverged copy of it is a 409
    (the copy refuses every stream, so the move could never finish); the
    configuration is unchanged.
    """
    api.create_dataset(dataset_id=DATASET)
    report(api, NODE_B, role="diverged", epoch=0, snapshots=[("old", 5.0)])
    result = update(api, {"primary": NODE_B})
    assert result.code == 409, result
    assert "diverged copy" in result.body["description"]
    (dataset,) = api.request("GET", "/v1/configuration/datasets").body
    assert dataset["primary"] == NODE_A


def test_move_right_after_a_failover_refused_until_the_new_primary_takes_it(
    api: APIHarness,
) -> None:
    """
    Moving a dataset (or its application) after a failover, before the new
    primary reports its copy as the primary of the new epoch, is a 409:
    no node could send the move the data of that epoch yet.  Once it
    reports, the move goes ahead.
    """
    ready(api, NODE_B, NODE_C)
    add_app(api, DATASET)
    assert failover(api, {"node_uuid": NODE_B, "force": True}).code == 200
    before = api.request("GET", "/v1/configuration/datasets").body
    result = update(api, {"primary": NODE_C})
    assert result.code == 409, result
    assert "has not reported taking it up yet" in result.body["description"]
    moved = api.request("POST", "/v1/configuration/containers/db", {"node_uuid": NODE_C})
    assert moved.code == 409, moved
    assert api.request("GET", "/v1/configuration/datasets").body == before
    report(api, NODE_B, role="primary", path="/flocker/x", epoch=1, snapshots=[("s", 1.0)])
    moved = api.request("POST", "/v1/configuration/containers/db", {"node_uuid": NODE_C})
    assert moved.code == 200, moved
