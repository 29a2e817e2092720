"""
Functional: over real TLS and real ZFS, a node's certificate cannot push a
dataset into existence on another node; only what the receiving agent's
configuration sends to it from that node is let in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.testing import MemoryReactorClock

from flocker.ca import load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.control import (
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    NodeState,
)
from flocker.node._control_connection import ControlAddress
from flocker.node._dataset_agent import DatasetAgent
from flocker.node._roles import PRIMARY, MemoryRoles
from flocker.volume.transfer import TransferRefused, listen_for_transfers, push
from flocker.volume.zfs import ZFSVolumeBackend

pytestmark = pytest.mark.functional

DATASET = "0b5b8f55-3f0e-4c1e-8d35-5f2f3c7a9e11"


@pytest.fixture
def two_nodes(tmp_path: Path, make_zfs_pool: Any) -> Any:
    """
    Node 1 holding DATASET with snapshot s1, and node 2's dataset agent
    (its receiver listening on 127.0.0.1, its loop never started).
    """
    (tmp_path / "ca").mkdir()
    credentials = make_test_cluster_credentials(tmp_path / "ca", nodes=2)
    node1, node2 = (str(u) for u in credentials.node_uuids)
    pools = [make_zfs_pool(size="512M"), make_zfs_pool(size="512M")]
    sender = ZFSVolumeBackend(reactor, pools[0].name)
    receiver = ZFSVolumeBackend(reactor, pools[1].name)
    info = pytest_twisted.blockon(sender.create(DATASET))
    Path(info.path, "orders").write_bytes(b"forged?" * 1000)
    pytest_twisted.blockon(sender.snapshot(DATASET, "s1"))
    agent = DatasetAgent(
        MemoryReactorClock(),  # the agent's own timers never run
        node2,
        "127.0.0.1",
        receiver,
        MemoryRoles(),
        load_tls_files(credentials.node_directories[1], "node"),
        [ControlAddress(host="127.0.0.1", port=1)],
        0,
    )
    port = pytest_twisted.blockon(
        listen_for_transfers(reactor, agent.receiver, 0, agent.tls, "127.0.0.1")
    )
    node1_tls = load_tls_files(credentials.node_directories[0], "node")

    def send() -> Any:
        """Node 1 pushes a full final stream of s1 to node 2."""
        return push(
            reactor,
            sender,
            DATASET,
            "s1",
            None,
            "127.0.0.1",
            port.getHost().port,
            node1_tls,
            final=True,
        )

    yield node1, agent, send
    pytest_twisted.blockon(port.stopListening())
    for backend in (sender, receiver):
        for found in pytest_twisted.blockon(backend.list_datasets()):
            pytest_twisted.blockon(backend.destroy(found.dataset_id))


def state_with(node1: str) -> DeploymentState:
    """Node 1 reports its copy of DATASET."""
    return DeploymentState().update_node(
        NodeState(uuid=node1, datasets={DATASET: DatasetState(dataset_id=DATASET)})
    )


@pytest_twisted.ensureDeferred
async def test_a_forged_final_stream_is_refused(two_nodes: Any) -> None:
    """
    Node 1's certificate pushes a full "final" stream of a dataset
    configured on node 1 to node 2: node 2 refuses it as not authorized and
    nothing changes there (no dataset, no role); once the configuration
    moves the dataset to node 2, the same push is received and exposed.
    """
    node1, agent, send = two_nodes
    configuration = Deployment().add_dataset(Dataset(dataset_id=DATASET), node1)
    agent.loop.configuration = configuration
    agent.loop.cluster_state = state_with(node1)
    with pytest.raises(TransferRefused) as caught:
        await send()
    assert caught.value.code == "not-authorized"
    assert await agent.backend.list_datasets() == []
    assert agent.roles.all() == {}

    agent.loop.configuration = configuration.move_dataset(DATASET, agent.node_uuid)
    await send()
    received = await agent.backend.get(DATASET)
    assert (Path(received.path) / "orders").read_bytes() == b"forged?" * 1000
    assert agent.roles.get(DATASET) == PRIMARY
