"""Tests for the agent protocol's pure helpers: JSON diffs and chunking."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flocker.control import DeploymentState, NodeState
from flocker.control._protocol_diff import (
    CHUNK_SIZE,
    DiffError,
    apply_diff,
    decode_diff,
    diff_documents,
    encode_diff,
    join_chunks,
    split_chunks,
)
from flocker.control._serialization import (
    deployment_state_to_json,
    deployment_to_json,
)
from flocker.control.strategies import deployment_states, deployments

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)

_documents = st.builds(
    lambda d, s: {
        "configuration": deployment_to_json(d),
        "state": deployment_state_to_json(s),
    },
    deployments(),
    deployment_states(),
)


@given(_json, _json)
def test_apply_diff_of_any_json(old: Any, new: Any) -> None:
    """Applying diff(old, new) to old gives new, for any JSON values."""
    assert apply_diff(diff_documents(old, new), old) == new


_few = settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])


@_few
@given(_documents, _documents)
def test_apply_diff_of_cluster_documents(old: Any, new: Any) -> None:
    """Applying diff(old, new) to old gives new for configuration+state documents."""
    operations = decode_diff(encode_diff(diff_documents(old, new)))
    assert apply_diff(operations, old) == new


@_few
@given(_documents)
def test_full_document_from_nothing(document: Any) -> None:
    """A diff against nothing (``None``) carries the whole document."""
    assert apply_diff(diff_documents(None, document), None) == document


@_few
@given(_documents)
def test_equal_documents_have_empty_diff(document: Any) -> None:
    """Equal documents differ by no operation."""
    assert diff_documents(document, document) == []


@given(_json, _json)
def test_apply_does_not_modify_input(old: Any, new: Any) -> None:
    """Applying a diff leaves the original document unchanged."""
    before = encode_diff([old])
    apply_diff(diff_documents(old, new), old)
    assert encode_diff([old]) == before


def test_small_change_gives_small_diff() -> None:
    """Changing one nested key produces one operation naming its path."""
    old = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    new = {"a": {"b": 2, "c": [1, 2]}, "e": None}
    assert sorted(diff_documents(old, new)) == [
        ["del", ["d"]],
        ["set", ["a", "b"], 2],
        ["set", ["e"], None],
    ]


def test_json_types_are_distinguished() -> None:
    """``1`` and ``true`` are different JSON values, so they produce a diff."""
    assert diff_documents({"a": 1}, {"a": True}) == [["set", ["a"], True]]


@pytest.mark.parametrize(
    "operations, document",
    [
        ("not a list", {}),
        ([["nope", ["a"]]], {"a": 1}),
        ([["set", ["a"]]], {"a": 1}),
        ([["set", "a", 1]], {"a": 1}),
        ([["set", [1], 1]], {"a": 1}),
        ([["del", ["missing"]]], {"a": 1}),
        ([["set", ["missing", "x"], 1]], {"a": 1}),
        ([["set", ["a", "x"], 1]], {"a": 1}),
        ([["del", []]], {"a": 1}),
        ([[]], {"a": 1}),
    ],
)
def test_bad_diffs_are_refused(operations: Any, document: Any) -> None:
    """A malformed diff, or one made against another document, raises DiffError."""
    with pytest.raises(DiffError):
        apply_diff(operations, document)


@pytest.mark.parametrize("data", [b"", b"\xff", b"{}", b"[1"])
def test_decode_refuses_non_lists(data: bytes) -> None:
    """Bytes that are not a JSON list are not a diff."""
    with pytest.raises(DiffError):
        decode_diff(data)


@given(st.binary(max_size=50), st.integers(1, 10))
def test_chunks_round_trip(data: bytes, size: int) -> None:
    """Joining the chunks gives the original bytes; no chunk is too long."""
    chunks = split_chunks(data, size)
    assert join_chunks(chunks) == data
    assert all(len(c) <= size for c in chunks)
    assert chunks


def test_large_value_is_split_for_amp() -> None:
    """A value of several hundred KiB is cut into pieces AMP accepts."""
    data = bytes(range(256)) * 1200  # 300 KiB
    chunks = split_chunks(data)
    assert len(chunks) == 5
    assert all(len(c) <= CHUNK_SIZE for c in chunks)
    assert join_chunks(chunks) == data


def test_chunk_size_must_be_positive() -> None:
    """A chunk size below one is refused."""
    with pytest.raises(ValueError):
        split_chunks(b"abc", 0)


def test_busy_ports_change_travels_as_one_operation() -> None:
    """
    A node's new busy ports reach an agent as one operation on that node's
    ``busy_ports``, not as the whole state.
    """
    node = "11111111-1111-4111-8111-111111111111"
    before = DeploymentState().update_node(NodeState(uuid=node, applications={}, busy_ports=[22]))
    after = before.update_node(NodeState(uuid=node, applications={}, busy_ports=[22, 20000]))
    old = {"state": deployment_state_to_json(before)}
    new = {"state": deployment_state_to_json(after)}
    operations = diff_documents(old, new)
    assert operations == [["set", ["state", "nodes", node, "busy_ports"], [22, 20000]]]
    assert apply_diff(operations, old) == new
