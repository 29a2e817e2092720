"""
Acceptance tests of ``flocker-docker-plugin``: a real two-node local cluster,
one plugin process per node, driven only through the ``docker`` CLI.

Each node gets a Docker Engine of its own (a ``dockerd`` in its own network
namespace, with its own data, exec root and socket), as a real machine
would have:

* one engine remembers which driver each volume name belongs to, so only a
  second engine can use the same volume name through node 2's plugin;
* an engine also keeps every volume plugin it ever used and asks each of
  them (retrying for many seconds when one is gone) whenever it looks a
  volume up by name alone, so the machine's shared engine must never meet
  these short-lived test plugins.

Both engines find the plugins in the machine-wide ``/run/docker/plugins``, so
the plugins have distinct, random names and their sockets go afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

import attrs
import pytest

from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

pytestmark = pytest.mark.acceptance

PLUGIN_DIRECTORY = "/run/docker/plugins"
MIB = 1024 * 1024


@attrs.frozen
class Engine:
    """A Docker Engine the ``docker`` CLI reaches with ``-H host``."""

    host: str
    labels: dict[str, str]

    def docker(
        self, *args: str, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine."""
        argv = ["docker", "-H", self.host, *args]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=stdin is None,
            input=stdin,
            timeout=170,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} failed: {result.stderr!r}")
        return result

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker run`` with the test's labels and no network."""
        labels = [f"--label={k}={v}" for k, v in self.labels.items()]
        return self.docker("run", *labels, "--network", "none", *args, check=check)

    def volumes(self) -> set[tuple[str, str]]:
        """``docker volume ls``: (driver, name) pairs."""
        out = self.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout
        return {tuple(line.split(" ", 1)) for line in out.splitlines() if line}  # type: ignore[misc]

    def remove_labelled_containers(self) -> None:
        """Remove every container carrying the test's labels."""
        [(key, value)] = self.labels.items()
        ids = self.docker(
            "ps", "-aq", "--filter", f"label={key}={value}", check=False
        ).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)


def _unmount_below(directory: str) -> None:
    """Lazily unmount everything mounted under ``directory``."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted(points, reverse=True):
        if point == directory or point.startswith(directory + "/"):
            subprocess.run(["umount", "-l", point], capture_output=True)


@contextmanager
def _private_engine(busybox_image: str, labels: dict[str, str]) -> Iterator[Engine]:
    """
    A Docker Engine of one simulated node, with the busybox image loaded.

    It has its own network namespace (a dockerd started with
    ``--bridge=none`` removes its namespace's ``docker0``, which must not
    be the host's) and its own data, exec root and socket.  Afterwards its
    containers and volumes are removed and it is stopped and deleted.
    """
    # Short paths: unix socket paths are limited to 107 bytes.
    root = tempfile.mkdtemp(prefix="fdp", dir="/tmp")
    socket_path = os.path.join(root, "d.sock")
    log = open(os.path.join(root, "dockerd.log"), "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            "unshare", "--net", "--",
            "dockerd",
            "--data-root", os.path.join(root, "data"),
            "--exec-root", os.path.join(root, "x"),
            "--pidfile", os.path.join(root, "d.pid"),
            "-H", f"unix://{socket_path}",
            "--bridge=none", "--iptables=false", "--ip-masq=false",
            "--ip-forward=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    engine = Engine(f"unix://{socket_path}", labels)
    try:

        def answers() -> bool:
            assert process.poll() is None, "a node's dockerd exited"
            return engine.docker("version", check=False).returncode == 0

        wait_for(answers, 60, "a node's Docker Engine")
        image = subprocess.run(
            ["docker", "save", busybox_image], capture_output=True, check=True
        ).stdout
        engine.docker("load", stdin=image)
        yield engine
    finally:
        engine.remove_labelled_containers()
        for _, name in engine.volumes():
            engine.docker("volume", "rm", "-f", name, check=False)
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def first_engine(
    busybox_image: str, docker_test_labels: dict[str, str]
) -> Iterator[Engine]:
    """Node 1's Docker Engine."""
    with _private_engine(busybox_image, docker_test_labels) as engine:
        yield engine


@pytest.fixture
def second_engine(
    busybox_image: str, docker_test_labels: dict[str, str]
) -> Iterator[Engine]:
    """Node 2's Docker Engine."""
    with _private_engine(busybox_image, docker_test_labels) as engine:
        yield engine


@attrs.frozen
class Plugins:
    """The cluster and the name of each node's plugin (index 0 is node 1)."""

    cluster: dict[str, Any]
    names: list[str]


def _plugin_certificates(cluster: dict[str, Any], index: int, directory: str) -> str:
    """A directory with cluster.crt, the node's node.crt and the user certificate."""
    node = cluster["nodes"][index]
    node_certificates = os.path.join(os.path.dirname(node["log_dir"]), "certificates")
    target = os.path.join(directory, f"plugin{index + 1}")
    os.makedirs(target)
    for name in ("cluster.crt", "node.crt", "node.key"):
        shutil.copy(os.path.join(node_certificates, name), target)
    shutil.copy(cluster["certificates"]["user_cert"], os.path.join(target, "user.crt"))
    shutil.copy(cluster["certificates"]["user_key"], os.path.join(target, "user.key"))
    return target


@pytest.fixture
def plugins(
    make_lab: Callable[..., dict[str, Any]], tmp_path: Any
) -> Iterator[Plugins]:
    """A two-node cluster with a ``flocker-docker-plugin`` process per node."""
    cluster = make_lab(nodes=2)
    prefix = f"flocker-test-{uuid4().hex[:8]}"
    names = [f"{prefix}-n{i + 1}" for i in range(2)]
    processes = []
    try:
        for index, name in enumerate(names):
            certificates = _plugin_certificates(cluster, index, str(tmp_path))
            output = open(tmp_path / f"{name}.out", "wb")  # noqa: SIM115
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "flocker.dockerplugin.script",
                        "--control-host",
                        cluster["control"]["host"],
                        "--control-port",
                        str(cluster["control"]["api_port"]),
                        "--certificates-directory",
                        certificates,
                        "--user",
                        "user",
                        "--plugin-name",
                        name,
                        "--log-dir",
                        cluster["nodes"][index]["log_dir"],
                        "--mount-timeout",
                        "60",
                    ],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            )
            output.close()
        for process, name in zip(processes, names, strict=True):
            path = os.path.join(PLUGIN_DIRECTORY, f"{name}.sock")

            def listening(
                process: Any = process, path: str = path, name: str = name
            ) -> bool:
                assert process.poll() is None, (tmp_path / f"{name}.out").read_text()
                return os.path.exists(path)

            wait_for(listening, 30, f"plugin {name} to listen")
        yield Plugins(cluster, names)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for name in names:
            for suffix in (".sock", ".sock.lock"):
                path = os.path.join(PLUGIN_DIRECTORY, name + suffix)
                if os.path.exists(path):
                    os.unlink(path)


def _datasets(
    cluster: dict[str, Any], name: str, key: str = "name"
) -> list[dict[str, Any]]:
    """The configured datasets whose metadata ``key`` is ``name``."""
    return [
        d
        for d in lab.api_request(cluster, "GET", "/v1/configuration/datasets")
        if d.get("metadata", {}).get(key) == name
    ]


def _leases(cluster: dict[str, Any]) -> dict[str, str]:
    """Dataset id → the node holding its lease."""
    return {
        lease["dataset_id"]: lease["node_uuid"]
        for lease in lab.api_request(cluster, "GET", "/v1/configuration/leases")
    }


def _volume_name() -> str:
    """A volume name no engine has seen (engines cache name → driver)."""
    return f"fdp-{uuid4().hex[:12]}"


def test_create_use_move_remove(
    plugins: Plugins,
    first_engine: Engine,
    second_engine: Engine,
    busybox_image: str,
) -> None:
    """
    ``docker volume create`` makes a dataset of the given size on node 1; a
    container on node 1 writes to it; a container on node 2 (its own engine,
    node 2's plugin) using the same volume name gets the dataset moved there
    and reads the data; ``docker volume rm`` makes Docker forget the volume
    but keeps the dataset (not deleted, its name under
    ``docker_removed_name``).
    """
    cluster = plugins.cluster
    node1, node2 = (node["uuid"] for node in cluster["nodes"])
    plugin1, plugin2 = plugins.names
    volume = _volume_name()

    first_engine.docker("volume", "create", "-d", plugin1, "-o", "size=64M", volume)
    assert (plugin1, volume) in first_engine.volumes()
    [dataset] = _datasets(cluster, volume)
    assert (dataset["primary"], dataset["maximum_size"]) == (node1, 64 * MIB)
    dataset_id = dataset["dataset_id"]

    first_engine.run(
        "--rm", "-v", f"{volume}:/data", "--volume-driver", plugin1,
        busybox_image, "sh", "-c", "echo hello > /data/f",
    )  # fmt: skip
    assert dataset_id not in _leases(cluster), "the lease outlived the container"

    read = second_engine.run(
        "--rm", "-v", f"{volume}:/data", "--volume-driver", plugin2,
        busybox_image, "cat", "/data/f",
    )  # fmt: skip
    assert read.stdout == "hello\n"
    [moved] = _datasets(cluster, volume)
    assert moved["primary"] == node2
    assert dataset_id not in _leases(cluster)
    assert (plugin2, volume) in second_engine.volumes()

    second_engine.docker("volume", "rm", volume)
    assert _datasets(cluster, volume) == []
    kept = _datasets(cluster, volume, key="docker_removed_name")
    assert [(d["dataset_id"], d["deleted"]) for d in kept] == [(dataset_id, False)]
    assert volume not in {name for _, name in second_engine.volumes()}
    assert volume not in {name for _, name in first_engine.volumes()}


def test_errors_reach_the_cli(plugins: Plugins, first_engine: Engine) -> None:
    """
    A bad size and an unknown option are refused with the plugin's message
    on the docker CLI's standard error; no volume or dataset is made.
    """
    cluster = plugins.cluster
    plugin1 = plugins.names[0]
    volume = _volume_name()

    bad_size = first_engine.docker(
        "volume", "create", "-d", plugin1, "-o", "size=lots", volume, check=False
    )
    assert bad_size.returncode != 0
    assert "invalid size 'lots'" in bad_size.stderr
    assert "e.g. size=64M" in bad_size.stderr

    unknown = first_engine.docker(
        "volume", "create", "-d", plugin1, "-o", "colour=red", volume, check=False
    )
    assert unknown.returncode != 0
    assert (
        "unknown option colour: the Flocker volume driver knows size" in unknown.stderr
    )

    assert volume not in {name for _, name in first_engine.volumes()}
    assert _datasets(cluster, volume) == []


def test_volume_in_use_elsewhere(
    plugins: Plugins,
    first_engine: Engine,
    second_engine: Engine,
    busybox_image: str,
) -> None:
    """
    While a container on node 1 uses a volume, node 2 cannot take it: the
    docker CLI says it is in use on another node, and the dataset stays;
    once the container is gone, node 2 can use it.
    """
    cluster = plugins.cluster
    node1, node2 = (node["uuid"] for node in cluster["nodes"])
    plugin1, plugin2 = plugins.names
    volume = _volume_name()

    container = first_engine.run(
        "-d", "-v", f"{volume}:/data", "--volume-driver", plugin1,
        busybox_image, "sh", "-c", "echo held > /data/f; sleep 600",
    ).stdout.strip()  # fmt: skip
    [dataset] = _datasets(cluster, volume)
    assert _leases(cluster).get(dataset["dataset_id"]) == node1

    refused = second_engine.run(
        "--rm", "-v", f"{volume}:/data", "--volume-driver", plugin2,
        busybox_image, "cat", "/data/f", check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert f"volume '{volume}' is in use on another node" in refused.stderr
    assert _datasets(cluster, volume)[0]["primary"] == node1

    first_engine.docker("rm", "-f", container)
    wait_for(
        lambda: dataset["dataset_id"] not in _leases(cluster), 30, "the lease to go"
    )
    read = second_engine.run(
        "--rm", "-v", f"{volume}:/data", "--volume-driver", plugin2,
        busybox_image, "cat", "/data/f",
    )  # fmt: skip
    assert read.stdout == "held\n"
    assert _datasets(cluster, volume)[0]["primary"] == node2
    second_engine.docker("volume", "rm", volume)
    assert _datasets(cluster, volume) == []
    assert not _datasets(cluster, volume, key="docker_removed_name")[0]["deleted"]


def _plugin_call(name: str, endpoint: str, raw: bytes) -> Any:
    """POST ``raw`` to a plugin's socket as Docker does; the decoded answer."""

    class _UnixConnection(http.client.HTTPConnection):
        """An HTTP connection over the plugin's unix socket."""

        def connect(self) -> None:
            """Connect to the socket instead of a TCP address."""
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(os.path.join(PLUGIN_DIRECTORY, f"{name}.sock"))

    connection = _UnixConnection("localhost")
    try:
        connection.request("POST", endpoint, body=raw)
        reply = connection.getresponse()
        assert reply.status == 200
        return json.loads(reply.read())
    finally:
        connection.close()


def test_protocol_answers_as_the_original(plugins: Plugins) -> None:
    """
    Over the plugin's socket, as the original plugin did: Activate ignores
    its body; Get and List answer ``"Mountpoint": ""`` for a volume not
    mounted on the node; Unmount and Remove of an unknown volume succeed;
    Remove keeps the dataset.
    """
    cluster = plugins.cluster
    node1 = cluster["nodes"][0]["uuid"]
    plugin2 = plugins.names[1]
    volume = _volume_name()
    for raw in (b"", b"not json", b"[1]"):
        assert _plugin_call(plugin2, "/Plugin.Activate", raw) == {
            "Implements": ["VolumeDriver"]
        }
    lab.api_request(
        cluster, "POST", "/v1/configuration/datasets",
        {"primary": node1, "metadata": {"name": volume}},
    )  # fmt: skip
    wait_for(
        lambda: any(
            s.get("path")
            for s in lab.api_request(cluster, "GET", "/v1/state/datasets")
            if s["dataset_id"] == _datasets(cluster, volume)[0]["dataset_id"]
        ),
        60,
        "the volume's dataset to be mounted on node 1",
    )
    request = json.dumps({"Name": volume}).encode()
    assert _plugin_call(plugin2, "/VolumeDriver.Get", request) == {
        "Volume": {"Name": volume, "Mountpoint": ""},
        "Err": "",
    }
    listed = _plugin_call(plugin2, "/VolumeDriver.List", b"{}")
    assert {"Name": volume, "Mountpoint": ""} in listed["Volumes"]
    unknown = json.dumps({"Name": _volume_name(), "ID": "c1"}).encode()
    assert _plugin_call(plugin2, "/VolumeDriver.Unmount", unknown) == {"Err": ""}
    assert _plugin_call(plugin2, "/VolumeDriver.Remove", unknown) == {"Err": ""}
    assert _plugin_call(plugin2, "/VolumeDriver.Remove", request) == {"Err": ""}
    [kept] = _datasets(cluster, volume, key="docker_removed_name")
    assert kept["deleted"] is False
