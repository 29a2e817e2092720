"""Several control instances share one cluster state through etcd."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from eliot.testing import LoggedMessage
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ...testtools.etcd import EtcdCluster
from ...testtools.waiting import eventually
from .. import DatasetState, NodeState
from .._clusterstate import ClusterStateService
from .._etcd import EtcdClient
from .._shared_state import SHARED_UNREADABLE, SharedClusterState
from ._examples import DATASET_PG, NODE_A

DATASETS = {DATASET_PG: DatasetState(dataset_id=DATASET_PG, path="/flocker/pg")}

pytestmark = pytest.mark.functional


class Instance:
    """One control instance's cluster state, shared through etcd."""

    def __init__(self, client: EtcdClient, name: str) -> None:
        self.state = ClusterStateService(reactor)
        self.sharing = SharedClusterState(
            reactor, client, self.state, name, ttl=2, publish_interval=0.1
        )

    def node(self, uuid: str = NODE_A) -> Any:
        """This instance's picture of a node."""
        return self.state.as_deployment_state().nodes.get(uuid)


@pytest.fixture
def client(etcd_cluster: EtcdCluster) -> Any:
    """A client of a fresh one-member real etcd."""
    client = EtcdClient(reactor, etcd_cluster.endpoints, timeout=1.0)
    yield client
    pytest_twisted.blockon(client.close())


@pytest.fixture
def pair(client: EtcdClient) -> Any:
    """Two running instances, a and b, stopped afterwards."""
    a, b = Instance(client, "a"), Instance(client, "b")
    a.sharing.startService()
    b.sharing.startService()
    yield a, b
    for instance in (a, b):
        if instance.sharing.running:
            pytest_twisted.blockon(instance.sharing.stopService())


@pytest_twisted.ensureDeferred
async def test_report_to_one_instance_is_seen_by_the_other(pair: Any) -> None:
    """A dataset agent's report to instance a appears in instance b's state."""
    a, b = pair
    a.state.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
    node = await eventually(lambda: b.node(), what="b to learn of the node")
    assert node.datasets == DATASETS


@pytest_twisted.ensureDeferred
async def test_halves_reported_to_different_instances_merge(pair: Any) -> None:
    """
    A node whose dataset agent reports to a and whose container agent
    reports to b looks whole from both instances.
    """
    a, b = pair
    a.state.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
    b.state.update_node_state(
        NodeState(uuid=NODE_A, hostname="10.0.0.1", applications={}), "container"
    )
    whole = NodeState(
        uuid=NODE_A, hostname="10.0.0.1", applications={}, datasets=DATASETS
    )
    await eventually(lambda: a.node() == whole and b.node() == whole, what="both halves")


@pytest_twisted.ensureDeferred
async def test_keep_alives_heard_by_one_instance_count_on_the_other(pair: Any) -> None:
    """
    The leader decides failovers from silence: a keep-alive instance a
    heard moves instance b's last-heard time for that agent too.
    """
    a, b = pair
    a.state.update_node_state(NodeState(uuid=NODE_A, datasets={}), "dataset")
    a.state.touch(NODE_A, "dataset")
    heard = a.state.last_heard(NODE_A, "dataset")
    await eventually(
        lambda: b.state.last_heard(NODE_A, "dataset") == heard, what="b to hear of it"
    )


@pytest_twisted.ensureDeferred
async def test_a_later_instance_catches_up(client: EtcdClient, pair: Any) -> None:
    """An instance started after the reports were shared reads them at start."""
    a, _ = pair
    a.state.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
    await eventually(
        lambda: pair[1].node() is not None, what="the report to be shared"
    )
    c = Instance(client, "c")
    c.sharing.startService()
    try:
        node = await eventually(lambda: c.node(), what="c to catch up")
        assert node.datasets == DATASETS
    finally:
        await c.sharing.stopService()


@pytest_twisted.ensureDeferred
async def test_stopped_instance_takes_its_part_with_it(client: EtcdClient, pair: Any) -> None:
    """
    An instance that stops revokes its lease: what it shared leaves etcd
    (its agents report to another instance from then on), while the other
    instance keeps the node until it expires as usual.
    """
    a, b = pair
    a.state.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
    await eventually(lambda: b.node(), what="b to learn of the node")
    await a.sharing.stopService()
    found = await client.get_prefix("/flocker/state/")
    assert found.kvs == []
    assert b.node().datasets == DATASETS


@pytest_twisted.ensureDeferred
async def test_agent_moving_to_another_instance_is_not_overwritten(pair: Any) -> None:
    """
    When an agent reports to b after a, a never writes its older report
    again over b's (not even when it writes everything anew).
    """
    a, b = pair
    a.state.update_node_state(NodeState(uuid=NODE_A, datasets={}), "dataset")
    await eventually(lambda: b.node(), what="b to learn of the node")
    b.state.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
    await eventually(lambda: a.node().datasets == DATASETS, what="a to learn of it")
    a.sharing._dirty.update(a.sharing._own)  # what a lease renewal does
    a.sharing._tick()
    await eventually(lambda: a.sharing._round is None, what="a's round")
    assert b.node().datasets == DATASETS
    assert a.node().datasets == DATASETS


@pytest_twisted.ensureDeferred
async def test_unreadable_shared_report_ignored(
    client: EtcdClient, pair: Any, eliot_logger: Any
) -> None:
    """Something unreadable under the state prefix is logged and ignored."""
    a, b = pair
    await client.put("/flocker/state/x/dataset", b"{not json")
    await client.put(
        "/flocker/state/y/dataset", json.dumps({"instance": "z", "state": {}}).encode()
    )
    a.state.update_node_state(NodeState(uuid=NODE_A, datasets={}), "dataset")
    await eventually(lambda: b.node(), what="b to go on merging")
    assert set(b.state.as_deployment_state().nodes) == {NODE_A}
    unreadable = LoggedMessage.of_type(eliot_logger.messages, SHARED_UNREADABLE)
    assert {m.message["key"] for m in unreadable} >= {
        "/flocker/state/x/dataset",
        "/flocker/state/y/dataset",
    }


@pytest_twisted.ensureDeferred
async def test_stale_while_etcd_is_gone(etcd_cluster: EtcdCluster, client: EtcdClient) -> None:
    """
    An instance whose rounds with etcd fail says so (`stale_reason`), and
    stops saying so once etcd answers again.
    """
    a = Instance(client, "a")
    a.sharing.startService()
    try:
        a.state.update_node_state(NodeState(uuid=NODE_A, datasets={}), "dataset")
        await eventually(lambda: a.sharing._round is None and not a.sharing._dirty)
        assert a.sharing.stale_reason() is None
        etcd_cluster.kill_member(0)
        a.state.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
        reason = await eventually(a.sharing.stale_reason, what="the instance to notice")
        assert reason is not None and "etcd has not answered" in reason
        etcd_cluster.start_member(0)
        await eventually(lambda: a.sharing.stale_reason() is None, what="etcd back")
    finally:
        await a.sharing.stopService()



async def _written_after(client: EtcdClient, key: str, revision: int) -> Any:
    """The key once written after ``revision`` (polling etcd; 30 s at most)."""
    for _ in range(600):
        found = await client.get(key)
        if found is not None and found.mod_revision > revision:
            return found
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"{key} was not written after revision {revision}")


@pytest_twisted.ensureDeferred
async def test_unchanged_report_is_not_written_again(client: EtcdClient) -> None:
    """
    Agents report every second, mostly the same state: a report equal to
    the one last written is not written to etcd again until
    ``rewrite_after`` seconds have passed; a changed one is written at once.
    """
    a = Instance(client, "a")
    a.sharing.rewrite_after = 3600.0
    a.sharing.startService()
    try:
        key = f"/flocker/state/{NODE_A}/dataset"
        a.state.update_node_state(NodeState(uuid=NODE_A, datasets={}), "dataset")
        first = await _written_after(client, key, 0)
        a.state.update_node_state(NodeState(uuid=NODE_A, datasets={}), "dataset")
        await eventually(lambda: a.sharing._round is None, what="a's round")
        await deferLater(reactor, 0.3, lambda: None)
        current = await client.get(key)
        assert current is not None and current.mod_revision == first.mod_revision
        a.state.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
        changed = await _written_after(client, key, first.mod_revision)
        a.sharing.rewrite_after = 0.0
        a.state.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
        await _written_after(client, key, changed.mod_revision)
    finally:
        await a.sharing.stopService()
