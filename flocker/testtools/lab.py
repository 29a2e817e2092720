"""The local cluster: a control service and N nodes on one machine.

``admin/lab up --nodes N --dir DIR [--backend zfs|directory] [--network
198.18.X.] [--fence-after S] [--failover-after S]`` starts
``flocker-control`` and, for each node, a ``flocker-dataset-agent`` and a
``flocker-container-agent`` (containers labelled with the node) with its
own address, its own file-backed ZFS
pool (or directory), its own certificates and its own log directory.  It
issues every certificate with ``flocker-ca`` and writes ``DIR/cluster.json``::

    {"control": {"api_url": "https://127.0.0.1:PORT", "agent_port": PORT,
                 "host": "127.0.0.1", "api_port": PORT, "pid": PID,
                 "log_dir": …},
     "certificates": {"ca": …, "user_cert": …, "user_key": …},
     "nodes": [{"uuid": …, "address": …, "pool": …, "log_dir": …,
                "agent_config": …, "pids": {"dataset": PID, "container": PID}}],
     "backend": "zfs", "transfer_port": PORT}

``admin/lab status --dir DIR`` says what runs; ``admin/lab down --dir DIR``
stops every process, destroys the pools and removes DIR.  Acceptance tests,
benchmarks and ``admin/quickstart`` use the same functions.

``admin/lab stop-node N --dir DIR [--kill | --power-cut]`` stops node N's
(1-based, in ``status`` order) dataset and container agents — SIGTERM, or
with ``--kill`` SIGKILL; its pool, its containers and the control service's
last report of it stay.  ``--power-cut`` is the whole machine gone: the
agents and the node's containers are SIGKILLed and every packet to or from
the node's address on ``lo`` is dropped (iptables rules the lab records and
removes again).  ``admin/lab cut-node N`` drops the node's packets only (a
partition: its agents and containers run on, cut off from everyone), and
``admin/lab start-node N --dir DIR`` removes the rules and starts the
agents of node N that are not running, on the same configuration, as if
the machine came back.

``--control N --store etcd`` starts a highly available control plane
instead of one control service with its file: an etcd cluster of N members
(`flocker.testtools.lab_etcd`) and N ``flocker-control`` instances sharing
it, each on its own ports; every node's ``agent.yml`` lists every
instance (``control-service: {hosts: [...]}``) and ``cluster.json``'s
``control`` (the first instance) carries ``api_urls`` (all of them),
``controls`` lists the instances and ``etcd`` the members.  ``admin/lab
stop-control N [--kill]`` and ``start-control N`` stop and start control
instance N (1-based).

``--fence-after`` goes into every node's ``agent.yml`` (``fence-after``)
and, with ``--failover-after``, onto the control service's command line, so
a test can see automatic failover in seconds rather than the defaults.

Node addresses: as root, 198.18.0.11, 198.18.0.12, … (or ``--network``'s
…11, …12, …: a cluster whose nodes are cut off by iptables takes a network
of its own, so no other local cluster loses a node with it) added to the
loopback interface (198.18.0.0/15 is reserved for network benchmarks, so it clashes
with no real network).  Containers reach such an address through their
bridge's gateway, as they would a real node's, so an application's links —
which point at its node's address — work in the local cluster too.  The
addresses stay on ``lo`` after ``down``: another cluster on the machine may
be using them, and they are harmless.  Without root the nodes use
127.0.0.11, 127.0.0.12, …, which containers cannot reach.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from .lab_etcd import healthy, member_command, member_environment
from .waiting import wait_for
from .zfs import FilePool, create_pool, destroy_pool

CLUSTER_FILE = "cluster.json"
CONTROL_HOST = "127.0.0.1"
FIRST_NODE_ADDRESS = 11

#: Node addresses reachable from containers (see the module docstring).
ROUTABLE_NETWORK = "198.18.0."


class LabError(Exception):
    """The local cluster could not be started, queried or stopped."""


def node_address(index: int, network: str = "127.0.0.") -> str:
    """The address of node ``index`` (from 0) in ``network``: ….11, ….12, …"""
    return f"{network}{FIRST_NODE_ADDRESS + index}"


def _on_loopback(address: str) -> bool:
    """Whether ``address`` is already one of the loopback interface's."""
    try:
        shown = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", "lo"],
            capture_output=True, text=True, check=False,
        )
    except OSError:
        return False
    return f" {address}/" in shown.stdout


def node_addresses(count: int, network: str = ROUTABLE_NETWORK) -> list[str]:
    """
    Addresses for ``count`` nodes: in ``network`` (198.18.0. by default)
    when they are on ``lo`` or can be added to it (root), otherwise
    127.0.0.x.
    """
    routable = [node_address(i, network) for i in range(count)]
    for address in routable:
        if _on_loopback(address):
            continue
        try:
            subprocess.run(
                ["ip", "addr", "add", f"{address}/32", "dev", "lo"],
                capture_output=True, check=True,
            )
        except (OSError, subprocess.CalledProcessError):
            if not _on_loopback(address):  # not added meanwhile by another lab
                return [node_address(i) for i in range(count)]
    return routable


def _python_module(module: str, *args: str) -> list[str]:
    """A command line running a Flocker module with this interpreter."""
    return [sys.executable, "-m", module, *args]


def _free_port(addresses: list[str]) -> int:
    """A TCP port free on every one of ``addresses``."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for address in addresses[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise LabError("no free port found")


def _ca(directory: str, *args: str) -> None:
    """Run ``flocker-ca`` in ``directory``."""
    result = subprocess.run(
        _python_module("flocker.ca.script", *args, "--inputpath", directory,
                       "--outputpath", directory)
        if args[0] != "initialize"
        else _python_module("flocker.ca.script", *args, "--outputpath", directory),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise LabError(f"flocker-ca {args[0]} failed: {result.stderr.strip()}")


def _certificates(directory: str, nodes: int) -> dict[str, Any]:
    """Issue the cluster's certificates; lay them out per party."""
    ca_dir = os.path.join(directory, "ca")
    os.makedirs(ca_dir)
    _ca(ca_dir, "initialize", "flocker-lab")
    _ca(ca_dir, "create-control-certificate", CONTROL_HOST)
    _ca(ca_dir, "create-api-certificate", "user")
    control = os.path.join(directory, "control", "certificates")
    os.makedirs(control)
    shutil.copy(os.path.join(ca_dir, "cluster.crt"), control)
    for suffix in ("crt", "key"):
        shutil.copy(
            os.path.join(ca_dir, f"control-{CONTROL_HOST}.{suffix}"),
            os.path.join(control, f"control-service.{suffix}"),
        )
    node_dirs = []
    for index in range(nodes):
        node_uuid = str(uuid.uuid4())
        _ca(ca_dir, "create-node-certificate", "--uuid", node_uuid)
        node_dir = os.path.join(directory, f"node{index + 1}", "certificates")
        os.makedirs(node_dir)
        shutil.copy(os.path.join(ca_dir, "cluster.crt"), node_dir)
        for suffix in ("crt", "key"):
            shutil.copy(
                os.path.join(ca_dir, f"{node_uuid}.{suffix}"),
                os.path.join(node_dir, f"node.{suffix}"),
            )
        node_dirs.append((node_uuid, node_dir))
    return {
        "ca": os.path.join(ca_dir, "cluster.crt"),
        "user_cert": os.path.join(ca_dir, "user.crt"),
        "user_key": os.path.join(ca_dir, "user.key"),
        "control_dir": control,
        "nodes": node_dirs,
    }


def _spawn(command: list[str], log_path: str, env: dict[str, str] | None = None) -> int:
    """Start a daemon in its own session, output to ``log_path``; its pid."""
    with open(log_path, "ab") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    return process.pid


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _start_time(pid: int) -> int | None:
    """
    When process ``pid`` started (field 22 of ``/proc/PID/stat``, clock
    ticks since boot), or ``None`` if there is no such process.  A pid with
    another start time than the one recorded at spawn is another process.
    """
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])  # fields[0] is field 3 (the state)


def _ours(pid: int | None, started: int | None) -> bool:
    """
    Whether ``pid`` is still the process this cluster spawned: alive, with
    the start time recorded when it was spawned.  A record without one
    (written before start times were kept) counts only for a Flocker daemon.
    """
    if not pid or not _alive(pid):
        return False
    if started is None:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                return b"flocker." in handle.read()
        except OSError:
            return False
    return _start_time(pid) == started


def _agent_running(node: dict[str, Any], kind: str) -> bool:
    """Whether the node's recorded ``kind`` agent is the process it started."""
    return _ours(node.get("pids", {}).get(kind), node.get("started", {}).get(kind))


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    """`wait_for` ``predicate``, failing with a `LabError` when time runs out."""
    try:
        return wait_for(predicate, timeout, what)
    except AssertionError as error:
        raise LabError(str(error)) from None


def api_request(
    cluster: dict[str, Any],
    method: str,
    path: str,
    body: Any = None,
    url: str | None = None,
) -> Any:
    """
    One REST API request with the user certificate; the decoded JSON reply.
    It goes to ``url`` if given, else to the first control instance that
    can be reached.

    :raise urllib.error.HTTPError: for an error status.
    """
    context = ssl.create_default_context(cafile=cluster["certificates"]["ca"])
    context.load_cert_chain(
        cluster["certificates"]["user_cert"], cluster["certificates"]["user_key"]
    )
    data = None if body is None else json.dumps(body).encode()
    urls = api_urls(cluster) if url is None else [url]
    for index, base in enumerate(urls):
        request = urllib.request.Request(
            base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.URLError as error:
            # Another instance, only when this one could not be reached at
            # all (an HTTP error status is the answer).
            if isinstance(error, urllib.error.HTTPError) or index == len(urls) - 1:
                raise
            if not isinstance(error.reason, ConnectionRefusedError):
                raise
    raise LabError("the cluster has no control service")  # pragma: no cover


def api_urls(cluster: dict[str, Any]) -> list[str]:
    """Every control instance's REST API URL, the first instance's first."""
    return [control["api_url"] for control in controls(cluster)]


def controls(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """The cluster's control instances (one, unless started with ``--control N``)."""
    return cluster.get("controls") or [cluster["control"]]


def _write_agent_config(
    path: str, cluster: dict[str, Any], node: dict[str, Any], certificates: str
) -> None:
    """Write a node's agent.yml."""
    dataset: dict[str, Any] = {"backend": cluster["backend"]}
    if cluster["backend"] == "zfs":
        dataset["pool"] = node["pool"]
    else:
        dataset["root"] = node["pool"]
    instances = controls(cluster)
    control_service: dict[str, Any] = {
        "hostname": instances[0]["host"],
        "port": instances[0]["agent_port"],
    }
    if len(instances) > 1:
        control_service = {
            "hosts": [
                {"hostname": c["host"], "port": c["agent_port"]} for c in instances
            ]
        }
    config: dict[str, Any] = {
        "version": 1,
        "control-service": control_service,
        "node": {"address": node["address"]},
        "dataset": dataset,
        "transfer": {"port": cluster["transfer_port"]},
        "certificates": certificates,
        "state-directory": os.path.join(os.path.dirname(path), "state"),
        "logging": {"directory": node["log_dir"]},
    }
    if cluster.get("fence_after") is not None:
        config["fence-after"] = cluster["fence_after"]
    if cluster.get("registries"):
        config["registries"] = cluster["registries"]
    with open(path, "w") as handle:
        json.dump(config, handle, indent=2)  # JSON is YAML


AGENT_KINDS = ("dataset", "container")


def start_node_agents_kind(cluster: dict[str, Any], node: dict[str, Any], kind: str) -> None:
    """Start (or restart) one of a node's agents: ``dataset`` or ``container``."""
    extra = [] if kind == "dataset" else ["container"]
    pid = node.setdefault("pids", {})[kind] = _spawn(
        _python_module(
            "flocker.node.script", *extra, "--agent-config", node["agent_config"]
        ),
        os.path.join(node["log_dir"], f"{kind}-agent.out"),
    )
    node.setdefault("started", {})[kind] = _start_time(pid)
    if os.path.exists(os.path.join(cluster["dir"], CLUSTER_FILE)):
        save(cluster)


def start_node_agents(cluster: dict[str, Any], node: dict[str, Any]) -> None:
    """Start (or restart) a node's agents; records their pids in ``node``."""
    for kind in AGENT_KINDS:
        start_node_agents_kind(cluster, node, kind)


#: The cluster's timing settings, passed to the control service as options.
TIMING_OPTIONS = ("fence_after", "failover_after")


def _timing_options(cluster: dict[str, Any]) -> list[str]:
    """``--fence-after S --failover-after S`` for those the cluster sets."""
    options: list[str] = []
    for name in TIMING_OPTIONS:
        if cluster.get(name) is not None:
            options += [f"--{name.replace('_', '-')}", f"{cluster[name]:g}"]
    return options


def start_control(cluster: dict[str, Any], index: int = 0) -> None:
    """Start (or restart) control instance ``index`` on its recorded ports."""
    control = controls(cluster)[index]
    store: list[str] = []
    if cluster.get("etcd"):
        store = ["--store", cluster["etcd"]["url"]]
    control["pid"] = _spawn(
        _python_module(
            "flocker.control.script",
            "--data-path", control["data_dir"],
            "--port", str(control["api_port"]),
            "--agent-port", str(control["agent_port"]),
            "--certificates-directory", control["certificates"],
            "--log-dir", control["log_dir"],
            "--listen-address", control["host"],
            "--instance-name", f"control{index + 1}",
            *store,
            *_timing_options(cluster),
        ),
        os.path.join(control["log_dir"], "control.out"),
    )  # fmt: skip
    control["started"] = _start_time(control["pid"])
    save(cluster)


def _new_control(directory: str, name: str, certificates: str) -> dict[str, Any]:
    """The record of a control instance to start: free ports, its directories."""
    control_dir = os.path.join(directory, name)
    control: dict[str, Any] = {
        "host": CONTROL_HOST,
        "api_port": _free_port([CONTROL_HOST]),
        "agent_port": _free_port([CONTROL_HOST]),
        "data_dir": os.path.join(control_dir, "data"),
        "log_dir": os.path.join(control_dir, "logs"),
        "certificates": certificates,
    }
    control["api_url"] = f"https://{CONTROL_HOST}:{control['api_port']}"
    os.makedirs(control["log_dir"])
    return control


def start_etcd(cluster: dict[str, Any], members: int) -> None:
    """Start an etcd cluster of ``members`` members for the control instances."""
    directory = cluster["dir"]
    records: list[dict[str, Any]] = []
    for index in range(members):
        client_port = _free_port([CONTROL_HOST])
        peer_port = _free_port([CONTROL_HOST])
        records.append(
            {
                "name": f"etcd{index + 1}",
                "dir": os.path.join(directory, "etcd", f"etcd{index + 1}"),
                "client_url": f"http://{CONTROL_HOST}:{client_port}",
                "peer_url": f"http://{CONTROL_HOST}:{peer_port}",
            }
        )
    initial = ",".join(f"{m['name']}={m['peer_url']}" for m in records)
    token = f"flocker-lab-{uuid.uuid4()}"
    cluster["etcd"] = {
        "members": records,
        "url": "etcd://" + ",".join(m["client_url"][len("http://") :] for m in records),
    }
    save(cluster)
    for member in records:
        os.makedirs(member["dir"], exist_ok=True)
        log = os.path.join(member["dir"], "etcd.log")
        command = member_command(
            member["name"],
            os.path.join(member["dir"], "data"),
            member["client_url"],
            member["peer_url"],
            initial,
            token,
            log,
        )
        member["pid"] = _spawn(command, log + ".out", member_environment())
        member["started"] = _start_time(member["pid"])
        save(cluster)
    for member in records:
        if not _ours(member["pid"], member["started"]):
            raise LabError(f"etcd member {member['name']} exited: see {member['dir']}")
        _wait(lambda m=member: healthy(m["client_url"]), 30, f"etcd member {member['name']}")


def _etcd_member(cluster: dict[str, Any], number: int) -> dict[str, Any]:
    members = cluster.get("etcd", {}).get("members", [])
    if not 1 <= number <= len(members):
        raise LabError(f"no etcd member {number} in the cluster in {cluster['dir']}")
    member: dict[str, Any] = members[number - 1]
    return member


def stop_etcd_member(directory: str, number: int) -> dict[str, Any]:
    """SIGKILL etcd member ``number`` (1-based); its data directory stays."""
    cluster = load(directory)
    member = _etcd_member(cluster, number)
    if _ours(member.get("pid"), member.get("started")):
        os.killpg(member["pid"], signal.SIGKILL)
    _wait(
        lambda: not _ours(member.get("pid"), member.get("started")),
        15,
        f"etcd member {number} to exit",
    )
    return member


def start_etcd_member(directory: str, number: int) -> dict[str, Any]:
    """Start etcd member ``number`` again on its data (it rejoins the cluster)."""
    cluster = load(directory)
    member = _etcd_member(cluster, number)
    if _ours(member.get("pid"), member.get("started")):
        return member
    log = os.path.join(member["dir"], "etcd.log")
    command = member_command(
        member["name"],
        os.path.join(member["dir"], "data"),
        member["client_url"],
        member["peer_url"],
        ",".join(f"{m['name']}={m['peer_url']}" for m in cluster["etcd"]["members"]),
        "rejoin",  # ignored: the member's data names its cluster
        log,
    )
    member["pid"] = _spawn(command, log + ".out", member_environment())
    member["started"] = _start_time(member["pid"])
    save(cluster)
    return member


def _instance_named_in(directory: str, key: bytes, field: str | None = None) -> int | None:
    """
    The control instance (1-based) whose name an etcd key's value starts
    with (or, with ``field``, its JSON value's ``field``); ``None``: no such
    key, or etcd cannot say.
    """
    cluster = load(directory)
    encoded = base64.b64encode(key).decode()
    for member in cluster.get("etcd", {}).get("members", []):
        request = urllib.request.Request(
            member["client_url"] + "/v3/kv/range",
            data=json.dumps({"key": encoded}).encode(),
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                answer = json.loads(reply.read())
        except (OSError, ValueError):
            continue
        for kv in answer.get("kvs", []):
            value = base64.b64decode(kv["value"]).decode()
            if field is not None:
                value = json.loads(value)[field]
            name = value.split("/", 1)[0]
            if name.startswith("control") and name[len("control") :].isdigit():
                return int(name[len("control") :])
        return None
    return None


def leader_instance(directory: str) -> int | None:
    """
    Which control instance (1-based) holds the leadership now, as etcd
    says (``None``: none, or etcd cannot say).
    """
    return _instance_named_in(directory, b"/flocker/leader")


def agent_instance(directory: str, node_uuid: str, kind: str = "dataset") -> int | None:
    """
    Which control instance (1-based) the node's ``kind`` agent last
    reported to, as the instances share it through etcd.
    """
    return _instance_named_in(
        directory, f"/flocker/state/{node_uuid}/{kind}".encode(), "instance"
    )


def stop_control(directory: str, number: int, kill: bool = False) -> dict[str, Any]:
    """Stop control instance ``number`` (1-based; ``kill``: SIGKILL); its record."""
    cluster = load(directory)
    control = _numbered_control(cluster, number)
    if kill:
        if _ours(control.get("pid"), control.get("started")):
            os.killpg(control["pid"], signal.SIGKILL)
        _wait(
            lambda: not _ours(control.get("pid"), control.get("started")),
            15,
            f"control instance {number} to exit",
        )
    else:
        _stop(control.get("pid"), control.get("started"))
    return control


def start_control_instance(directory: str, number: int) -> dict[str, Any]:
    """Start control instance ``number`` again if it is not running; its record."""
    cluster = load(directory)
    control = _numbered_control(cluster, number)
    if not _ours(control.get("pid"), control.get("started")):
        start_control(cluster, number - 1)
    return control


def _numbered_control(cluster: dict[str, Any], number: int) -> dict[str, Any]:
    instances = controls(cluster)
    if not 1 <= number <= len(instances):
        raise LabError(
            f"no control instance {number}: the cluster in {cluster['dir']} has "
            f"instances 1 to {len(instances)}"
        )
    return instances[number - 1]


def wait_for_cluster(cluster: dict[str, Any], timeout: float = 60) -> None:
    """Wait until the API answers and every node reported its datasets."""
    expected = {node["uuid"] for node in cluster["nodes"]}

    outputs = [
        (control["pid"], os.path.join(control["log_dir"], "control.out"))
        for control in controls(cluster)
    ]
    for node in cluster["nodes"]:
        for kind, pid in node["pids"].items():
            outputs.append((pid, os.path.join(node["log_dir"], f"{kind}-agent.out")))

    def ready() -> bool:
        for pid, output in outputs:
            if not _alive(pid):
                try:
                    with open(output) as handle:
                        tail = handle.read()[-2000:].strip()
                except OSError:
                    tail = "(no output)"
                raise LabError(f"process {pid} exited: {tail}")
        # Every instance must see every node: with several instances, the
        # agents report to one and the others learn it through etcd.
        for url in api_urls(cluster):
            try:
                nodes = api_request(cluster, "GET", "/v1/state/nodes", url=url)
            except OSError:
                return False
            if not expected <= {n["uuid"] for n in nodes}:
                return False
        return True

    _wait(ready, timeout, "the control service and every node's agents")


def save(cluster: dict[str, Any]) -> None:
    """Write ``cluster.json``."""
    path = os.path.join(cluster["dir"], CLUSTER_FILE)
    with open(path + ".tmp", "w") as handle:
        json.dump(cluster, handle, indent=2)
    os.replace(path + ".tmp", path)


def load(directory: str) -> dict[str, Any]:
    """Read ``DIR/cluster.json``."""
    path = os.path.join(os.path.abspath(directory), CLUSTER_FILE)
    try:
        with open(path) as handle:
            cluster: dict[str, Any] = json.load(handle)
    except FileNotFoundError:
        raise LabError(f"no local cluster in {directory} ({path} is missing)") from None
    if cluster.get("controls"):
        # One record: changing the first instance changes "control" too.
        cluster["control"] = cluster["controls"][0]
    return cluster


def up(
    directory: str,
    nodes: int = 2,
    backend: str = "zfs",
    network: str = ROUTABLE_NETWORK,
    fence_after: float | None = None,
    failover_after: float | None = None,
    control_instances: int = 1,
    store: str = "file",
    registries: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """
    Start a local cluster in ``directory`` (which must not hold one): node
    addresses in ``network``; ``fence_after`` and ``failover_after``, when
    given, set the agents' and the control service's timing;
    ``control_instances`` control services sharing an etcd cluster of as
    many members when ``store`` is ``"etcd"`` (one with its file otherwise);
    ``registries`` goes into every ``agent.yml`` as is (registry →
    ``{"username": …, "password": …}``).
    """
    if store not in ("file", "etcd"):
        raise LabError(f"--store must be file or etcd, not {store!r}")
    if not 1 <= control_instances <= 7:
        raise LabError("--control must be between 1 and 7")
    if control_instances > 1 and store != "etcd":
        raise LabError("several control instances need --store etcd: they share it")
    directory = os.path.abspath(directory)
    if os.path.exists(os.path.join(directory, CLUSTER_FILE)):
        raise LabError(f"{directory} already holds a cluster: admin/lab down first")
    if not 1 <= nodes <= 40:
        raise LabError("--nodes must be between 1 and 40")
    os.makedirs(directory, exist_ok=True)
    node_ips = node_addresses(nodes, network)
    addresses = [CONTROL_HOST] + node_ips
    certificates = _certificates(directory, nodes)
    cluster: dict[str, Any] = {
        "dir": directory,
        "backend": backend,
        "fence_after": fence_after,
        "failover_after": failover_after,
        "registries": registries or {},
        "transfer_port": _free_port(addresses[1:]),
        "certificates": {
            k: certificates[k] for k in ("ca", "user_cert", "user_key")
        },
        "nodes": [],
    }
    instances = [
        _new_control(
            directory,
            "control" if index == 0 else f"control{index + 1}",
            certificates["control_dir"],
        )
        for index in range(control_instances)
    ]
    cluster["control"] = instances[0]
    if store == "etcd":
        cluster["controls"] = instances
        instances[0]["api_urls"] = [c["api_url"] for c in instances]
    save(cluster)
    try:
        if store == "etcd":
            start_etcd(cluster, control_instances)
        for index in range(control_instances):
            start_control(cluster, index)
        save(cluster)
        for index, (node_uuid, cert_dir) in enumerate(certificates["nodes"]):
            node_dir = os.path.dirname(cert_dir)
            node: dict[str, Any] = {
                "uuid": node_uuid,
                "address": node_ips[index],
                "log_dir": os.path.join(node_dir, "logs"),
                "agent_config": os.path.join(node_dir, "agent.yml"),
                "pids": {},
            }
            os.makedirs(node["log_dir"])
            if backend == "zfs":
                pool = create_pool(
                    node_dir, size="8G", prefix=f"flocker-lab{index + 1}"
                )
                node["pool"] = pool.name
                node["pool_image"] = pool.image
                node["pool_mountpoint"] = pool.mountpoint
            else:
                node["pool"] = os.path.join(node_dir, "datasets")
            cluster["nodes"].append(node)
            save(cluster)
            _write_agent_config(node["agent_config"], cluster, node, cert_dir)
            start_node_agents(cluster, node)
            save(cluster)
        wait_for_cluster(cluster)
    except subprocess.CalledProcessError as error:
        down(directory)
        detail = (error.stderr or b"").decode("utf-8", "replace").strip()
        raise LabError(f"{' '.join(error.cmd)} failed: {detail}") from None
    except BaseException:
        down(directory)
        raise
    return cluster


def _stop(pid: int | None, started: int | None = None, timeout: float = 10) -> None:
    """
    SIGTERM a process group this cluster spawned, then SIGKILL it if it
    lingers; a recorded pid that is now another process (its start time
    differs from ``started``, recorded at spawn) is never signalled.
    """
    if not _ours(pid, started):
        return
    assert pid is not None
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _ours(pid, started) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _ours(pid, started):
            return


def stop_node_agents(node: dict[str, Any], sig: int | None = None) -> None:
    """
    Stop a node's agents (``sig``: send just that signal, e.g. SIGKILL);
    only the processes it started, never a pid reused by another process.
    """
    for kind, pid in node.get("pids", {}).items():
        started = node.get("started", {}).get(kind)
        if sig is None:
            _stop(pid, started)
        elif _ours(pid, started):
            os.killpg(pid, sig)


def _numbered_node(cluster: dict[str, Any], number: int) -> dict[str, Any]:
    """Node ``number`` (1-based, as ``status`` lists them) of ``cluster``."""
    nodes = cluster["nodes"]
    if not 1 <= number <= len(nodes):
        raise LabError(
            f"no node {number}: the cluster in {cluster['dir']} has nodes 1 to {len(nodes)}"
        )
    node: dict[str, Any] = nodes[number - 1]
    return node


def _packet_rules(address: str) -> list[list[str]]:
    """The iptables rules (INPUT on ``lo``) dropping an address's packets."""
    return [
        ["INPUT", "-i", "lo", "-s", address, "-j", "DROP"],
        ["INPUT", "-i", "lo", "-d", address, "-j", "DROP"],
    ]


def cut_packets(cluster: dict[str, Any], node: dict[str, Any]) -> None:
    """
    Drop every packet to or from ``node``'s address on ``lo``: the node is
    cut off from the control service, the other nodes and its clients.
    Recorded in ``cluster.json``, so `mend_packets` (or ``down``) removes
    exactly these rules.
    """
    if node.get("cut"):
        return
    node["cut"] = True
    save(cluster)
    for rule in _packet_rules(node["address"]):
        subprocess.run(["iptables", "-w", "-I", *rule], capture_output=True, check=True)


def mend_packets(cluster: dict[str, Any], node: dict[str, Any]) -> None:
    """Remove the rules `cut_packets` added for ``node`` (none: nothing)."""
    if not node.get("cut"):
        return
    for rule in _packet_rules(node["address"]):
        subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True, check=False)
    node["cut"] = False
    save(cluster)


def kill_containers(node: dict[str, Any]) -> None:
    """SIGKILL every running container of ``node``'s container agent."""
    import docker

    client = docker.from_env(timeout=60)
    try:
        for container in client.containers.list(
            filters={"label": f"org.flocker.node={node['uuid']}"}
        ):
            try:
                container.kill()
            except docker.errors.APIError:
                pass  # it stopped meanwhile
    finally:
        client.close()


def stop_node(
    directory: str, number: int, kill: bool = False, power_cut: bool = False
) -> dict[str, Any]:
    """
    Stop node ``number``'s dataset and container agents (``kill``: SIGKILL
    them) and wait until they are gone; ``power_cut``: SIGKILL them and the
    node's containers, and drop the node's packets, as if the machine lost
    power.  The node.
    """
    cluster = load(directory)
    node = _numbered_node(cluster, number)
    if power_cut:
        cut_packets(cluster, node)
    stop_node_agents(node, signal.SIGKILL if kill or power_cut else None)
    if power_cut:
        kill_containers(node)
    _wait(
        lambda: not any(_agent_running(node, kind) for kind in node.get("pids", {})),
        15,
        f"node {number}'s agents to exit",
    )
    return node


def cut_node(directory: str, number: int) -> dict[str, Any]:
    """Partition node ``number``: drop its packets, leave its processes be."""
    cluster = load(directory)
    node = _numbered_node(cluster, number)
    cut_packets(cluster, node)
    return node


def start_node(directory: str, number: int) -> dict[str, Any]:
    """
    Bring node ``number`` back: remove the rules cutting it off, and start
    its agents that are not running (those that run are left alone: two
    dataset agents must never share a pool); the node.
    """
    cluster = load(directory)
    node = _numbered_node(cluster, number)
    mend_packets(cluster, node)
    for kind in AGENT_KINDS:
        if not _agent_running(node, kind):
            start_node_agents_kind(cluster, node, kind)
    return node


def _stop_strays(directory: str) -> None:
    """Kill any daemon still running from this cluster's directory."""
    marker = directory.encode() + b"/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if marker in cmdline and b"flocker." in cmdline:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _remove_containers(node_uuids: list[str]) -> None:
    """Remove every container the nodes' container agents made."""
    try:
        import docker

        client = docker.from_env(timeout=60)
    except Exception:  # no Docker here: nothing of ours can run there
        return
    try:
        for node_uuid in node_uuids:
            for container in client.containers.list(
                all=True, filters={"label": f"org.flocker.node={node_uuid}"}
            ):
                container.remove(force=True)
    finally:
        client.close()


def down(directory: str) -> None:
    """Stop everything, destroy the pools, remove the directory."""
    directory = os.path.abspath(directory)
    try:
        cluster = load(directory)
    except LabError:
        if os.path.isdir(directory):
            shutil.rmtree(directory, ignore_errors=True)
        return
    for node in cluster["nodes"]:
        mend_packets(cluster, node)
        stop_node_agents(node)
    for control in controls(cluster):
        _stop(control.get("pid"), control.get("started"))
    for member in cluster.get("etcd", {}).get("members", []):
        _stop(member.get("pid"), member.get("started"))
    _stop_strays(directory)
    _remove_containers([node["uuid"] for node in cluster["nodes"]])
    for node in cluster["nodes"]:
        if cluster["backend"] == "zfs" and "pool_image" in node:
            destroy_pool(
                FilePool(
                    name=node["pool"],
                    image=node["pool_image"],
                    mountpoint=node["pool_mountpoint"],
                )
            )
    shutil.rmtree(directory, ignore_errors=True)


def logged_answering(node: dict[str, Any], name: str) -> dict[str, Any] | None:
    """
    The end message of the ``flocker:node:container:answering`` action
    that ``node``'s container agent logged for application ``name`` (how
    long a moved application was unavailable), or ``None`` yet.
    """
    path = os.path.join(node["log_dir"], "flocker-container-agent.log")
    tasks, found = set(), None
    try:
        with open(path) as handle:
            for line in handle:
                if '"flocker:node:container:answering"' not in line:
                    continue
                message = json.loads(line)
                if message["action_status"] == "started":
                    if message["name"] == name:
                        tasks.add(message["task_uuid"])
                elif message["task_uuid"] in tasks:
                    found = message
    except FileNotFoundError:
        return None
    return found


def status(directory: str) -> list[str]:
    """Lines saying what of the cluster in ``directory`` runs."""
    cluster = load(directory)
    lines = [
        f"control  {control['api_url']}  agent port {control['agent_port']}  "
        f"{'running' if _ours(control.get('pid'), control.get('started')) else 'STOPPED'}"
        for control in controls(cluster)
    ]
    for member in cluster.get("etcd", {}).get("members", []):
        lines.append(
            f"etcd     {member['client_url']}  "
            f"{'running' if _ours(member.get('pid'), member.get('started')) else 'STOPPED'}"
        )
    try:
        reported = {n["uuid"] for n in api_request(cluster, "GET", "/v1/state/nodes")}
    except OSError:
        reported = set()
    for node in cluster["nodes"]:
        running = all(_agent_running(node, kind) for kind in node["pids"])
        lines.append(
            f"node     {node['address']}  {node['uuid']}  pool {node['pool']}  "
            f"agents {'running' if running else 'STOPPED'}  "
            f"{'reported' if node['uuid'] in reported else 'not reported'}"
        )
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``admin/lab``."""
    parser = argparse.ArgumentParser(prog="admin/lab", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start a local cluster")
    start.add_argument("--nodes", type=int, default=2)
    start.add_argument("--dir", required=True)
    start.add_argument("--backend", choices=["zfs", "directory"], default="zfs")
    start.add_argument(
        "--network",
        default=ROUTABLE_NETWORK,
        help="node addresses are NETWORK11, NETWORK12, … (default: %(default)s)",
    )
    start.add_argument(
        "--fence-after", type=float, help="the agents' fence-after, in seconds"
    )
    start.add_argument(
        "--failover-after",
        type=float,
        help="the control service's --failover-after, in seconds",
    )
    start.add_argument(
        "--control",
        type=int,
        default=1,
        metavar="N",
        help="how many control instances (more than one needs --store etcd)",
    )
    start.add_argument(
        "--store",
        choices=["file", "etcd"],
        default="file",
        help="the configuration store: one control service's file, or an etcd "
        "cluster of --control members shared by every instance",
    )
    stop_control_parser = commands.add_parser(
        "stop-control",
        help="stop control instance N (--kill: SIGKILL)",
    )
    stop_control_parser.add_argument("instance", type=int, metavar="N")
    stop_control_parser.add_argument("--dir", required=True)
    stop_control_parser.add_argument("--kill", action="store_true")
    start_control_parser = commands.add_parser(
        "start-control", help="start control instance N again"
    )
    start_control_parser.add_argument("instance", type=int, metavar="N")
    start_control_parser.add_argument("--dir", required=True)
    for name, text in (("status", "what runs"), ("down", "stop and remove everything")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--dir", required=True)
    stop = commands.add_parser(
        "stop-node",
        help="stop a node's dataset and container agents (--kill: SIGKILL, as a power cut)",
        description=(
            "Stop node N's dataset and container agents: SIGTERM, or SIGKILL "
            "with --kill.  Its pool, containers and last reported state stay."
        ),
    )
    stop.add_argument("node", type=int, metavar="N", help="the node's number, from 1")
    stop.add_argument("--dir", required=True)
    how = stop.add_mutually_exclusive_group()
    how.add_argument(
        "--kill", action="store_true", help="SIGKILL the agents instead of SIGTERM"
    )
    how.add_argument(
        "--power-cut",
        action="store_true",
        help="SIGKILL the agents and the node's containers and drop its packets",
    )
    cut = commands.add_parser(
        "cut-node",
        help="drop every packet to or from a node's address (a partition)",
        description=(
            "Partition node N: its agents and containers run on, but every "
            "packet to or from its address on lo is dropped until start-node."
        ),
    )
    cut.add_argument("node", type=int, metavar="N", help="the node's number, from 1")
    cut.add_argument("--dir", required=True)
    again = commands.add_parser(
        "start-node",
        help="start a stopped node's dataset and container agents again",
        description="Start those of node N's agents that are not running.",
    )
    again.add_argument("node", type=int, metavar="N", help="the node's number, from 1")
    again.add_argument("--dir", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``admin/lab``: up, status, down, stop-node, cut-node or start-node."""
    options = build_parser().parse_args(argv)
    try:
        if options.command == "up":
            cluster = up(
                options.dir,
                options.nodes,
                options.backend,
                network=options.network,
                fence_after=options.fence_after,
                failover_after=options.failover_after,
                control_instances=options.control,
                store=options.store,
            )
            print(f"local cluster up: {len(cluster['nodes'])} nodes, API {cluster['control']['api_url']}")
            print(f"cluster file: {os.path.join(cluster['dir'], CLUSTER_FILE)}")
        elif options.command == "stop-control":
            stop_control(options.dir, options.instance, options.kill)
            how = "killed (SIGKILL)" if options.kill else "stopped"
            print(f"control instance {options.instance} {how}")
        elif options.command == "start-control":
            control = start_control_instance(options.dir, options.instance)
            print(f"control instance {options.instance} running ({control['api_url']})")
        elif options.command == "status":
            print("\n".join(status(options.dir)))
        elif options.command == "stop-node":
            node = stop_node(options.dir, options.node, options.kill, options.power_cut)
            if options.power_cut:
                print(
                    f"node {options.node} ({node['address']}): power cut (agents "
                    "and containers SIGKILLed, its packets dropped)"
                )
            else:
                how = "killed (SIGKILL)" if options.kill else "stopped"
                print(f"node {options.node} ({node['address']}): dataset and container agents {how}")
        elif options.command == "cut-node":
            node = cut_node(options.dir, options.node)
            print(f"node {options.node} ({node['address']}): cut off (its packets dropped)")
        elif options.command == "start-node":
            node = start_node(options.dir, options.node)
            pids = ", ".join(f"{kind} {pid}" for kind, pid in node["pids"].items())
            print(f"node {options.node} ({node['address']}): agents running ({pids})")
        else:
            down(options.dir)
            print(f"local cluster in {os.path.abspath(options.dir)} stopped and removed")
    except LabError as error:
        print(f"admin/lab: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
