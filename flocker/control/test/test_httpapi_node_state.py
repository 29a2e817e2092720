"""
Unit tests of what ``GET /v1/state/nodes`` shows of a node's convergence and
pool: its last successful pass, its failing changes and whether its pool is
full; in memory through ``StubTreq``, every answer checked against its schema.
"""

from __future__ import annotations

import pytest

from flocker.control import ChangeFailure, NodeState, PoolState

from .test_httpapi import DATASET, NODE_A, NODE_B, APIHarness


@pytest.fixture
def api() -> APIHarness:
    """The API over a cluster state with two nodes."""
    return APIHarness()


def test_nodes_show_failing_changes_and_a_full_pool(api: APIHarness) -> None:
    """
    A node whose dataset agent reports a failing change and a full pool is
    listed with both, and with its last successful pass.
    """
    api.state.update_node_state(
        NodeState(
            uuid=NODE_A,
            datasets={},
            last_converged=1800000000.0,
            failing_changes=[
                ChangeFailure(
                    dataset_id=DATASET,
                    change="flocker:node:dataset:push",
                    reason="CommandFailed: zfs receive: out of space",
                    since=1800000005.5,
                    count=4,
                ),
                ChangeFailure(
                    change="flocker:node:discover", reason="boom", since=1800000001.0, count=1
                ),
            ],
            pool=PoolState(size=90_000_000, free=0, full=True, oversized=[DATASET]),
        )
    )
    entry = api.request("GET", "/v1/state/nodes").body[0]
    assert entry["last_converged"] == 1800000000.0
    assert entry["failing_changes"] == [
        {
            "dataset_id": DATASET,
            "change": "flocker:node:dataset:push",
            "reason": "CommandFailed: zfs receive: out of space",
            "since": 1800000005.5,
            "count": 4,
        },
        {
            "dataset_id": None,
            "change": "flocker:node:discover",
            "reason": "boom",
            "since": 1800000001.0,
            "count": 1,
        },
    ]
    assert entry["pool"] == {
        "size": 90_000_000, "free": 0, "full": True, "oversized": [DATASET],
    }  # fmt: skip


def test_nodes_without_a_convergence_report_show_none(api: APIHarness) -> None:
    """A node whose dataset agent did not report them has none of the keys."""
    (_, entry) = api.request("GET", "/v1/state/nodes").body
    assert entry == {"uuid": NODE_B, "host": "10.0.0.2"}


def test_a_converging_node_keeps_the_original_shape(api: APIHarness) -> None:
    """
    A node whose latest pass succeeded, with room in its pool, is shown as
    the original API showed nodes: ``uuid`` and ``host`` only (clients of
    that API validate the answer strictly).
    """
    api.state.update_node_state(
        NodeState(
            uuid=NODE_B,
            datasets={},
            last_converged=1.0,
            failing_changes=[],
            pool=PoolState(size=100, free=50, full=False),
        )
    )
    entry = api.request("GET", "/v1/state/nodes").body[1]
    assert set(entry) == {"uuid", "host"}


def small_pool(api: APIHarness, node: str, size: int = 100 * 1024 * 1024) -> None:
    """``node``'s dataset agent reports a pool of ``size`` bytes."""
    api.state.update_node_state(
        NodeState(uuid=node, datasets={}, pool=PoolState(size=size, free=size, full=False))
    )


def test_a_dataset_larger_than_its_nodes_pool_is_refused(api: APIHarness) -> None:
    """
    A new dataset whose maximum size is larger than its primary's reported
    pool is refused with 409 and why; one that fits is created.
    """
    small_pool(api, NODE_A)
    result = api.request(
        "POST", "/v1/configuration/datasets",
        {"primary": NODE_A, "maximum_size": 200 * 1024 * 1024},
    )  # fmt: skip
    assert result.code == 409
    assert "cannot fit on node" in result.body["description"]
    assert api.stored().deployment.nodes == {}
    fits = api.request(
        "POST", "/v1/configuration/datasets", {"primary": NODE_A, "maximum_size": 1024 * 1024}
    )
    assert fits.code == 201


def test_growing_or_moving_beyond_the_pool_is_refused(api: APIHarness) -> None:
    """
    Raising a dataset's maximum size beyond its node's pool, or moving it
    to a node whose pool is smaller than it, is refused with 409; a node
    whose pool is unknown is not judged.
    """
    created = api.request(
        "POST", "/v1/configuration/datasets",
        {"primary": NODE_B, "maximum_size": 200 * 1024 * 1024},
    )  # fmt: skip
    assert created.code == 201
    dataset_id = created.body["dataset_id"]
    small_pool(api, NODE_A)
    moved = api.request("POST", f"/v1/configuration/datasets/{dataset_id}", {"primary": NODE_A})
    assert moved.code == 409
    small_pool(api, NODE_B, size=300 * 1024 * 1024)
    grown = api.request(
        "POST", f"/v1/configuration/datasets/{dataset_id}", {"maximum_size": 400 * 1024 * 1024}
    )
    assert grown.code == 409
    renamed = api.request(
        "POST", f"/v1/configuration/datasets/{dataset_id}", {"metadata": {"name": "x"}}
    )
    assert renamed.code == 200
