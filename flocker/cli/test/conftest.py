"""Fixtures for the ``flocker`` command tests."""

import pytest

from ._fake_cluster import Cluster, make_cluster


@pytest.fixture
def cluster() -> Cluster:
    """An empty fake cluster with two nodes, 10.0.0.1 and 10.0.0.2."""
    return make_cluster()
