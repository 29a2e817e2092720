"""Unit tests for the convergence benchmark's pure helpers."""

from benchmark.convergence import exposed_on

ENTRIES = [
    {"dataset_id": "d1", "primary": "n1", "path": "/mnt/d1"},
    {"dataset_id": "d2", "primary": "n2", "path": "/mnt/d2"},
    {"dataset_id": "d3", "primary": "n1"},
]


def test_exposed_on():
    """A dataset listed with a path on the node counts as exposed."""
    assert exposed_on(ENTRIES, "d1", "n1")
    assert exposed_on(ENTRIES, "d2", "n2")


def test_not_exposed():
    """Another node, a missing path, an unknown dataset or no entries do not."""
    assert not exposed_on(ENTRIES, "d1", "n2")
    assert not exposed_on(ENTRIES, "d3", "n1")
    assert not exposed_on(ENTRIES, "d4", "n1")
    assert not exposed_on([], "d1", "n1")
