"""Tests for agent.yml loading and the dataset agent's start-up errors."""

import subprocess
import sys

import pytest

from flocker.common import ConfigurationError
from flocker.node._agentconfig import load_agent_config

GOOD = """
version: 1
control-service: {hostname: 127.0.0.1, port: 4524}
node: {address: 127.0.0.11}
dataset: {backend: zfs, pool: flocker}
transfer: {port: 4600}
certificates: /etc/flocker
logging: {directory: /var/log/flocker}
"""


def write(tmp_path, text):
    """An agent.yml with ``text``."""
    path = tmp_path / "agent.yml"
    path.write_text(text)
    return str(path)


def test_good(tmp_path):
    """A complete agent.yml gives every setting."""
    config = load_agent_config(write(tmp_path, GOOD))
    assert (config.control_host, config.control_port) == ("127.0.0.1", 4524)
    assert (config.backend, config.pool, config.transfer_port) == ("zfs", "flocker", 4600)
    assert config.address == "127.0.0.11"
    assert config.log_directory == "/var/log/flocker"


def test_defaults(tmp_path):
    """Ports, certificates and state directory have defaults."""
    config = load_agent_config(
        write(
            tmp_path,
            "version: 1\ncontrol-service: {hostname: c}\nnode: {address: n}\n"
            "dataset: {backend: directory, root: /data}\n",
        )
    )
    assert (config.control_port, config.transfer_port) == (4524, 4525)
    assert config.certificates == "/etc/flocker"
    assert config.state_directory == "/var/lib/flocker"


@pytest.mark.parametrize(
    "change, key",
    [
        (("port: 4524", "port: many"), "control-service.port"),
        (("backend: zfs, pool: flocker", "backend: zfs"), "dataset.pool"),
        (("backend: zfs, pool: flocker", "backend: ceph, pool: x"), "dataset.backend"),
        (("node: {address: 127.0.0.11}", "node: {address: 127.0.0.11, colour: red}"), "node.colour"),
        (("version: 1", "version: 2"), "version"),
        (("transfer: {port: 4600}", "transfer: {port: 70000}"), "transfer.port"),
    ],
)
def test_bad_key_named(tmp_path, change, key):
    """Each mistake is reported with the key's dotted path."""
    with pytest.raises(ConfigurationError) as info:
        load_agent_config(write(tmp_path, GOOD.replace(*change)))
    assert info.value.key == key


def test_agent_exits_with_one_line(tmp_path):
    """The daemon refuses a bad agent.yml with one line and a non-zero exit."""
    path = write(tmp_path, GOOD.replace("port: 4524", "port: many"))
    result = subprocess.run(
        [sys.executable, "-m", "flocker.node.script", "--agent-config", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("flocker-dataset-agent: ")
    assert "control-service.port" in lines[0]


def test_agent_missing_certificates(tmp_path):
    """Missing certificates are a one-line error too."""
    path = write(
        tmp_path,
        GOOD.replace("certificates: /etc/flocker", f"certificates: {tmp_path}/none")
        .replace("directory: /var/log/flocker", f"directory: {tmp_path}/logs"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "flocker.node.script", "--agent-config", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "flocker-dataset-agent:" in result.stderr
