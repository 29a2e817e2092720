"""Tests for agent.yml loading and the dataset agent's start-up errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from flocker.common import ConfigurationError
from flocker.node._agentconfig import load_agent_config
from flocker.node._control_connection import ControlAddress

GOOD = """
version: 1
control-service: {hostname: 127.0.0.1, port: 4524}
node: {address: 127.0.0.11}
dataset: {backend: zfs, pool: flocker}
transfer: {port: 4600}
certificates: /etc/flocker
logging: {directory: /var/log/flocker}
"""


def write(tmp_path: Path, text: str) -> str:
    """An agent.yml with ``text``."""
    path = tmp_path / "agent.yml"
    path.write_text(text)
    return str(path)


def test_good(tmp_path: Path) -> None:
    """A complete agent.yml gives every setting."""
    config = load_agent_config(write(tmp_path, GOOD))
    assert config.control == (ControlAddress(host="127.0.0.1", port=4524),)
    assert (config.backend, config.pool, config.transfer_port) == ("zfs", "flocker", 4600)
    assert config.address == "127.0.0.11"
    assert config.log_directory == "/var/log/flocker"


def test_defaults(tmp_path: Path) -> None:
    """Ports, certificates and state directory have defaults."""
    config = load_agent_config(
        write(
            tmp_path,
            "version: 1\ncontrol-service: {hostname: c}\nnode: {address: n}\n"
            "dataset: {backend: directory, root: /data}\n",
        )
    )
    assert config.control == (ControlAddress(host="c", port=4524),)
    assert config.transfer_port == 4525
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
        (("{hostname: 127.0.0.1, port: 4524}", "{port: 4524}"), "control-service"),
        (
            ("{hostname: 127.0.0.1, port: 4524}", "{hostname: a, hosts: [b]}"),
            "control-service",
        ),
        (("{hostname: 127.0.0.1, port: 4524}", "{hosts: []}"), "control-service.hosts"),
        (("{hostname: 127.0.0.1, port: 4524}", "{hosts: a}"), "control-service.hosts"),
        (
            ("{hostname: 127.0.0.1, port: 4524}", "{hosts: [a, {hostname: b, port: 0}]}"),
            "control-service.hosts.1.port",
        ),
        (
            ("{hostname: 127.0.0.1, port: 4524}", "{hosts: [{port: 4524}]}"),
            "control-service.hosts.0.hostname",
        ),
        (
            ("{hostname: 127.0.0.1, port: 4524}", "{hosts: [{hostname: a, colour: red}]}"),
            "control-service.hosts.0.colour",
        ),
        (("{hostname: 127.0.0.1, port: 4524}", "{hosts: ['a:70000']}"), "control-service.hosts.0"),
        (("{hostname: 127.0.0.1, port: 4524}", "{hosts: ['a:http']}"), "control-service.hosts.0"),
        (("{hostname: 127.0.0.1, port: 4524}", "{hosts: [':4524']}"), "control-service.hosts.0"),
        (("{hostname: 127.0.0.1, port: 4524}", "{hosts: [a, 'a:4524']}"), "control-service.hosts.1"),
        (("{hostname: 127.0.0.1, port: 4524}", "{hosts: [7]}"), "control-service.hosts.0"),
    ],
)
def test_bad_key_named(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    """Each mistake is reported with the key's dotted path."""
    with pytest.raises(ConfigurationError) as info:
        load_agent_config(write(tmp_path, GOOD.replace(*change)))
    assert info.value.key == key


def test_registry_credentials(tmp_path: Path) -> None:
    """
    ``registries`` gives the credentials of private registries by the
    ``host[:port]`` their images name; their passwords show in no repr.
    """
    config = load_agent_config(
        write(
            tmp_path,
            GOOD + "registries:\n  127.0.0.1:5000: {username: deploy, password: s3cret}\n",
        )
    )
    (registry, credentials), = config.registries.items()
    assert registry == "127.0.0.1:5000"
    assert (credentials.username, credentials.password) == ("deploy", "s3cret")
    assert "s3cret" not in repr(config)
    assert load_agent_config(write(tmp_path, GOOD)).registries == {}


@pytest.mark.parametrize(
    "registries, key",
    [
        ("{r.example: {username: u}}", "registries.r.example.password"),
        ("{r.example: {username: u, password: p, token: t}}", "registries.r.example.token"),
        ("{r.example: {username: '', password: p}}", "registries.r.example.username"),
        ("[r.example]", "registries"),
    ],
)
def test_bad_registry_credentials_named(tmp_path: Path, registries: str, key: str) -> None:
    """A registry entry without a user name and password is refused, by key."""
    with pytest.raises(ConfigurationError) as info:
        load_agent_config(write(tmp_path, GOOD + f"registries: {registries}\n"))
    assert info.value.key == key


def test_several_control_instances(tmp_path: Path) -> None:
    """
    ``control-service.hosts`` lists control service instances as mappings or
    ``HOST[:PORT]`` strings; a port left out is the section's ``port``, else 4524.
    """
    text = GOOD.replace(
        "control-service: {hostname: 127.0.0.1, port: 4524}",
        "control-service:\n"
        "  port: 4600\n"
        "  hosts:\n"
        "    - {hostname: 10.0.0.1, port: 4524}\n"
        "    - {hostname: 10.0.0.2}\n"
        "    - 10.0.0.3:4700\n"
        "    - control-4.example\n"
        "    - '[fd00::5]:4800'\n"
        "    - fd00::6\n",
    )
    config = load_agent_config(write(tmp_path, text))
    assert [str(a) for a in config.control] == [
        "10.0.0.1:4524",
        "10.0.0.2:4600",
        "10.0.0.3:4700",
        "control-4.example:4600",
        "[fd00::5]:4800",
        "[fd00::6]:4600",
    ]


def test_hosts_without_port_use_the_default(tmp_path: Path) -> None:
    """Hosts listed without any port use the agent port's default, 4524."""
    text = GOOD.replace(
        "control-service: {hostname: 127.0.0.1, port: 4524}",
        "control-service: {hosts: [a, b]}",
    )
    config = load_agent_config(write(tmp_path, text))
    assert config.control == (
        ControlAddress(host="a", port=4524),
        ControlAddress(host="b", port=4524),
    )


@pytest.mark.parametrize(
    "section, words",
    [
        ("{hosts: []}", "lists no control service instance"),
        ("{hosts: ['a:0']}", "is not a TCP port"),
        ("{port: 4524}", "give either hostname"),
    ],
)
def test_bad_control_addresses_exit_with_one_line(
    tmp_path: Path, section: str, words: str
) -> None:
    """An agent given unusable control service addresses exits with one line saying why."""
    path = write(
        tmp_path,
        GOOD.replace("{hostname: 127.0.0.1, port: 4524}", section),
    )
    result = subprocess.run(
        [sys.executable, "-m", "flocker.node.script", "--agent-config", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flocker-dataset-agent: ")
    assert "control-service" in lines[0] and words in lines[0]


def test_agent_exits_with_one_line(tmp_path: Path) -> None:
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


def test_agent_missing_certificates(tmp_path: Path) -> None:
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
