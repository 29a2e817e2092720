"""
Acceptance tests: the real ``flocker`` command (``.venv/bin/flocker``, a
separate process) against a real local cluster (``admin/lab``, directory
backend, real Docker): datasets and applications created, listed, moved
with ``--wait``, resized and removed; ``--json`` parsed; and bad input,
missing certificates and an unreachable control service each giving one
line on stderr, the documented exit code and no change to the cluster.
"""

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from flocker.ca.testtools import make_test_cluster_credentials
from flocker.runtime.testimages import COUNTER_IMAGE, ensure_counter_image
from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

pytestmark = pytest.mark.acceptance

#: The console script, installed next to the interpreter running the tests.
FLOCKER = Path(sys.executable).parent / "flocker"


def module_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[dict[str, Any]]:
    """
    A two-node local cluster (directory backend) for a module's tests, in
    a temporary directory called ``name``; removed afterwards.
    """
    assert FLOCKER.exists(), (
        f"{FLOCKER} is missing: run .venv/bin/pip install -e . --no-deps"
    )
    directory = str(tmp_path_factory.mktemp(name))
    try:
        yield lab.up(directory, nodes=2, backend="directory")
    finally:
        lab.down(directory)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One two-node local cluster (directory backend) for the whole module."""
    yield from module_cluster(tmp_path_factory, "cli-lab")


def flocker(
    cluster: dict[str, Any],
    *argv: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``flocker ARGV`` with FLOCKER_CLUSTER naming the cluster."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOCKER_")}
    environment["FLOCKER_CLUSTER"] = os.path.join(cluster["dir"], lab.CLUSTER_FILE)
    environment.update(env or {})
    return subprocess.run(
        [str(FLOCKER), *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def ok(cluster: dict[str, Any], *argv: str) -> str:
    """Run ``flocker ARGV``, which must succeed; its stdout."""
    result = flocker(cluster, *argv)
    assert result.returncode == 0, result
    return result.stdout


def as_json(cluster: dict[str, Any], *argv: str) -> Any:
    """Run ``flocker --json ARGV``; the JSON it printed."""
    return json.loads(ok(cluster, "--json", *argv))


def configured_datasets(cluster: dict[str, Any]) -> Any:
    """GET /v1/configuration/datasets."""
    return lab.api_request(cluster, "GET", "/v1/configuration/datasets")


def counter(address: str, port: int, text: str) -> int | None:
    """One write to the counter application: its count, or None."""
    try:
        with urllib.request.urlopen(
            f"http://{address}:{port}/?{text}", timeout=2
        ) as reply:
            return int(reply.read().decode().strip())
    except (OSError, ValueError):
        return None


def test_datasets(cluster: dict[str, Any]) -> None:
    """
    ``datasets create --wait`` mounts a new dataset on its node; ``move
    --wait`` returns once the other node has it, with its files; ``resize``
    and ``rm`` change the configuration; ``ls`` shows each step.
    """
    first, second = cluster["nodes"]
    name = f"data-{uuid4().hex[:8]}"
    created = flocker(
        cluster,
        "--json",
        "datasets",
        "create",
        "--node",
        first["address"],
        "--size",
        "1G",
        "--name",
        name,
        "--wait",
        "--timeout",
        "120",
    )
    assert created.returncode == 0, created
    view = json.loads(created.stdout)
    assert (view["name"], view["maximum_size"], view["state"]) == (
        name,
        2**30,
        "mounted",
    )
    assert view["primary"] == first["uuid"]
    assert f"mounted on {first['address']}" in created.stderr
    Path(view["path"], "hello.txt").write_text("kept across the move")

    table = ok(cluster, "datasets", "ls")
    header, *rows = table.splitlines()
    assert header.split() == ["DATASET", "NAME", "SIZE", "NODE", "STATE", "PATH"]
    [row] = [r.split() for r in rows if r.split()[1] == name]
    assert row == [
        view["dataset_id"],
        name,
        "1G",
        first["address"],
        "mounted",
        view["path"],
    ]

    moved = flocker(
        cluster,
        "datasets",
        "move",
        name,
        "--to",
        second["address"],
        "--wait",
        "--timeout",
        "120",
    )
    assert moved.returncode == 0, moved
    assert (
        f"moved dataset {view['dataset_id']} ({name}) on {second['address']}"
        in moved.stdout
    )
    assert "waiting for dataset" in moved.stderr
    assert moved.stderr.splitlines()[-1].endswith("s")
    [after] = [v for v in as_json(cluster, "datasets", "ls") if v["name"] == name]
    assert (after["primary"], after["state"]) == (second["uuid"], "mounted")
    assert Path(after["path"], "hello.txt").read_text() == "kept across the move"

    resized = as_json(cluster, "datasets", "resize", view["dataset_id"][:8], "2G")
    assert resized["maximum_size"] == 2 * 2**30

    assert (
        ok(cluster, "datasets", "rm", name) == f"deleted dataset {view['dataset_id']}\n"
    )
    [gone] = [
        d for d in configured_datasets(cluster) if d["dataset_id"] == view["dataset_id"]
    ] or [{"deleted": True}]
    assert gone["deleted"]


def test_apps(cluster: dict[str, Any]) -> None:
    """
    ``apps deploy --wait`` runs the counter with its dataset; ``apps move
    --wait`` returns once it runs on the other node, its data with it;
    ``apps ls`` shows it; ``apps rm`` removes it and leaves the dataset.
    """
    import docker

    client = docker.from_env()
    try:
        ensure_counter_image(client)
    finally:
        client.close()
    first, second = cluster["nodes"]
    name = f"counter-{uuid4().hex[:8]}"
    dataset = f"{name}-data"
    ok(
        cluster,
        "datasets",
        "create",
        "--node",
        first["uuid"],
        "--name",
        dataset,
        "--wait",
    )
    port = lab._free_port([n["address"] for n in cluster["nodes"]])
    deployed = flocker(
        cluster,
        "apps",
        "deploy",
        name,
        "--image",
        COUNTER_IMAGE,
        "--node",
        first["address"],
        "--port",
        f"{port}:80",
        "--volume",
        f"{dataset}:/data",
        "--env",
        "GREETING=hi",
        "--wait",
        "--timeout",
        "180",
    )
    assert deployed.returncode == 0, deployed
    # Running; its health (starting or healthy by now) may follow.
    assert deployed.stdout.startswith(
        f"deployed application {name} on {first['address']}, running"
    )
    assert (
        wait_for(lambda: counter(first["address"], port, "one"), 60, "the counter") == 1
    )

    [view] = [v for v in as_json(cluster, "apps", "ls") if v["name"] == name]
    assert view["node"] == first["uuid"]
    assert view["running"] is True
    assert view["image"] == COUNTER_IMAGE
    assert view["ports"] == [{"external": port, "internal": 80}]
    assert view["environment"] == {"GREETING": "hi"}
    assert [(v["name"], v["mountpoint"]) for v in view["volumes"]] == [
        (dataset, "/data")
    ]
    [row] = [
        r.split()
        for r in ok(cluster, "apps", "ls").splitlines()
        if r.startswith(name + " ")
    ]
    assert row[:3] == [name, first["address"], COUNTER_IMAGE]
    assert row[3].startswith("running")
    assert row[-2:] == [f"{port}->80", f"{dataset}:/data"]

    moved = flocker(
        cluster,
        "apps",
        "move",
        name,
        "--to",
        second["address"],
        "--wait",
        "--timeout",
        "180",
    )
    assert moved.returncode == 0, moved
    assert moved.stdout.startswith(f"moved application {name} on {second['address']}, running")
    assert (
        f"application {name} running on {second['address']}: running after"
        in moved.stderr
    )
    assert (
        wait_for(
            lambda: counter(second["address"], port, "two"), 60, "the moved counter"
        )
        == 2
    )
    [data] = [v for v in as_json(cluster, "datasets", "ls") if v["name"] == dataset]
    assert data["primary"] == second["uuid"]

    assert ok(cluster, "apps", "rm", name) == f"removed application {name}\n"
    assert name not in [v["name"] for v in as_json(cluster, "apps", "ls")]
    ok(cluster, "datasets", "rm", dataset)


def bad_input_cases(
    cluster: dict[str, Any], tmp_path: Path
) -> dict[str, tuple[list[str], dict[str, str], int, str]]:
    """(argv, env, exit code, what the error says) for each kind of bad input."""
    node = cluster["nodes"][0]["address"]
    certificates = cluster["certificates"]
    closed = lab._free_port([lab.CONTROL_HOST])
    other = tmp_path / "other-cluster"
    other.mkdir()
    foreign = make_test_cluster_credentials(other).user_directories["alice"]
    explicit = [
        "--control-service",
        lab.CONTROL_HOST,
        "--port",
        str(cluster["control"]["api_port"]),
    ]
    return {
        "unknown dataset": (
            ["datasets", "move", "no-such-dataset", "--to", node],
            {},
            1,
            "unknown dataset 'no-such-dataset'",
        ),
        "unknown dataset rm": (
            ["datasets", "rm", "no-such-dataset"],
            {},
            1,
            "unknown dataset",
        ),
        "bad size": (
            ["datasets", "create", "--node", node, "--size", "1X"],
            {},
            1,
            "bad size '1X'",
        ),
        "too small": (
            ["datasets", "create", "--node", node, "--size", "1K"],
            {},
            1,
            "at least 1M",
        ),
        "unknown node": (
            ["datasets", "create", "--node", "10.9.9.9"],
            {},
            1,
            "unknown node '10.9.9.9'",
        ),
        "bad port": (
            ["apps", "deploy", "x", "--image", "i", "--node", node, "--port", "80"],
            {},
            1,
            "bad --port '80'",
        ),
        "usage": (["datasets", "create", "--size", "1G"], {}, 2, "required: --node"),
        "no cluster": (
            ["datasets", "ls"],
            {"FLOCKER_CLUSTER": ""},
            2,
            "no cluster given",
        ),
        "missing certificate": (
            [
                "datasets",
                "create",
                "--node",
                node,
                "--cert",
                str(tmp_path / "missing.crt"),
            ],
            {},
            3,
            f"certificate file {tmp_path / 'missing.crt'} does not exist",
        ),
        "missing cluster file": (
            ["--cluster", str(tmp_path / "none.json"), "nodes"],
            {},
            3,
            "does not exist",
        ),
        "control service down": (
            [
                "--control-service",
                lab.CONTROL_HOST,
                "--port",
                str(closed),
                "--cacert",
                certificates["ca"],
                "--cert",
                certificates["user_cert"],
                "--key",
                certificates["user_key"],
                "datasets",
                "create",
                "--node",
                node,
            ],
            {},
            3,
            f"cannot reach the control service at https://{lab.CONTROL_HOST}:{closed}",
        ),
        "foreign cluster": (
            [
                *explicit,
                "--cacert",
                str(foreign / "cluster.crt"),
                "--cert",
                str(foreign / "alice.crt"),
                "--key",
                str(foreign / "alice.key"),
                "datasets",
                "create",
                "--node",
                node,
            ],
            {},
            3,
            "TLS handshake failed",
        ),
        "wrong host name": (
            [
                "--control-service",
                "localhost",
                "--port",
                str(cluster["control"]["api_port"]),
                "--cacert",
                certificates["ca"],
                "--cert",
                certificates["user_cert"],
                "--key",
                certificates["user_key"],
                "nodes",
            ],
            {},
            3,
            "certificate is not for localhost",
        ),
    }


def live_datasets(cluster: dict[str, Any]) -> list[Any]:
    """
    The configured datasets not marked deleted (the control service drops
    deleted ones by itself once their copies are gone, which an earlier
    test's deletions may still be waiting for).
    """
    return [d for d in configured_datasets(cluster) if not d["deleted"]]


def test_bad_input(cluster: dict[str, Any], tmp_path: Path) -> None:
    """
    Each kind of bad input is one ``flocker: error:`` line on stderr, the
    documented exit code, nothing on stdout, and no configuration change.
    """
    failures = []
    for label, (argv, env, code, says) in bad_input_cases(cluster, tmp_path).items():
        before = live_datasets(cluster)
        result = flocker(cluster, *argv, env=env, timeout=60)
        after = live_datasets(cluster)
        lines = result.stderr.splitlines()
        if not (
            result.returncode == code
            and result.stdout == ""
            and len(lines) == 1
            and lines[0].startswith("flocker: error: ")
            and says in lines[0]
            and before == after
        ):
            failures.append((label, result.returncode, result.stdout, result.stderr))
    assert failures == []


def test_wait_timeout(cluster: dict[str, Any]) -> None:
    """A --wait that cannot finish in time exits 4 with one error line; the change stays."""
    name = f"slow-{uuid4().hex[:8]}"
    result = flocker(
        cluster,
        "datasets",
        "create",
        "--node",
        cluster["nodes"][0]["address"],
        "--name",
        name,
        "--wait",
        "--timeout",
        "0.001",
    )
    if result.returncode == 0:  # mounted within the first look: nothing to time out
        pytest.fail(
            f"the dataset was mounted at once; cannot test the timeout: {result}"
        )
    assert result.returncode == 4, result
    assert result.stderr.splitlines()[-1].startswith(
        "flocker: error: timed out after 0.001s"
    )
    assert name in [
        d.get("metadata", {}).get("name") for d in configured_datasets(cluster)
    ]
    ok(cluster, "datasets", "rm", name)


def test_help_documents_exit_codes(cluster: dict[str, Any]) -> None:
    """``flocker --help`` lists the exit codes."""
    text = ok(cluster, "--help")
    for line in (
        "0  success",
        "1  the cluster refused",
        "2  usage error",
        "3  the control service cannot be reached",
        "4  a --wait timed out",
    ):
        assert line in text
