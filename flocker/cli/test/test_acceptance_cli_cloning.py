"""
Acceptance tests: the real ``flocker`` command (``.venv/bin/flocker``, a
separate process) against a real local cluster (``admin/lab``, directory
backend, real Docker) for snapshots, clones, rollback and environments:
the files a snapshot holds come back in a clone and after a rollback; an
environment's copies of the counter application each answer on their own
port with the original's data, a reset copy starts afresh; and bad input
is one line on stderr, the documented exit code and no change.
"""

import json
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from flocker.runtime.testimages import COUNTER_IMAGE, ensure_counter_image
from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

from .test_acceptance_cli import (
    as_json,
    counter,
    flocker,
    module_cluster,
    ok,
)

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One two-node local cluster (directory backend) for the whole module."""
    yield from module_cluster(tmp_path_factory, "cli-cloning-lab")


def mounted_path(cluster: dict[str, Any], dataset_id: str) -> Path:
    """Where its primary mounted the dataset, per GET /v1/state/datasets."""
    [configured] = [
        d
        for d in lab.api_request(cluster, "GET", "/v1/configuration/datasets")
        if d["dataset_id"] == dataset_id
    ]
    [state] = [
        s
        for s in lab.api_request(cluster, "GET", "/v1/state/datasets")
        if s["dataset_id"] == dataset_id and s["primary"] == configured["primary"]
    ]
    return Path(state["path"])


def everything(cluster: dict[str, Any], dataset_ids: Iterable[str] = ()) -> Any:
    """The configuration, environments and the datasets' snapshots, to compare."""
    return (
        lab.api_request(cluster, "GET", "/v1/configuration/datasets"),
        lab.api_request(cluster, "GET", "/v1/configuration/containers"),
        lab.api_request(cluster, "GET", "/v1/environments"),
        [
            lab.api_request(cluster, "GET", f"/v1/datasets/{d}/snapshots")
            for d in dataset_ids
        ],
    )


def test_snapshot_clone_rollback(cluster: dict[str, Any]) -> None:
    """
    A snapshot keeps a dataset's files as they were: a clone of it has them
    while the original changes on, and a rollback brings them back.
    """
    first = cluster["nodes"][0]
    name = f"notes-{uuid4().hex[:8]}"
    view = as_json(
        cluster,
        "datasets",
        "create",
        "--node",
        first["address"],
        "--name",
        name,
        "--wait",
        "--timeout",
        "120",
    )
    dataset_id = view["dataset_id"]
    path = mounted_path(cluster, dataset_id)
    assert str(path) == view["path"]
    (path / "notes.txt").write_text("monday's notes\n")

    created = ok(cluster, "snapshots", "create", name, "monday")
    assert created == f"created snapshot monday of dataset {dataset_id} ({name})\n"
    [listed] = as_json(cluster, "snapshots", "ls", name)
    assert listed["name"] == "monday"
    assert (
        ok(cluster, "snapshots", "ls", dataset_id[:8])
        .splitlines()[1]
        .startswith("monday  ")
    )

    (path / "notes.txt").write_text("tuesday's regrettable notes\n")

    cloned = flocker(
        cluster,
        "--json",
        "clone",
        name,
        "monday",
        "--name",
        f"{name}-monday",
        "--wait",
        "--timeout",
        "120",
    )
    assert cloned.returncode == 0, cloned
    clone = json.loads(cloned.stdout)
    assert (clone["name"], clone["state"], clone["primary"]) == (
        f"{name}-monday",
        "mounted",
        first["uuid"],
    )
    assert clone["origin"] == {"dataset_id": dataset_id, "snapshot": "monday"}
    clone_path = mounted_path(cluster, clone["dataset_id"])
    assert (clone_path / "notes.txt").read_text() == "monday's notes\n"
    assert (path / "notes.txt").read_text() == "tuesday's regrettable notes\n"

    rolled = flocker(
        cluster, "snapshots", "rollback", name, "monday", "--wait", "--timeout", "120"
    )
    assert rolled.returncode == 0, rolled
    assert rolled.stdout == (
        f"rolled back dataset {dataset_id} ({name}) to snapshot monday\n"
    )
    assert "rolled back on" in rolled.stderr
    after = mounted_path(cluster, dataset_id)
    assert (after / "notes.txt").read_text() == "monday's notes\n"
    assert (clone_path / "notes.txt").read_text() == "monday's notes\n"

    # Bad input: one line, the documented exit code, nothing changed.
    unknown_environment = f"nope-{uuid4().hex[:6]}"
    cases = {
        "unknown snapshot rollback": (
            ["snapshots", "rollback", name, "sunday", "--wait"],
            1,
            "no snapshot 'sunday'",
        ),
        "unknown snapshot clone": (
            ["clone", name, "sunday"],
            1,
            "no snapshot 'sunday'",
        ),
        "unknown snapshot rm": (["snapshots", "rm", name, "sunday"], 1, "sunday"),
        "bad snapshot name": (
            ["snapshots", "create", name, "flocker-mine"],
            1,
            "bad snapshot name 'flocker-mine'",
        ),
        "bad snapshot name characters": (
            ["snapshots", "create", name, "no spaces"],
            1,
            "bad snapshot name 'no spaces'",
        ),
        "snapshot exists": (
            ["snapshots", "create", name, "monday"],
            1,
            "already has a snapshot 'monday'",
        ),
        "unknown dataset": (
            ["snapshots", "ls", "no-such-dataset"],
            1,
            "unknown dataset 'no-such-dataset'",
        ),
        "unknown environment ls": (
            ["env", "ls", unknown_environment],
            1,
            f"unknown environment '{unknown_environment}'",
        ),
        "unknown environment reset": (
            ["env", "reset", unknown_environment, "1", "--wait"],
            1,
            unknown_environment,
        ),
        "unknown environment rm": (
            ["env", "rm", unknown_environment],
            1,
            f"unknown environment '{unknown_environment}'",
        ),
        "usage": (["snapshots", "create", name], 2, "required: NAME"),
    }
    failures = []
    for label, (argv, code, says) in cases.items():
        before = everything(cluster, [dataset_id])
        result = flocker(cluster, *argv, timeout=60)
        lines = result.stderr.splitlines()
        if not (
            result.returncode == code
            and result.stdout == ""
            and len(lines) == 1
            and lines[0].startswith("flocker: error: ")
            and says in lines[0]
            and everything(cluster, [dataset_id]) == before
        ):
            failures.append((label, result.returncode, result.stdout, result.stderr))
    assert failures == []

    # The clone is made from monday: the snapshot is kept until it goes.
    refused = flocker(cluster, "snapshots", "rm", name, "monday")
    assert refused.returncode == 1 and "has clones" in refused.stderr, refused
    ok(cluster, "datasets", "rm", clone["dataset_id"])
    removed = ok(cluster, "snapshots", "rm", name, "monday")
    assert removed == f"deleted snapshot monday of dataset {dataset_id} ({name})\n"
    assert as_json(cluster, "snapshots", "ls", name) == []


def copy_ports(environment: dict[str, Any]) -> dict[str, int]:
    """Copy name → the external port of its (only) application."""
    return {
        c["name"]: c["applications"][0]["ports"][0]["external"]
        for c in environment["copies"]
    }


def test_environment(cluster: dict[str, Any]) -> None:
    """
    ``env clone --wait`` runs two copies of the counter on its node, each on
    its own port, each starting from the original's count and counting on
    its own; ``env reset --wait`` starts a copy afresh; ``env rm`` removes
    the copies and leaves the original.
    """
    import docker

    client = docker.from_env()
    try:
        ensure_counter_image(client)
    finally:
        client.close()
    first = cluster["nodes"][0]
    address = first["address"]
    app = f"count-{uuid4().hex[:6]}"
    env = f"stg-{uuid4().hex[:6]}"
    ok(
        cluster,
        "datasets",
        "create",
        "--node",
        address,
        "--name",
        f"{app}-data",
        "--wait",
        "--timeout",
        "120",
    )
    port = lab._free_port([n["address"] for n in cluster["nodes"]])
    ok(
        cluster,
        "apps",
        "deploy",
        app,
        "--image",
        COUNTER_IMAGE,
        "--node",
        address,
        "--port",
        f"{port}:80",
        "--volume",
        f"{app}-data:/data",
        "--wait",
        "--timeout",
        "180",
    )
    assert wait_for(lambda: counter(address, port, "one"), 60, "the counter") == 1
    assert counter(address, port, "two") == 2
    assert counter(address, port, "three") == 3

    cloned = flocker(
        cluster,
        "--json",
        "env",
        "clone",
        env,
        "--apps",
        app,
        "--copies",
        "2",
        "--wait",
        "--timeout",
        "180",
    )
    assert cloned.returncode == 0, cloned
    assert f"environment {env}'s 2 copies running" in cloned.stderr
    [environment] = json.loads(cloned.stdout)
    assert [
        (a["name"], a["state"], a["node_address"])
        for c in environment["copies"]
        for a in c["applications"]
    ] == [
        (f"{app}-{env}-1", "running", address),
        (f"{app}-{env}-2", "running", address),
    ]
    ports = copy_ports(environment)
    assert len({port, ports["1"], ports["2"]}) == 3

    # Each copy has the original's three requests and answers on its own port.
    for copy in ("1", "2"):
        assert (
            wait_for(
                partial(counter, address, ports[copy], f"c{copy}"), 60, f"copy {copy}"
            )
            == 4
        )
    assert counter(address, ports["1"], "more") == 5
    assert counter(address, ports["1"], "more") == 6
    assert counter(address, port, "original") == 4

    table = ok(cluster, "env", "ls", env).splitlines()
    assert table[0].split() == [
        "ENVIRONMENT",
        "COPY",
        "APPLICATION",
        "NODE",
        "STATE",
        "PORTS",
    ]
    assert [row.split() for row in table[1:]] == [
        [env, "1", f"{app}-{env}-1", address, "running", f"{ports['1']}->80"],
        [env, "2", f"{app}-{env}-2", address, "running", f"{ports['2']}->80"],
    ]

    reset = flocker(cluster, "env", "reset", env, "1", "--wait", "--timeout", "180")
    assert reset.returncode == 0, reset
    assert reset.stdout.splitlines()[0] == (
        f"reset copy 1 of environment {env} (1 datasets cloned afresh)"
    )
    # Copy 1 starts again from the environment's snapshot (three requests).
    assert wait_for(lambda: counter(address, ports["1"], "fresh"), 60, "copy 1") == 4
    assert counter(address, ports["2"], "untouched") == 5

    removed = ok(cluster, "env", "rm", env)
    assert removed == f"removed environment {env}\n"
    assert env not in [e["name"] for e in as_json(cluster, "env", "ls")]
    names = [a["name"] for a in as_json(cluster, "apps", "ls")]
    assert app in names
    assert f"{app}-{env}-1" not in names and f"{app}-{env}-2" not in names
    assert counter(address, port, "still") == 5
    ok(cluster, "apps", "rm", app)
