"""
Unit tests of the REST API's snapshots, rollback, clones and environments
(in memory, via StubTreq).  The nodes' dataset agents are the real
`SnapshotOperations` over in-memory backends, reached as the control
service reaches them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed

from flocker.control._protocol import AgentUnavailable
from flocker.control.rest_service import make_api_resource
from flocker.control.test.test_httpapi import (
    DATASET,
    NODE_A,
    NODE_B,
    OTHER_DATASET,
    APIHarness,
)
from flocker.node._roles import PRIMARY, MemoryRoles
from flocker.node._snapshots import SnapshotOperations
from flocker.volume import SnapshotInfo
from flocker.volume.memory import MemoryVolumeBackend


class ReceivingAgent:
    """Node B's dataset agent's connection: receiving DATASET, 10 MiB of 64 so far."""

    agent_kind = "dataset"
    node_uuid = NODE_B

    def callRemote(self, command: Any, **arguments: Any) -> Any:  # noqa: N802
        """Answer `TransfersCommand` at once."""
        return succeed({"result": json.dumps([
            {"dataset_id": DATASET, "snapshot": "s", "base": None,
             "bytes": 10 * 2**20, "size": 64 * 2**20},
        ])})


class Agents:
    """The dataset agents of nodes A (connected) and B (not connected)."""

    def __init__(self, backend: MemoryVolumeBackend | None = None) -> None:
        """Node A has a backend (``backend``, or an empty one) and roles; B's agent is away."""
        self.backend = backend if backend is not None else MemoryVolumeBackend()
        self.roles = MemoryRoles()
        self.operations = SnapshotOperations(self.backend, self.roles)

    def snapshot_operation(
        self, node_uuid: str, operation: str, dataset_id: str, name: str = ""
    ) -> Deferred[dict[str, Any]]:
        """Answer as node A's agent; B is not connected."""
        if node_uuid != NODE_A:
            return fail(AgentUnavailable(node_uuid))
        return self.operations(operation, dataset_id, name)

    @property
    def connections(self) -> frozenset[ReceivingAgent]:
        """Node B's dataset agent connection (receiving DATASET)."""
        return frozenset({ReceivingAgent()})

    def expose(self, dataset_id: str) -> None:
        """Node A now has and exposes ``dataset_id``."""
        self.backend.create(dataset_id)
        self.roles.set(dataset_id, PRIMARY)


class SilentAgents(Agents):
    """Dataset agents that never answer a snapshot request."""

    def snapshot_operation(
        self, node_uuid: str, operation: str, dataset_id: str, name: str = ""
    ) -> Deferred[dict[str, Any]]:
        """An answer that never comes."""
        return Deferred()


class FullBackend(MemoryVolumeBackend):
    """A backend whose pool is full: every snapshot fails."""

    def snapshot(self, dataset_id: str, name: str) -> Deferred[SnapshotInfo]:
        """Fail as a full pool does."""
        return fail(OSError("no space left on device"))


class AgentsHarness(APIHarness):
    """The API harness whose API reaches ``agents``."""

    def __init__(self, agents: Agents) -> None:
        """The harness's services, with the API reaching ``agents``."""
        super().__init__()
        self.agents = agents
        self.treq = StubTreq(make_api_resource(self.configuration, self.state, self.clock, agents))


def agents_api(agents: Agents) -> AgentsHarness:
    """The API reaching ``agents``, with DATASET on node A (exposed there) and OTHER_DATASET on B."""
    harness = AgentsHarness(agents)
    harness.create_dataset(dataset_id=DATASET)
    harness.create_dataset(dataset_id=OTHER_DATASET, primary=NODE_B)
    agents.expose(DATASET)
    return harness


@pytest.fixture
def api() -> AgentsHarness:
    """The API with DATASET on node A (exposed there) and OTHER_DATASET on B."""
    return agents_api(Agents())


SNAPSHOTS = f"/v1/datasets/{DATASET}/snapshots"


def snapshot_names(api: AgentsHarness) -> list[str]:
    """The snapshots node A's backend holds of DATASET (it answers at once)."""
    found: list[list[SnapshotInfo]] = []
    api.agents.backend.list_snapshots(DATASET).addCallback(found.append)
    [snapshots] = found
    return [s.name for s in snapshots]


def names(api: AgentsHarness) -> list[str]:
    """The snapshots the API lists for DATASET."""
    return [s["name"] for s in api.request("GET", SNAPSHOTS).body]


def test_snapshot_taken_listed_destroyed(api: AgentsHarness) -> None:
    """A snapshot is taken at once (201), listed, then destroyed (200)."""
    made = api.request("POST", SNAPSHOTS, {"name": "monday"})
    assert made.code == 201 and made.body["name"] == "monday"
    assert names(api) == ["monday"]
    assert api.request("DELETE", f"{SNAPSHOTS}/monday").code == 200
    assert names(api) == []


@pytest.mark.parametrize(
    "code,method,path,body",
    [
        (409, "POST", SNAPSHOTS, {"name": "monday"}),  # exists already
        (400, "POST", SNAPSHOTS, {"name": "flocker-mine"}),
        (400, "POST", SNAPSHOTS, {"name": "no spaces"}),
        (400, "POST", SNAPSHOTS, {}),
        (404, "POST", "/v1/datasets/d9d9d9d9-0000-4000-8000-00000000009d/snapshots", {"name": "x"}),
        (400, "POST", "/v1/datasets/not-a-uuid/snapshots", {"name": "x"}),
        (404, "DELETE", f"{SNAPSHOTS}/tuesday", None),
        (503, "GET", f"/v1/datasets/{OTHER_DATASET}/snapshots", None),
    ],
)
def test_snapshot_refusals(api: AgentsHarness, code: int, method: str, path: str, body: Any) -> None:
    """Each bad snapshot request gets its status and leaves the snapshots as they were."""
    api.request("POST", SNAPSHOTS, {"name": "monday"})
    api.refused(code, method, path, body)
    assert names(api) == ["monday"]


def test_snapshot_of_unexposed_dataset(api: AgentsHarness) -> None:
    """A dataset its primary does not expose (being moved) is a 409 saying so."""
    api.agents.roles.set(DATASET, "handoff")
    assert "not exposed" in api.refused(409, "POST", SNAPSHOTS, {"name": "x"})


def test_clone(api: AgentsHarness) -> None:
    """A clone of a snapshot is a new dataset on the same node with its origin."""
    api.request("POST", SNAPSHOTS, {"name": "monday"})
    made = api.request(
        "POST", f"/v1/datasets/{DATASET}/clone", {"snapshot": "monday", "metadata": {"name": "copy"}}
    )
    assert made.code == 201
    assert made.body["primary"] == NODE_A
    assert made.body["origin"] == {"dataset_id": DATASET, "snapshot": "monday"}
    clone, node = api.stored().deployment.get_dataset(made.body["dataset_id"])
    assert (node, clone.metadata["name"]) == (NODE_A, "copy")


def test_clone_of_unknown_snapshot_changes_nothing(api: AgentsHarness) -> None:
    """Cloning a snapshot the primary does not have is a 404; nothing is added."""
    before = api.stored().deployment
    api.refused(404, "POST", f"/v1/datasets/{DATASET}/clone", {"snapshot": "nope"})
    assert api.stored().deployment == before


def test_rollback_requested(api: AgentsHarness) -> None:
    """A rollback is accepted (202) and stored as a request with an id."""
    api.request("POST", SNAPSHOTS, {"name": "monday"})
    result = api.request("POST", f"/v1/datasets/{DATASET}/rollback", {"snapshot": "monday"})
    assert result.code == 202
    request = api.stored().deployment.get_dataset(DATASET)[0].rollback
    assert request is not None
    assert (request.snapshot, request.request_id) == ("monday", result.body["request_id"])
    before = api.stored().deployment
    api.refused(404, "POST", f"/v1/datasets/{DATASET}/rollback", {"snapshot": "tuesday"})
    assert api.stored().deployment == before


def deploy_web(api: AgentsHarness) -> None:
    """An application ``web`` on node A with DATASET as its volume."""
    result = api.request(
        "POST",
        "/v1/configuration/containers",
        {
            "node_uuid": NODE_A,
            "name": "web",
            "image": "flocker-test/counter:3",
            "ports": [{"internal": 80, "external": 8080}],
            "volumes": [{"dataset_id": DATASET, "mountpoint": "/data"}],
        },
    )
    assert result.code == 201, result


def test_environment_lifecycle(api: AgentsHarness) -> None:
    """
    An environment snapshots the group's datasets and adds its copies; it
    is listed, a copy reset gets new clones, a copy and then all are deleted.
    """
    deploy_web(api)
    made = api.request(
        "POST", "/v1/environments",
        {"name": "staging", "applications": ["web"], "copies": 2,
         "ports": {"2": {"web": {"8080": 18080}}}},
    )
    assert made.code == 201, made
    assert [c["name"] for c in made.body["copies"]] == ["1", "2"]
    snapshot = made.body["snapshot"]
    assert snapshot in snapshot_names(api)
    two = made.body["copies"][1]
    assert two["applications"][0]["name"] == "web-staging-2"
    assert two["applications"][0]["ports"] == [{"internal": 80, "external": 18080}]
    assert api.request("GET", "/v1/environments").body == [made.body]
    assert api.request("GET", "/v1/environments/staging").body == made.body
    reset = api.request("POST", "/v1/environments/staging/copies/1/reset")
    assert reset.code == 200
    assert reset.body["datasets"] != made.body["copies"][0]["datasets"]
    gone = api.request("DELETE", "/v1/environments/staging/copies/1")
    assert gone.code == 200
    assert [c["name"] for c in api.request("GET", "/v1/environments/staging").body["copies"]] == ["2"]
    assert api.request("DELETE", "/v1/environments/staging").code == 200
    assert api.request("GET", "/v1/environments").body == []
    apps = [c["name"] for c in api.request("GET", "/v1/configuration/containers").body]
    assert apps == ["web"]


@pytest.mark.parametrize(
    "code,body",
    [
        (404, {"name": "s", "applications": ["nope"], "copies": 1}),
        (400, {"name": "s", "applications": ["web"], "copies": 0}),
        (400, {"name": "s", "applications": ["web"], "copies": ["a", "a"]}),
        (400, {"name": "s", "applications": ["web"], "copies": 1, "ports": {"9": {}}}),
        (400, {"name": "s", "applications": ["web"], "copies": 1, "ports": {"1": {"web": {"8080": 8080}}}}),
        (400, {"name": "bad name!", "applications": ["web"], "copies": 1}),
        (400, {"applications": ["web"], "copies": 1}),
    ],
)
def test_environment_refusals(api: AgentsHarness, code: int, body: dict[str, Any]) -> None:
    """Bad environment requests are refused before any snapshot is taken."""
    deploy_web(api)
    before = api.stored().deployment
    api.refused(code, "POST", "/v1/environments", body)
    assert api.stored().deployment == before
    assert snapshot_names(api) == []


def test_environment_name_taken_and_unknown(api: AgentsHarness) -> None:
    """A second environment of the same name is a 409; unknown ones 404."""
    deploy_web(api)
    api.request("POST", "/v1/environments", {"name": "s", "applications": ["web"], "copies": 1})
    api.refused(409, "POST", "/v1/environments", {"name": "s", "applications": ["web"], "copies": 1})
    api.refused(404, "GET", "/v1/environments/other")
    api.refused(404, "POST", "/v1/environments/s/copies/9/reset")
    api.refused(404, "DELETE", "/v1/environments/s/copies/9")
    api.refused(404, "DELETE", "/v1/environments/other")


def test_transfers_in_progress(api: AgentsHarness) -> None:
    """The transfers the agents report are listed with their progress."""
    result = api.request("GET", "/v1/state/transfers")
    assert result.code == 200
    assert result.body == [
        {"dataset_id": DATASET, "node_uuid": NODE_B, "snapshot": "s",
         "base": None, "bytes": 10 * 2**20, "size": 64 * 2**20},
    ]


LONG = "e" * 60


def test_long_environment_names(api: AgentsHarness) -> None:
    """
    Environments with long names get distinct snapshots: two sharing a
    long prefix both exist, and one deleted can be created again at once.
    """
    deploy_web(api)
    for name in (LONG + "a", LONG + "b"):
        body = {"name": name, "applications": ["web"], "copies": 1}
        assert api.request("POST", "/v1/environments", body).code == 201
    assert api.request("DELETE", f"/v1/environments/{LONG}a").code == 200
    again = {"name": LONG + "a", "applications": ["web"], "copies": 1}
    assert api.request("POST", "/v1/environments", again).code == 201


def test_snapshot_a_clone_needs_is_kept(api: AgentsHarness) -> None:
    """The snapshot a configured clone is made from cannot be destroyed (409)."""
    api.request("POST", SNAPSHOTS, {"name": "monday"})
    made = api.request("POST", f"/v1/datasets/{DATASET}/clone", {"snapshot": "monday"})
    assert "has clones" in api.refused(409, "DELETE", f"{SNAPSHOTS}/monday")
    api.request("DELETE", f"/v1/configuration/datasets/{made.body['dataset_id']}")
    assert api.request("DELETE", f"{SNAPSHOTS}/monday").code == 200


def test_agent_failure_is_a_503() -> None:
    """A backend failure on the node answers 503 naming it, not 500."""
    api = agents_api(Agents(FullBackend()))
    assert "no space left" in api.refused(503, "POST", SNAPSHOTS, {"name": "monday"})


def test_silent_agent_times_out() -> None:
    """An agent that never answers gets a 503 after the agent timeout."""
    from flocker.control._rest._agents import AGENT_TIMEOUT

    api = agents_api(SilentAgents())
    results: list[int] = []
    d = api.treq.request(  # type: ignore[attr-defined]  # StubTreq's methods are made at run time
"GET", "https://control.example" + SNAPSHOTS)
    d.addCallback(lambda response: results.append(response.code))
    api.treq.flush()
    assert results == []
    api.clock.advance(AGENT_TIMEOUT + 1)
    api.treq.flush()
    assert results == [503]


def test_rollback_past_an_environment_snapshot_refused(api: AgentsHarness) -> None:
    """
    A rollback that would discard a later snapshot an environment was
    cloned from is refused (409), and nothing is stored.
    """
    from flocker.control import DatasetState, NodeState, Snapshot

    deploy_web(api)
    api.request("POST", SNAPSHOTS, {"name": "monday"})
    made = api.request("POST", "/v1/environments", {"name": "s", "applications": ["web"], "copies": 1})
    names = snapshot_names(api)
    api.state.update_node_state(
        NodeState(
            uuid=NODE_A,
            datasets={
                DATASET: DatasetState(
                    dataset_id=DATASET, path="/mnt", snapshots=[Snapshot(name=n) for n in names]
                )
            },
        )
    )
    before = api.stored().deployment
    reason = api.refused(409, "POST", f"/v1/datasets/{DATASET}/rollback", {"snapshot": "monday"})
    assert made.body["snapshot"] in reason and "environment" in reason
    assert api.stored().deployment == before


def test_environment_ports_avoid_the_ports_busy_on_the_nodes(api: AgentsHarness) -> None:
    """
    A copy's ports skip the ports its node (and any other node, whose
    router forwards them) reports busy; a port asked for that is busy on
    the copy's node is refused (409) before any snapshot is taken.
    """
    from flocker.control import NodeState
    from flocker.control._cloning import FIRST_FREE_PORT

    deploy_web(api)
    api.state.update_node_state(
        NodeState(uuid=NODE_A, applications={}, busy_ports=[FIRST_FREE_PORT, FIRST_FREE_PORT + 1])
    )
    api.state.update_node_state(NodeState(uuid=NODE_B, applications={}, busy_ports=[FIRST_FREE_PORT + 2]))
    refused = {"name": "s", "applications": ["web"], "copies": 1,
               "ports": {"1": {"web": {"8080": FIRST_FREE_PORT + 1}}}}
    reason = api.refused(409, "POST", "/v1/environments", refused)
    assert str(FIRST_FREE_PORT + 1) in reason and NODE_A in reason and "in use" in reason
    assert snapshot_names(api) == []
    made = api.request("POST", "/v1/environments", {"name": "s", "applications": ["web"], "copies": 1})
    assert made.code == 201, made
    [web] = made.body["copies"][0]["applications"]
    assert web["ports"] == [{"internal": 80, "external": FIRST_FREE_PORT + 3}]
