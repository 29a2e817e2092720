"""Asking an agent through the control instance it is connected to (`_relay`)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed

from ...testtools.etcd import EtcdCluster
from ...testtools.waiting import eventually
from .. import NodeState
from .._clusterstate import ClusterStateService
from .._etcd import EtcdClient
from .._protocol import AgentUnavailable
from .._relay import AgentRelay, RelayedFailure
from .._shared_state import SharedClusterState
from ._examples import DATASET_PG, NODE_A, NODE_B

pytestmark = pytest.mark.functional


@attrs.define
class Connection:
    """An agent connection, as the relay looks at it."""

    node_uuid: str
    agent_kind: str = "dataset"


@attrs.define
class Agents:
    """The agents connected to one instance: what they answer to snapshots."""

    connections: list[Connection] = attrs.field(factory=list)
    asked: list[tuple[str, str, str, str]] = attrs.field(factory=list)

    def snapshot_operation(
        self, node_uuid: str, operation: str, dataset_id: str, name: str = ""
    ) -> Deferred[dict[str, Any]]:
        """Answer like a dataset agent: ``boom`` fails, others list nothing."""
        self.asked.append((node_uuid, operation, dataset_id, name))
        if not any(c.node_uuid == node_uuid for c in self.connections):
            return fail(AgentUnavailable(node_uuid))
        if name == "boom":
            return fail(RuntimeError("no space left on device"))
        return succeed({"snapshots": [{"name": name}]})


class Instance:
    """One control instance: its cluster state, sharing and relay."""

    def __init__(self, client: EtcdClient, name: str, agents: Agents) -> None:
        self.state = ClusterStateService(reactor)
        self.sharing = SharedClusterState(
            reactor, client, self.state, name, ttl=2, publish_interval=0.1
        )
        self.agents = agents
        self.relay = AgentRelay(reactor, client, name, agents, self.sharing)

    def start(self) -> None:
        """Start sharing and relaying."""
        self.sharing.startService()
        self.relay.startService()

    async def stop(self) -> None:
        """Stop both."""
        self.relay.stopService()
        await self.sharing.stopService()


@pytest.fixture
def client(etcd_cluster: EtcdCluster) -> Any:
    """A client of a fresh one-member real etcd."""
    client = EtcdClient(reactor, etcd_cluster.endpoints, timeout=1.0)
    yield client
    pytest_twisted.blockon(client.close())


@pytest.fixture
def pair(client: EtcdClient) -> Any:
    """
    Instance a, holding node A's dataset agent (which reported to it), and
    instance b, holding none, once b knows where node A's agent is.
    """
    a = Instance(client, "a", Agents([Connection(NODE_A)]))
    b = Instance(client, "b", Agents())
    a.start()
    b.start()
    a.state.update_node_state(NodeState(uuid=NODE_A, datasets={}), "dataset")
    pytest_twisted.blockon(
        Deferred.fromCoroutine(
            eventually(lambda: b.sharing.instance_of(NODE_A, "dataset") == "a")
        )
    )
    yield a, b
    for instance in (a, b):
        pytest_twisted.blockon(Deferred.fromCoroutine(instance.stop()))


@pytest_twisted.ensureDeferred
async def test_snapshot_through_the_instance_holding_the_agent(pair: Any, client: EtcdClient) -> None:
    """
    Instance b asks node A's agent through instance a and gets its answer;
    nothing of the exchange is left in etcd.
    """
    a, b = pair
    answer = await b.relay.snapshot_operation(NODE_A, "list", DATASET_PG, "monday")
    assert answer == {"snapshots": [{"name": "monday"}]}
    assert a.agents.asked == [(NODE_A, "list", DATASET_PG, "monday")]

    async def leftovers() -> list[Any]:
        return (await client.get_prefix("/flocker/relay/")).kvs

    for _ in range(100):
        if not await leftovers():
            break
    assert await leftovers() == []


@pytest_twisted.ensureDeferred
async def test_agent_failure_comes_back_as_a_failure(pair: Any) -> None:
    """What the agent's instance could not do fails the relayed request with its reason."""
    _, b = pair
    with pytest.raises(RelayedFailure, match="no space left"):
        await b.relay.snapshot_operation(NODE_A, "create", DATASET_PG, "boom")


@pytest_twisted.ensureDeferred
async def test_local_agent_asked_directly(pair: Any) -> None:
    """An agent connected to the instance asked is asked without etcd."""
    a, _ = pair
    assert await a.relay.snapshot_operation(NODE_A, "list", DATASET_PG) == {
        "snapshots": [{"name": ""}]
    }


@pytest_twisted.ensureDeferred
async def test_agent_no_instance_holds_is_unavailable(pair: Any) -> None:
    """A node whose agent reported to no running instance is unavailable."""
    _, b = pair
    with pytest.raises(AgentUnavailable):
        await b.relay.snapshot_operation(NODE_B, "list", DATASET_PG)


@pytest_twisted.ensureDeferred
async def test_instance_gone_forgets_its_agents(pair: Any) -> None:
    """Once instance a stops, b no longer sends anything its way."""
    a, b = pair
    await a.stop()
    await eventually(
        lambda: b.sharing.instance_of(NODE_A, "dataset") is None, what="b to notice"
    )
    with pytest.raises(AgentUnavailable):
        await b.relay.snapshot_operation(NODE_A, "list", DATASET_PG)
