"""
Tests for the local cluster (``flocker.testtools.lab``): node addresses,
``stop-node``, ``cut-node`` and ``start-node`` on one node's agents and
packets.
"""

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flocker.testtools import lab


def test_node_address_counts_from_eleven() -> None:
    """Node 0 is ….11, node 1 ….12, in the network asked for."""
    assert lab.node_address(0) == "127.0.0.11"
    assert lab.node_address(1, lab.ROUTABLE_NETWORK) == "198.18.0.12"


def test_loopback_only_without_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    """When addresses cannot be added (no ``ip``, not root), nodes use 127.0.0.x."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("no ip command")

    monkeypatch.setattr(subprocess, "run", refuse)
    assert lab.node_addresses(2) == ["127.0.0.11", "127.0.0.12"]


@pytest.mark.functional
def test_routable_addresses_on_loopback() -> None:
    """
    As root, node addresses are in 198.18.0.0/15 and on ``lo`` (asking
    twice adds nothing and fails nothing), so a socket can bind them.
    """
    if os.geteuid() != 0:
        pytest.skip("adding addresses to lo needs root")
    first = lab.node_addresses(3)
    assert first == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
    assert lab.node_addresses(3) == first
    assert all(lab._on_loopback(address) for address in first)
    assert lab._free_port(first) > 0


# -- stop-node and start-node --------------------------------------------------


#: The real ``_spawn``, for stand-ins even where a test replaces it.
SPAWN = lab._spawn


def sleeper(tmp_path: Path) -> int:
    """A process standing in for an agent: in its own session, as agents are."""
    return SPAWN(["sleep", "60"], str(tmp_path / "sleeper.out"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """
    A ``cluster.json`` for two nodes whose agents are ``sleep`` processes;
    whatever still runs is killed afterwards.
    """
    nodes: list[dict[str, Any]] = [
        {
            "uuid": f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-000000000000",
            "address": lab.node_address(n - 1),
            "log_dir": str(tmp_path / f"node{n}"),
            "agent_config": str(tmp_path / f"node{n}" / "agent.yml"),
            "pids": {kind: sleeper(tmp_path) for kind in lab.AGENT_KINDS},
        }
        for n in (1, 2)
    ]
    for node in nodes:  # recorded as lab.start_node_agents_kind does
        node["started"] = {kind: lab._start_time(pid) for kind, pid in node["pids"].items()}
    data: dict[str, Any] = {"dir": str(tmp_path), "nodes": nodes, "control": {}}
    lab.save(data)
    yield data
    for node in lab.load(str(tmp_path))["nodes"] + nodes:
        for pid in node["pids"].values():
            if lab._alive(pid):
                os.killpg(pid, signal.SIGKILL)


def running(tmp_path: Path, number: int) -> dict[str, bool]:
    """Whether each of node ``number``'s recorded agents runs, by kind."""
    node = lab.load(str(tmp_path))["nodes"][number - 1]
    return {kind: lab._alive(pid) for kind, pid in node["pids"].items()}


def test_stop_node_stops_that_nodes_agents_only(
    cluster: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``stop-node 2`` stops node 2's dataset and container agents; node 1's run on."""
    assert lab.main(["stop-node", "2", "--dir", str(tmp_path)]) == 0
    assert running(tmp_path, 2) == {"dataset": False, "container": False}
    assert running(tmp_path, 1) == {"dataset": True, "container": True}
    assert capsys.readouterr().out == (
        "node 2 (127.0.0.12): dataset and container agents stopped\n"
    )


def test_stop_node_kill_sends_sigkill(
    cluster: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--kill`` SIGKILLs each agent's process group at once, as a power cut would."""
    sent: list[tuple[int, int]] = []
    real_killpg = os.killpg

    def killpg(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        real_killpg(pid, sig)

    monkeypatch.setattr(os, "killpg", killpg)
    assert lab.main(["stop-node", "1", "--dir", str(tmp_path), "--kill"]) == 0
    pids = cluster["nodes"][0]["pids"]
    assert sorted(sent) == sorted((pid, signal.SIGKILL) for pid in pids.values())
    assert running(tmp_path, 1) == {"dataset": False, "container": False}
    assert "killed (SIGKILL)" in capsys.readouterr().out


def test_start_node_starts_only_agents_not_running(
    cluster: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    ``start-node 1`` starts node 1's agents that are not running, with its
    agent configuration, and records their pids; a running agent is left
    alone (two dataset agents must never share a pool).
    """
    os.killpg(cluster["nodes"][0]["pids"]["container"], signal.SIGKILL)
    lab._wait(lambda: not running(tmp_path, 1)["container"], 5, "the kill")
    started: list[tuple[list[str], str]] = []

    def spawn(command: list[str], log_path: str) -> int:
        started.append((command, log_path))
        return sleeper(tmp_path)

    monkeypatch.setattr(lab, "_spawn", spawn)
    assert lab.main(["start-node", "1", "--dir", str(tmp_path)]) == 0
    [(command, log_path)] = started
    assert command[-3:] == [
        "container",
        "--agent-config",
        str(tmp_path / "node1" / "agent.yml"),
    ]
    assert log_path == str(tmp_path / "node1" / "container-agent.out")
    assert running(tmp_path, 1) == {"dataset": True, "container": True}
    pids = lab.load(str(tmp_path))["nodes"][0]["pids"]
    assert pids["dataset"] == cluster["nodes"][0]["pids"]["dataset"]
    assert capsys.readouterr().out == (
        f"node 1 (127.0.0.11): agents running "
        f"(dataset {pids['dataset']}, container {pids['container']})\n"
    )


def test_start_node_after_stop_node_starts_both_agents(
    cluster: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``stop-node``, ``start-node`` starts the dataset and the container agent."""
    assert lab.main(["stop-node", "2", "--dir", str(tmp_path), "--kill"]) == 0
    kinds: list[str] = []

    def spawn(command: list[str], log_path: str) -> int:
        kinds.append("container" if "container" in command else "dataset")
        return sleeper(tmp_path)

    monkeypatch.setattr(lab, "_spawn", spawn)
    assert lab.main(["start-node", "2", "--dir", str(tmp_path)]) == 0
    assert kinds == ["dataset", "container"]
    assert running(tmp_path, 2) == {"dataset": True, "container": True}


@pytest.mark.parametrize("command", ["stop-node", "start-node"])
@pytest.mark.parametrize("number", ["0", "3"])
def test_node_number_out_of_range(
    cluster: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    number: str,
) -> None:
    """A node number outside 1..nodes is a one-line error; nothing is stopped."""
    assert lab.main([command, number, "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"admin/lab: no node {number}: the cluster in {tmp_path} has nodes 1 to 2\n"
    )
    assert (
        running(tmp_path, 1)
        == running(tmp_path, 2)
        == {
            "dataset": True,
            "container": True,
        }
    )


def test_node_commands_without_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``stop-node`` in a directory without a cluster says there is none."""
    assert lab.main(["stop-node", "1", "--dir", str(tmp_path)]) == 1
    assert "no local cluster in" in capsys.readouterr().err


def test_help_lists_node_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """``admin/lab --help`` lists stop-node and start-node; each has its own help."""
    with pytest.raises(SystemExit) as exited:
        lab.main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "stop-node" in text and "start-node" in text and "cut-node" in text
    with pytest.raises(SystemExit):
        lab.main(["stop-node", "--help"])
    text = capsys.readouterr().out
    assert "usage: admin/lab stop-node [-h] --dir DIR [--kill | --power-cut] N" in text
    assert "SIGKILL" in text
    with pytest.raises(SystemExit):
        lab.main(["start-node", "--help"])
    assert "usage: admin/lab start-node [-h] --dir DIR N" in capsys.readouterr().out


# -- cut-node, power cuts and start-node ---------------------------------------


def answers(address: str, port: int) -> bool:
    """Whether a TCP connection to ``address:port`` opens within a second."""
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def listening(cluster: dict[str, Any]) -> Iterator[int]:
    """
    Node 1 of ``cluster`` on an address of its own (198.19.250.11, so no
    other local cluster's node is cut with it), with a listener there;
    its port.
    """
    if os.geteuid() != 0:
        pytest.skip("adding addresses and iptables rules needs root")
    address = lab.node_addresses(1, "198.19.250.")[0]
    assert address == "198.19.250.11"
    cluster["nodes"][0]["address"] = address
    lab.save(cluster)
    with socket.socket() as server:
        server.bind((address, 0))
        server.listen(16)
        yield server.getsockname()[1]
    data = lab.load(cluster["dir"])
    lab.mend_packets(data, data["nodes"][0])


@pytest.mark.functional
def test_cut_node_drops_its_packets_until_start_node(
    cluster: dict[str, Any],
    tmp_path: Path,
    listening: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    ``cut-node 1`` drops every packet to node 1's address (its agents run
    on); ``start-node 1`` removes exactly those rules and the address
    answers again.
    """
    address = cluster["nodes"][0]["address"]
    assert answers(address, listening)
    assert lab.main(["cut-node", "1", "--dir", str(tmp_path)]) == 0
    assert "cut off" in capsys.readouterr().out
    assert running(tmp_path, 1) == {"dataset": True, "container": True}
    assert not answers(address, listening)
    assert lab.load(str(tmp_path))["nodes"][0]["cut"] is True
    assert lab.main(["start-node", "1", "--dir", str(tmp_path)]) == 0
    assert answers(address, listening)
    rules = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True).stdout
    assert address not in rules


@pytest.mark.functional
def test_power_cut_kills_agents_and_cuts_packets(
    cluster: dict[str, Any],
    tmp_path: Path,
    listening: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    ``stop-node 1 --power-cut`` SIGKILLs node 1's agents, kills its
    containers and drops its packets; node 2 is untouched.
    """
    killed: list[str] = []
    monkeypatch.setattr(lab, "kill_containers", lambda node: killed.append(node["uuid"]))
    address = cluster["nodes"][0]["address"]
    assert lab.main(["stop-node", "1", "--dir", str(tmp_path), "--power-cut"]) == 0
    assert "power cut" in capsys.readouterr().out
    assert running(tmp_path, 1) == {"dataset": False, "container": False}
    assert running(tmp_path, 2) == {"dataset": True, "container": True}
    assert killed == [cluster["nodes"][0]["uuid"]]
    assert not answers(address, listening)
    data = lab.load(str(tmp_path))
    lab.mend_packets(data, data["nodes"][0])
    assert answers(address, listening)
