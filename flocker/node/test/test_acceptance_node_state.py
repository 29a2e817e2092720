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
    """The node's entry in ``/v1/state/nodes``, or ``None`` yet."""
    for entry in lab.api_request(cluster, "GET", "/v1/state/nodes"):
        if entry["uuid"] == node_uuid:
            return dict(entry)
    return None


def test_a_converging_node_keeps_the_original_shape_and_refuses_oversized(
    make_lab: Any,
) -> None:
    """
    A node whose dataset agent converges, with room in its 8 GiB pool, is
    shown as the original API showed nodes (``uuid`` and ``host``: nothing
    wrong to say); a dataset with a maximum size larger than that pool is
    refused with 409 and why, and a dataset that fits is created and
    converges with nothing failing, the node still shown so.
    """
    cluster = make_lab(nodes=1)
    node = cluster["nodes"][0]
    entry = wait_for(lambda: node_entry(cluster, node["uuid"]), 120, "the node")
    assert entry is not None

    def refused_as_too_large() -> bool:
        # The pool is known once the agent's first discovery is reported.
        try:
            accepted = lab.api_request(
                cluster, "POST", "/v1/configuration/datasets",
                {"primary": node["uuid"], "maximum_size": 64 * 1024 * MIB,
                 "metadata": {"name": "too-large"}},
            )  # fmt: skip
        except urllib.error.HTTPError as refused:
            assert refused.code == 409
            assert "cannot fit" in json.loads(refused.read())["description"]
            return True
        # Accepted before the pool was reported: take it back, try again.
        lab.api_request(
            cluster, "DELETE", f"/v1/configuration/datasets/{accepted['dataset_id']}"
        )
        return False

    wait_for(refused_as_too_large, 60, "the oversized dataset to be refused")
    created = lab.api_request(
        cluster, "POST", "/v1/configuration/datasets",
        {"primary": node["uuid"], "maximum_size": 64 * MIB},
    )  # fmt: skip

    def exposed() -> bool:
        states = lab.api_request(cluster, "GET", "/v1/state/datasets")
        return any(s["dataset_id"] == created["dataset_id"] and s.get("path") for s in states)

    wait_for(exposed, 120, "the new dataset")
    after = wait_for(lambda: node_entry(cluster, node["uuid"]), 60, "the node's state")
    assert after is not None
    assert set(after) == {"uuid", "host"}, after
    assert set(entry) <= {"uuid", "host"}, entry
