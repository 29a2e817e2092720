"""Unit tests of who may use the REST API (`APIAccess`)."""

from __future__ import annotations

from uuid import UUID

import pytest

from flocker.ca import PeerIdentity
from flocker.control._httpaccess import APIAccess

THIS = UUID("11111111-0000-4000-8000-000000000001")
OTHER = UUID("22222222-0000-4000-8000-000000000002")
NODE = UUID("33333333-0000-4000-8000-000000000003")


def test_user_of_this_cluster_is_served() -> None:
    """A user certificate of the control service's cluster is allowed."""
    identity = PeerIdentity(kind="user", username="alice", cluster_uuid=THIS)
    assert APIAccess(THIS).refusal(identity) is None


@pytest.mark.parametrize(
    ("identity", "named"),
    [
        (PeerIdentity(kind="node", node_uuid=NODE, cluster_uuid=THIS), "node"),
        (PeerIdentity(kind="control", cluster_uuid=THIS), "control"),
        (PeerIdentity(kind="user", username="alice", cluster_uuid=OTHER), str(OTHER)),
    ],
)
def test_others_are_refused_with_reason(identity: PeerIdentity, named: str) -> None:
    """Node and control certificates, and other clusters' users, are refused, saying why."""
    refusal = APIAccess(THIS).refusal(identity)
    assert refusal is not None and named in refusal


def test_unknown_cluster_serves_nobody() -> None:
    """Without its cluster's UUID the API refuses even a user certificate."""
    identity = PeerIdentity(kind="user", username="alice", cluster_uuid=THIS)
    assert APIAccess(None).refusal(identity) is not None
