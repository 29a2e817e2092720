"""
Acceptance tests: on a real local cluster, the container agent probes its
applications' health checks and reports them; an update of an
application's specification is carried out on its data, confirmed once the
new instance is healthy, and rolled back by the control service when it
turns unhealthy instead.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest

from flocker.cli.test.test_acceptance_cli import as_json, flocker
from flocker.runtime.testimages import COUNTER_IMAGE
from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

from .test_acceptance_containers import Writer, deploy_counter, logged_writes
from .test_acceptance_datasets import api

pytestmark = pytest.mark.acceptance

#: A quick health check on the counter: each probe is one more logged line,
#: answered 200 while the counter can write its file and 500 once it cannot.
QUICK_HEALTH = {
    "kind": "http",
    "port": 80,
    "path": "/?health",
    "interval": 0.5,
    "timeout": 2.0,
    "retries": 2,
    "start_period": 3.0,
}


def _configured(cluster: dict[str, Any], name: str) -> dict[str, Any]:
    """The application's entry in GET /v1/configuration/containers."""
    (found,) = [
        c for c in api(cluster, "GET", "/v1/configuration/containers") if c["name"] == name
    ]
    return dict(found)


def _health(cluster: dict[str, Any], name: str) -> str | None:
    """The health GET /v1/state/containers reports for the application, if any."""
    for container in api(cluster, "GET", "/v1/state/containers"):
        if container["name"] == name:
            health: str | None = container.get("health")
            return health
    return None


def _logged_update_failures(cluster: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The ``flocker:control:update_failed`` messages the control services logged for ``name``."""
    found = []
    for control in lab.controls(cluster):
        for root, _, files in os.walk(control["log_dir"]):
            for filename in files:
                with open(os.path.join(root, filename), errors="replace") as handle:
                    for line in handle:
                        if '"flocker:control:update_failed"' not in line:
                            continue
                        message = json.loads(line)
                        if message.get("name") == name:
                            found.append(message)
    return found


def _updated(
    cluster: dict[str, Any], name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """POST an update of the application's specification; the configured container."""
    reply: dict[str, Any] = api(cluster, "POST", f"/v1/configuration/containers/{name}", body)
    return reply


def test_an_update_on_data_is_confirmed_healthy_and_a_bad_one_rolls_back(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    A counter with a dataset and an HTTP health check is reported healthy.
    An update of its environment runs the new revision on the same data
    under a steady write load: every acknowledged write is still there and
    no write failed (the routers hold connections while the application
    restarts), and it is confirmed once healthy.  ``flocker apps rollback``
    returns to the first specification.  An update that makes the health
    check fail is rolled back by the control service by itself: the
    configuration returns to the previous specification with
    ``update_failed`` saying why, the control service logs it, and the
    counter answers again on its data; there is then nothing to roll back
    by hand.
    """
    cluster = make_lab(nodes=1)
    (node,) = cluster["nodes"]
    name, dataset_id, port = deploy_counter(cluster, node)
    _updated(cluster, name, {"health": QUICK_HEALTH})
    wait_for(lambda: _health(cluster, name) == "healthy", 60, f"{name} to be healthy")
    assert _configured(cluster, name)["health"]["path"] == "/?health"

    writer = Writer(node["address"], port, timeout=30.0)
    writer.start()
    try:
        wait_for(lambda: len(writer.acknowledged) >= 20, 60, "writes before the update")
        started = time.monotonic()
        updated = _updated(cluster, name, {"environment": {"FLOCKER_REVISION": "good"}})
        assert updated["updating"] is True and updated["previous_image"] == COUNTER_IMAGE
        revision = updated["revision"]
        wait_for(
            lambda: "updating" not in _configured(cluster, name),
            120,
            "the update to be confirmed healthy",
        )
        confirmed = time.monotonic() - started
        before = len(writer.acknowledged)
        wait_for(lambda: len(writer.acknowledged) >= before + 20, 60, "writes after the update")
    finally:
        writer.stopping.set()
        writer.join()
    written = logged_writes(cluster, dataset_id, node)
    missing = [w for w in writer.acknowledged if w not in written]
    assert missing == [], f"acknowledged writes lost by the update: {missing[:5]}"
    print(
        f"\nupdate confirmed after {confirmed:.2f} s; longest gap between "
        f"acknowledged writes {writer.longest_gap():.2f} s, longest wait "
        f"{writer.longest_wait():.2f} s, failed writes {writer.failures}"
    )
    assert writer.failures == [], "the update cost the client errors, not only latency"

    back = as_json(cluster, "apps", "rollback", name)
    assert back["revision"] == revision + 1
    assert "FLOCKER_REVISION" not in (back.get("environment") or {})
    wait_for(lambda: _health(cluster, name) == "healthy", 60, "the first specification again")
    revision += 1

    bad = _updated(cluster, name, {"environment": {"COUNTER_FILE": "/nowhere/requests.log"}})
    assert bad["revision"] == revision + 1
    rolled_back = wait_for(
        lambda: _configured(cluster, name).get("update_failed"),
        120,
        "the bad update to be rolled back",
    )
    assert "unhealthy" in str(rolled_back)
    configured = _configured(cluster, name)
    assert "COUNTER_FILE" not in configured.get("environment", {})
    assert configured["revision"] == revision + 2
    wait_for(lambda: _health(cluster, name) == "healthy", 60, "the rolled-back revision to be healthy")
    views = {v["name"]: v for v in as_json(cluster, "apps", "ls")}
    assert views[name]["update_failed"] == rolled_back

    refused = flocker(cluster, "apps", "rollback", name)
    assert refused.returncode == 1 and "no previous specification" in refused.stderr
    assert _logged_update_failures(cluster, name), "no update_failed message in the control logs"


def test_a_health_check_that_never_passes_is_reported_unhealthy_with_its_reason(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    An application created with an HTTP health check its server answers
    with 404 is reported ``unhealthy`` after its start period, with the
    status in ``health_reason``; nothing rolls it back, since it was never
    updated.
    """
    cluster = make_lab(nodes=1)
    (node,) = cluster["nodes"]
    name = f"sick-{uuid4().hex[:8]}"
    port = lab._free_port([node["address"]])
    api(
        cluster,
        "POST",
        "/v1/configuration/containers",
        {
            "node_uuid": node["uuid"],
            "name": name,
            "image": COUNTER_IMAGE,
            "ports": [{"internal": 80, "external": port}],
            "health": dict(QUICK_HEALTH, path="/no-such-page"),
        },
    )
    wait_for(lambda: _health(cluster, name) == "unhealthy", 120, f"{name} to be unhealthy")
    (state,) = [c for c in api(cluster, "GET", "/v1/state/containers") if c["name"] == name]
    assert "404" in state["health_reason"]
    assert "update_failed" not in _configured(cluster, name)
