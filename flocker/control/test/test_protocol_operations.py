"""
Tests for the control service's questions to dataset agents over AMP:
snapshot operations (`SnapshotCommand`), through iosim pumps with the real
agent client (transfers in progress: `test_httpapi_hostile`).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from flocker.control import (
    ClusterStateService,
    ConfigurationService,
    ControlAMPService,
    MemoryConfigurationStore,
)
from flocker.control._protocol import AgentUnavailable
from flocker.control._protocol_agent import AgentAMPClient
from flocker.control.test.test_protocol import (
    NODE_A,
    Control,
    collect,
    connect,
    identify,
)

NODE_B = "bbbbbbbb-0000-4000-8000-00000000000b"


@pytest.fixture
def control() -> Control:
    """A started control AMP service without a listening port."""
    clock = Clock()
    configuration = ConfigurationService(MemoryConfigurationStore())
    configuration.load()
    state = ClusterStateService(clock)
    service = ControlAMPService(clock, configuration, state, identify=identify)
    service.startService()
    return Control(clock, configuration, state, service)
DATASET = "d0d0d0d0-0000-4000-8000-00000000000d"


def dataset_agent(control: Any, **handlers: Any) -> Any:
    """A dataset agent of node A with the given handlers, connected and pumped."""
    client = AgentAMPClient(control.clock, None, "dataset", lambda c, s: None, **handlers)  # type: ignore[arg-type]
    return connect(control, client=client)


def test_snapshot_operation_reaches_the_nodes_agent(control: Any) -> None:
    """The control service's request reaches node A's handler; the answer comes back."""
    seen = []

    def snapshots(operation: str, dataset_id: str, name: str) -> Any:
        seen.append((operation, dataset_id, name))
        return succeed({"snapshot": {"name": name, "created": 1.5}})

    agent = dataset_agent(control, snapshots=snapshots)
    answer = collect(control.service.snapshot_operation(NODE_A, "take", DATASET, "monday"))
    agent.pump.flush()
    assert seen == [("take", DATASET, "monday")]
    assert answer == [{"snapshot": {"name": "monday", "created": 1.5}}]


def test_snapshot_operation_without_agent(control: Any) -> None:
    """A node whose dataset agent is not connected fails with AgentUnavailable."""
    dataset_agent(control, snapshots=lambda *a: succeed({}))
    [failure] = collect(control.service.snapshot_operation(NODE_B, "list", DATASET))
    assert failure.check(AgentUnavailable)


def test_agent_without_snapshot_handler_answers_an_error(control: Any) -> None:
    """An agent with no handler (a container agent) answers with an error, not a crash."""
    agent = dataset_agent(control)
    answer = collect(control.service.snapshot_operation(NODE_A, "list", DATASET))
    agent.pump.flush()
    assert answer[0]["error"]["code"] == "bad_request"
    assert agent.server.handshaken
