"""Tests for naming nodes and datasets on the command line (`flocker.cli._resolve`)."""

from uuid import UUID

import pytest

from flocker.apiclient import Dataset, Node
from flocker.cli._errors import EXIT_ERROR, CLIError
from flocker.cli._resolve import node_label, resolve_dataset, resolve_node

A = UUID("aaaaaaaa-0000-4000-8000-000000000001")
A2 = UUID("aaaabbbb-0000-4000-8000-000000000002")
B = UUID("bbbbbbbb-0000-4000-8000-000000000003")

NODES = [Node(uuid=A, host="10.0.0.1"), Node(uuid=A2, host="10.0.0.2"), Node(uuid=B)]


def dataset(uuid: UUID, name: str | None = None, deleted: bool = False) -> Dataset:
    """A dataset on node A with an optional name."""
    return Dataset(
        dataset_id=uuid,
        primary=A,
        deleted=deleted,
        metadata={} if name is None else {"name": name},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.0.0.2", A2), (str(A), A), (str(A).upper(), A), ("bbbb", B), ("aaaaa", A)],
)
def test_resolve_node(text: str, expected: UUID) -> None:
    """A node is named by address, UUID or unique UUID prefix."""
    assert resolve_node(NODES, text).uuid == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("10.0.0.9", "unknown node '10.0.0.9'"),
        ("aaaa", "ambiguous"),
        ("", "unknown node"),
    ],
)
def test_resolve_node_refuses(text: str, says: str) -> None:
    """An unknown or ambiguous node is bad input."""
    with pytest.raises(CLIError) as info:
        resolve_node(NODES, text)
    assert says in info.value.message
    assert info.value.code == EXIT_ERROR


def test_unknown_node_lists_nodes() -> None:
    """The error for an unknown node lists the known ones."""
    with pytest.raises(CLIError) as info:
        resolve_node(NODES, "nope")
    assert "10.0.0.1, 10.0.0.2" in info.value.message


DATASETS = [dataset(A, "db"), dataset(A2, "logs"), dataset(B, "old", deleted=True)]


@pytest.mark.parametrize(
    ("text", "expected"), [("db", A), (str(A2), A2), ("aaaab", A2), ("logs", A2)]
)
def test_resolve_dataset(text: str, expected: UUID) -> None:
    """A dataset is named by UUID, unique UUID prefix or its name."""
    assert resolve_dataset(DATASETS, text).dataset_id == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nope", "unknown dataset 'nope'"),
        ("aaaa", "ambiguous"),
        ("old", "unknown dataset"),
        (str(B), "unknown dataset"),
    ],
)
def test_resolve_dataset_refuses(text: str, says: str) -> None:
    """Unknown, ambiguous or deleted datasets are bad input."""
    with pytest.raises(CLIError) as info:
        resolve_dataset(DATASETS, text)
    assert says in info.value.message
    assert info.value.code == EXIT_ERROR


def test_same_name_is_ambiguous() -> None:
    """Two datasets with one name cannot be named by it."""
    with pytest.raises(CLIError, match="ambiguous"):
        resolve_dataset([dataset(A, "x"), dataset(B, "x")], "x")


def test_node_label() -> None:
    """A node shows as its address, or its UUID without one."""
    assert node_label({A: "10.0.0.1", B: None}, A) == "10.0.0.1"
    assert node_label({A: "10.0.0.1", B: None}, B) == str(B)
