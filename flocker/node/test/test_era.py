"""A node's era: derived from the boot id and the node's UUID, reported by the container agent."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from flocker.control import DeploymentState
from flocker.node._era import era_from, main, node_era
from flocker.node.containers import ContainerDeployer
from flocker.route.testtools import fired
from flocker.runtime import memory_runtimes

NODE = "aaaaaaaa-0000-4000-8000-00000000000a"
OTHER_NODE = "bbbbbbbb-0000-4000-8000-00000000000b"
BOOT = "0f7a3c9e-5b1d-4c2a-9e8f-1a2b3c4d5e6f"
NEXT_BOOT = "7e1c0b2a-3d4e-4f5a-8b6c-9d0e1f2a3b4c"


def test_era_is_a_uuid_stable_within_a_boot() -> None:
    """The era is a UUID, the same for one node and boot whatever the boot id's case."""
    era = era_from(NODE, BOOT)
    assert str(UUID(era)) == era
    assert era_from(NODE, BOOT.upper() + "\n") == era
    assert era_from(UUID(NODE), BOOT) == era


def test_era_changes_with_boot_and_node() -> None:
    """Another boot, or another node with the same boot id, has another era."""
    era = era_from(NODE, BOOT)
    assert era_from(NODE, NEXT_BOOT) != era
    assert era_from(OTHER_NODE, BOOT) != era


def test_node_era_reads_the_boot_id(tmp_path: Any) -> None:
    """`node_era` derives the era from the boot id file."""
    path = tmp_path / "boot_id"
    path.write_text(BOOT + "\n")
    assert node_era(NODE, str(path)) == era_from(NODE, BOOT)


def test_node_era_unreadable(tmp_path: Any) -> None:
    """A missing boot id file is an OSError."""
    with pytest.raises(OSError):
        node_era(NODE, str(tmp_path / "missing"))


def test_command_prints_the_era(capsys: Any) -> None:
    """``flocker-node-era --node-uuid`` prints this boot's era and nothing else."""
    main(["--node-uuid", NODE])
    out = capsys.readouterr().out
    assert out == node_era(NODE) + "\n"


def test_command_without_certificate(tmp_path: Any, capsys: Any) -> None:
    """Without --node-uuid and without node.crt it exits 1 with a reason."""
    with pytest.raises(SystemExit) as exit_:
        main(["--certificates-directory", str(tmp_path)])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.startswith("flocker-node-era: ")


def test_container_agent_reports_era() -> None:
    """The container deployer's node state carries the era it was given."""
    [runtime] = memory_runtimes([NODE])
    deployer = ContainerDeployer(NODE, "10.0.0.1", runtime, era=era_from(NODE, BOOT))
    local = fired(deployer.discover_state(DeploymentState()))
    assert local.shared_state_changes().era == era_from(NODE, BOOT)


def test_container_agent_without_era_reports_none() -> None:
    """A deployer given no era reports none (the control service keeps what it knew)."""
    [runtime] = memory_runtimes([NODE])
    deployer = ContainerDeployer(NODE, "10.0.0.1", runtime)
    local = fired(deployer.discover_state(DeploymentState()))
    assert local.shared_state_changes().era is None
