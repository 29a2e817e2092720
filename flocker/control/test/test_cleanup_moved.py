"""Unit tests for ``cleanup_moved``: replicas left by finished moves go."""

from collections.abc import Mapping
from uuid import uuid4

from flocker.control import (
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    NodeState,
    cleanup_configuration,
    cleanup_moved,
)

A, B = str(uuid4()), str(uuid4())
DS = str(uuid4())
MOVED = Deployment().add_dataset(Dataset(dataset_id=DS), A).move_dataset(DS, B)


def state(a_datasets: Mapping[str, DatasetState], b_path: str | None) -> DeploymentState:
    """State where A reports ``a_datasets`` and B reports the dataset at ``b_path``."""
    b = {DS: DatasetState(dataset_id=DS, path=b_path)}
    return (
        DeploymentState()
        .update_node(NodeState(uuid=A, datasets=a_datasets))
        .update_node(NodeState(uuid=B, datasets=b))
    )


def test_dropped_when_move_done() -> None:
    """The old primary's replica goes once B exposes it and A no longer has it."""
    cleaned = cleanup_moved(MOVED, state({}, "/mnt/ds"))
    assert A not in cleaned.nodes
    assert cleaned.get_dataset(DS)[1] == B


def test_kept_while_source_holds_it() -> None:
    """While A still reports a copy, its replica stays configured."""
    a = {DS: DatasetState(dataset_id=DS, path=None)}
    assert cleanup_moved(MOVED, state(a, "/mnt/ds")) is MOVED


def test_kept_until_destination_exposes() -> None:
    """Until B reports the dataset mounted, A's replica stays."""
    assert cleanup_moved(MOVED, state({}, None)) is MOVED


def test_kept_while_source_unknown() -> None:
    """A node whose datasets are unknown keeps its replica."""
    only_b = DeploymentState().update_node(
        NodeState(uuid=B, datasets={DS: DatasetState(dataset_id=DS, path="/m")})
    )
    assert cleanup_moved(MOVED, only_b) is MOVED


def test_configuration_cleanup_identity() -> None:
    """With nothing to tidy, cleanup_configuration returns its argument."""
    assert cleanup_configuration(MOVED, DeploymentState()) is MOVED
