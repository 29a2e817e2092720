"""
Which pushed streams a dataset agent lets in: only what its configuration
sends to it from the pushing node (`transfer_unauthorized`), as a table of
cases, and the agent's `authorize` logging each refusal.
"""

from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest
from eliot import MemoryLogger

from flocker.control import (
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    NodeState,
)
from flocker.node._dataset_agent import TRANSFER_UNAUTHORIZED, transfer_unauthorized
from flocker.volume._transfer_wire import TransferHeader

DS = str(uuid4())
ME, PRIMARY_NODE, THIRD = (str(uuid4()) for _ in range(3))


def header(final: bool = False, base: str | None = "s1") -> TransferHeader:
    """A stream of DS (incremental unless ``base`` is ``None``)."""
    return TransferHeader(
        dataset_id=DS, snapshot="s2", base=base, stream_format="zfs", final=final
    )


def holding(*nodes: str) -> DeploymentState:
    """A cluster state in which ``nodes`` report a copy of DS."""
    state = DeploymentState()
    for node in nodes:
        state = state.update_node(
            NodeState(uuid=node, datasets={DS: DatasetState(dataset_id=DS)})
        )
    return state


def on(node: str) -> Deployment:
    """A configuration with DS on ``node``, no replicas."""
    return Deployment().add_dataset(Dataset(dataset_id=DS), node)


def moved_to_me() -> Deployment:
    """DS configured on PRIMARY_NODE, then moved to this node."""
    return on(PRIMARY_NODE).move_dataset(DS, ME)


def replicated_to_me() -> Deployment:
    """DS on PRIMARY_NODE with this node as its standing replica."""
    return on(PRIMARY_NODE).set_replicas(DS, [ME])


ACCEPTED = [
    ("a move's bulk round", moved_to_me, holding(PRIMARY_NODE), PRIMARY_NODE, header()),
    (
        "a move's final increment",
        moved_to_me,
        holding(PRIMARY_NODE),
        PRIMARY_NODE,
        header(final=True),
    ),
    (
        "a move's first full stream before the old primary reported",
        moved_to_me,
        DeploymentState(),
        PRIMARY_NODE,
        header(base=None),
    ),
    (
        "a replication round",
        replicated_to_me,
        holding(PRIMARY_NODE),
        PRIMARY_NODE,
        header(),
    ),
    (
        "a full stream to a new replica",
        replicated_to_me,
        holding(PRIMARY_NODE),
        PRIMARY_NODE,
        header(base=None),
    ),
    (
        "a move to this standing replica (the old primary stays a replica)",
        lambda: (
            replicated_to_me().move_dataset(DS, ME).set_replicas(DS, [PRIMARY_NODE])
        ),
        holding(PRIMARY_NODE, ME),
        PRIMARY_NODE,
        header(final=True),
    ),
    (
        "rounds from a new primary to the old one, named its replica after a failover",
        lambda: (
            Deployment()
            .add_dataset(Dataset(dataset_id=DS, epoch=1), PRIMARY_NODE)
            .set_replicas(DS, [ME])
        ),
        holding(PRIMARY_NODE, ME),
        PRIMARY_NODE,
        header(),
    ),
]

REFUSED = [
    (
        "a forged final stream of a dataset configured on the sender",
        lambda: on(PRIMARY_NODE),
        holding(PRIMARY_NODE),
        PRIMARY_NODE,
        header(final=True, base=None),
        "not sent to this node",
    ),
    (
        "a stream of a dataset configured on a third node",
        lambda: on(THIRD),
        holding(THIRD, PRIMARY_NODE),
        PRIMARY_NODE,
        header(),
        "not sent to this node",
    ),
    (
        "an unknown dataset",
        Deployment,
        DeploymentState(),
        PRIMARY_NODE,
        header(),
        "not configured",
    ),
    (
        "a replica round from a node that is not the primary",
        replicated_to_me,
        holding(PRIMARY_NODE, THIRD),
        THIRD,
        header(),
        "not node",
    ),
    (
        "a final stream to a standing replica",
        replicated_to_me,
        holding(PRIMARY_NODE),
        PRIMARY_NODE,
        header(final=True, base=None),
        "final stream",
    ),
    (
        "a move here claimed by a node that holds no copy",
        moved_to_me,
        holding(PRIMARY_NODE),
        THIRD,
        header(final=True, base=None),
        "holds no copy",
    ),
    (
        "a deleted dataset",
        lambda: on(PRIMARY_NODE).move_dataset(DS, ME).delete_dataset(DS),
        holding(PRIMARY_NODE),
        PRIMARY_NODE,
        header(),
        "deleted",
    ),
]


@pytest.mark.parametrize(
    "configuration, state, peer, pushed",
    [c[1:] for c in ACCEPTED],
    ids=[c[0] for c in ACCEPTED],
)
def test_streams_the_configuration_sends_here_are_let_in(
    configuration: Callable[[], Deployment],
    state: DeploymentState,
    peer: str,
    pushed: TransferHeader,
) -> None:
    """A move to this node and a standing replica's rounds from its primary pass."""
    assert transfer_unauthorized(ME, peer, pushed, configuration(), state) is None


@pytest.mark.parametrize(
    "configuration, state, peer, pushed, reason",
    [c[1:] for c in REFUSED],
    ids=[c[0] for c in REFUSED],
)
def test_other_streams_are_refused(
    configuration: Callable[[], Deployment],
    state: DeploymentState,
    peer: str,
    pushed: TransferHeader,
    reason: str,
) -> None:
    """Anything the configuration does not send here from that node is refused."""
    refused = transfer_unauthorized(ME, peer, pushed, configuration(), state)
    assert refused is not None and reason in refused


def test_nothing_is_let_in_before_the_configuration_is_known() -> None:
    """Until the first configuration arrives, no stream is let in."""
    refused = transfer_unauthorized(ME, PRIMARY_NODE, header(), None, None)
    assert refused is not None and "not known" in refused


def test_the_agent_logs_each_refusal(eliot_logger: MemoryLogger, tmp_path: Path) -> None:
    """`DatasetAgent.authorize` logs who pushed what and why it was refused."""
    from flocker.node.test.test_fence import make_agent

    agent = make_agent(tmp_path)
    agent.loop.configuration = on(PRIMARY_NODE)
    agent.loop.cluster_state = holding(PRIMARY_NODE)
    forged = TransferHeader(
        dataset_id=DS, snapshot="s1", stream_format="memory", final=True
    )
    reason = agent.authorize(forged, PRIMARY_NODE)
    assert reason is not None
    [message] = eliot_logger.messages
    assert message["message_type"] == TRANSFER_UNAUTHORIZED.message_type
    assert (message["dataset_id"], message["peer"], message["final"]) == (
        DS,
        PRIMARY_NODE,
        True,
    )
