"""Tests for the incrementally built document pushed to agents."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from flocker.control import Deployment, DeploymentState, NodeState
from flocker.control._protocol_diff import diff_documents
from flocker.control._protocol_document import DocumentEncoder
from flocker.control._serialization import (
    deployment_state_to_json,
    deployment_to_json,
)
from flocker.control.strategies import deployment_states, deployments

NODE_A = "8d6b5d8c-1b0a-4f5e-9a43-6a2c8c6d8a01"
NODE_B = "8d6b5d8c-1b0a-4f5e-9a43-6a2c8c6d8a02"


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(deployments(), deployment_states(), deployments(), deployment_states())
def test_documents_equal_a_fresh_encoding(
    first: Deployment,
    first_state: DeploymentState,
    second: Deployment,
    second_state: DeploymentState,
) -> None:
    """
    Whatever it encoded before, the encoder's document is the one a fresh
    encoding of the configuration and state gives.
    """
    encoder = DocumentEncoder()
    for deployment, state in [(first, first_state), (second, second_state)]:
        assert encoder.document(deployment, state) == {
            "configuration": deployment_to_json(deployment),
            "state": deployment_state_to_json(state),
        }


def test_unchanged_nodes_keep_their_json() -> None:
    """
    A node whose state is the same object shares its JSON with the previous
    document, so the diff between the two holds only the node that changed.
    """
    encoder = DocumentEncoder()
    state = DeploymentState().update_node(NodeState(uuid=NODE_A, hostname="10.0.0.1"))
    state = state.update_node(NodeState(uuid=NODE_B, hostname="10.0.0.2"))
    before = encoder.document(Deployment(), state)
    after = encoder.document(
        Deployment(), state.update_node(NodeState(uuid=NODE_B, hostname="10.0.0.3"))
    )
    nodes_before, nodes_after = before["state"]["nodes"], after["state"]["nodes"]
    assert nodes_after[NODE_A] is nodes_before[NODE_A]
    assert nodes_after[NODE_B] is not nodes_before[NODE_B]
    assert diff_documents(before, after) == [
        ["set", ["state", "nodes", NODE_B, "hostname"], "10.0.0.3"]
    ]


def test_removed_nodes_are_forgotten() -> None:
    """A node no longer reported leaves the document (and the encoder's memory)."""
    encoder = DocumentEncoder()
    state = DeploymentState().update_node(NodeState(uuid=NODE_A, hostname="10.0.0.1"))
    encoder.document(Deployment(), state)
    after = encoder.document(Deployment(), state.remove_node(NODE_A))
    assert after["state"] == {"nodes": {}}
