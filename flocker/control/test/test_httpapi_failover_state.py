"""
Unit tests of what the REST API shows about failovers: the configuration's
``failover_snapshot``, fenced copies in ``/v1/state/datasets`` and
``/v1/state/nodes``, and set-aside snapshots in the state and in
``/v1/datasets/{id}/snapshots``; in memory through ``StubTreq``.
"""

from __future__ import annotations

import pytest

from flocker.control._state import DatasetState, NodeState, Snapshot

from .test_httpapi import DATASET, NODE_A, NODE_B
from .test_httpapi_cloning import Agents, AgentsHarness
from .test_httpapi_replication import NODE_C, failover, ready, report

DIVERGED = "flocker-diverged-0-1700000000000000000"


@pytest.fixture
def api() -> AgentsHarness:
    """The API with node A's dataset agent answering snapshot requests; C known."""
    harness = AgentsHarness(Agents())
    harness.state.update_node_state(NodeState(uuid=NODE_C))
    return harness


def set_aside(api: AgentsHarness, node: str, role: str, epoch: int) -> None:
    """``node`` reports its copy of DATASET in ``role`` with a set-aside snapshot."""
    api.state.update_node_state(
        NodeState(
            uuid=node,
            datasets={
                DATASET: DatasetState(
                    dataset_id=DATASET,
                    role=role,
                    epoch=epoch,
                    snapshots=[Snapshot(name="s", created=5.0)],
                    set_aside=[Snapshot(name=DIVERGED, created=1700000000.0)],
                )
            },
        )
    )


def test_manual_failover_records_failover_snapshot(api: AgentsHarness) -> None:
    """A manual failover records the snapshot the new primary starts from."""
    ready(api, NODE_B)
    assert failover(api, {"node_uuid": NODE_B, "force": True}).code == 200
    (dataset,) = api.request("GET", "/v1/configuration/datasets").body
    assert dataset["failover_snapshot"] == "s"
    assert api.stored().deployment.get_dataset(DATASET)[0].failover_snapshot == "s"
    assert NODE_A not in api.stored().deployment.nodes  # manual: the old copy leaves


def test_no_failover_snapshot_before_a_failover(api: AgentsHarness) -> None:
    """A dataset never failed over has no failover_snapshot key."""
    ready(api, NODE_B)
    (dataset,) = api.request("GET", "/v1/configuration/datasets").body
    assert "failover_snapshot" not in dataset


def test_fenced_primary_listed_in_state(api: AgentsHarness) -> None:
    """
    A primary whose node fenced itself is listed, marked fenced and without
    a path; its node lists the dataset as fenced.
    """
    ready(api, NODE_B)
    report(api, NODE_A, role="fenced", epoch=0)
    (entry,) = api.request("GET", "/v1/state/datasets").body
    assert entry["primary"] == NODE_A and entry["fenced"] is True
    assert "path" not in entry
    assert [r["node_uuid"] for r in entry["replicas"]] == [NODE_B]
    nodes = {n["uuid"]: n for n in api.request("GET", "/v1/state/nodes").body}
    assert nodes[NODE_A]["fenced"] == [DATASET]
    assert "fenced" not in nodes[NODE_B]


def test_fenced_copy_of_older_epoch_listed_as_diverged(api: AgentsHarness) -> None:
    """After a failover, the old primary's fenced copy shows as diverged, not primary."""
    ready(api, NODE_B)
    assert failover(api, {"node_uuid": NODE_B, "force": True}).code == 200
    report(api, NODE_B, role="primary", path="/flocker/b", epoch=1)
    report(api, NODE_A, role="fenced", epoch=0)
    (entry,) = api.request("GET", "/v1/state/datasets").body
    assert entry["primary"] == NODE_B and "fenced" not in entry
    assert [d["node_uuid"] for d in entry["diverged"]] == [NODE_A]


def test_state_shows_set_aside_snapshots(api: AgentsHarness) -> None:
    """A rejoined replica's and a diverged copy's set-aside snapshots are listed."""
    ready(api, NODE_B, NODE_C)
    report(api, NODE_A, role="primary", path="/flocker/a", epoch=0)
    set_aside(api, NODE_B, "replica", 0)
    set_aside(api, NODE_C, "diverged", 0)
    api.configuration.change(lambda d: d.set_replicas(DATASET, [NODE_B]))
    (entry,) = api.request("GET", "/v1/state/datasets").body
    expected = [{"name": DIVERGED, "created": 1700000000.0}]
    assert entry["replicas"][0]["set_aside"] == expected
    assert entry["diverged"][0]["set_aside"] == expected


def test_state_without_set_aside_answers_as_before(api: AgentsHarness) -> None:
    """Copies with nothing set aside have no set_aside key."""
    ready(api, NODE_B)
    report(api, NODE_A, role="primary", path="/flocker/a", epoch=0)
    (entry,) = api.request("GET", "/v1/state/datasets").body
    assert "set_aside" not in entry["replicas"][0]


def test_snapshots_list_set_aside_with_their_node(api: AgentsHarness) -> None:
    """
    The snapshots list has the primary's snapshots as before, then each
    set-aside snapshot with the node holding it.
    """
    ready(api, NODE_B)
    api.agents.expose(DATASET)
    path = f"/v1/datasets/{DATASET}/snapshots"
    assert api.request("POST", path, {"name": "monday"}).code == 201
    set_aside(api, NODE_B, "replica", 0)
    listed = api.request("GET", path).body
    assert [set(s) for s in listed] == [
        {"name", "created"},
        {"name", "created", "node_uuid", "set_aside"},
    ]
    assert listed[0]["name"] == "monday"
    assert listed[1] == {
        "name": DIVERGED,
        "created": 1700000000.0,
        "node_uuid": NODE_B,
        "set_aside": True,
    }
