"""Tests for the volume backend the dataset agent builds from ``agent.yml``."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor

from flocker.node._agentconfig import load_agent_config
from flocker.node.script import make_backend
from flocker.volume import IVolumeBackend
from flocker.volume.loopback import DEFAULT_SIZE

BASE = """
version: 1
control-service: {hostname: 127.0.0.1}
node: {address: 127.0.0.11}
dataset: {backend: loopback, root: ROOT%s}
"""


def _backend(tmp_path: Path, extra: str = "") -> IVolumeBackend:
    path = tmp_path / "agent.yml"
    path.write_text(BASE.replace("ROOT", str(tmp_path / "data")) % extra)
    return make_backend(reactor, load_agent_config(str(path)))


def test_loopback_without_a_default_size_uses_its_own(tmp_path: Path) -> None:
    """
    A loopback backend configured without ``default-maximum-size`` gives
    datasets created without a size its own default image size (not none).
    """
    backend = _backend(tmp_path)
    assert backend.capabilities.default_maximum_size == DEFAULT_SIZE


def test_loopback_takes_the_configured_default_size(tmp_path: Path) -> None:
    """``default-maximum-size`` is the loopback backend's default image size."""
    backend = _backend(tmp_path, ", default-maximum-size: 67108864")
    assert backend.capabilities.default_maximum_size == 64 * 1024 * 1024
