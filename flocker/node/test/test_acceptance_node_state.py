"""
Acceptance test: a real one-node local cluster (``admin/lab``, ZFS) says
through ``GET /v1/state/nodes`` that its node converges and how large its
pool is, and the control service refuses a dataset larger than that pool.
"""

from __future__ import annotations

import json
import urllib.error
from typing import Any

import pytest

from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

pytestmark = pytest.mark.acceptance

MIB = 1024 * 1024


def node_entry(cluster: dict[str, Any], node_uuid: str) -> dict[str, Any] | None:
    """The node's entry in ``/v1/state/nodes`` once it shows its pool and convergence."""
    for entry in lab.api_request(cluster, "GET", "/v1/state/nodes"):
        if entry["uuid"] == node_uuid and "pool" in entry and "last_converged" in entry:
            return entry
    return None


def test_a_node_reports_its_convergence_and_pool(make_lab: Any) -> None:
    """
    The node's dataset agent reports a successful pass, no failing change
    and its pool (the 8 GiB file less the room kept, not full); a dataset
    with a maximum size larger than that pool is refused with 409 and why,
    and a dataset that fits is created and converges with nothing failing.
    """
    cluster = make_lab(nodes=1)
    node = cluster["nodes"][0]
    entry = wait_for(lambda: node_entry(cluster, node["uuid"]), 120, "the node's pool")
    assert entry["failing_changes"] == []
    pool = entry["pool"]
    assert 6 * 1024 * MIB < pool["size"] < 8 * 1024 * MIB
    assert not pool["full"] and pool["oversized"] == []

    with pytest.raises(urllib.error.HTTPError) as refused:
        lab.api_request(
            cluster, "POST", "/v1/configuration/datasets",
            {"primary": node["uuid"], "maximum_size": 2 * pool["size"]},
        )  # fmt: skip
    assert refused.value.code == 409
    assert "cannot fit" in json.loads(refused.value.read())["description"]

    created = lab.api_request(
        cluster, "POST", "/v1/configuration/datasets",
        {"primary": node["uuid"], "maximum_size": 64 * MIB},
    )  # fmt: skip

    def exposed() -> bool:
        states = lab.api_request(cluster, "GET", "/v1/state/datasets")
        return any(s["dataset_id"] == created["dataset_id"] and s.get("path") for s in states)

    wait_for(exposed, 120, "the new dataset")
    after = wait_for(lambda: node_entry(cluster, node["uuid"]), 60, "the node's state")
    assert after["failing_changes"] == []
