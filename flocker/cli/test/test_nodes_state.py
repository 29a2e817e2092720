"""
Tests of how ``flocker nodes`` shows whether each node converges: "not
converging since …" with its failing changes, a full pool, or converging;
against the real REST API in memory, so the API client's reading of ``GET
/v1/state/nodes`` is tested too.
"""

from __future__ import annotations

from collections.abc import Sequence

from flocker.cli._errors import EXIT_OK
from flocker.control import ChangeFailure, NodeState, PoolState
from flocker.control.test.test_httpapi import DATASET, NODE_A, NODE_B

from .test_snapshots import RestCluster, make_rest_cluster, run_cli

#: 2027-01-15 08:00:00 UTC.
SINCE = 1800000000.0


def report(
    cluster: RestCluster,
    node: str,
    failing: Sequence[tuple[float, str]] = (),
    full: bool = False,
) -> None:
    """``node``'s dataset agent reports a pass ending at SINCE and these failures."""
    cluster.api.state.update_node_state(
        NodeState(
            uuid=node,
            datasets={},
            last_converged=SINCE - 60,
            failing_changes=[
                ChangeFailure(
                    dataset_id=DATASET, change=change, reason="out of space",
                    since=SINCE + offset, count=3,
                )  # fmt: skip
                for offset, change in failing
            ],
            pool=PoolState(size=100, free=0 if full else 50, full=full),
        )
    )


def test_nodes_shows_a_node_not_converging_since_its_first_failure() -> None:
    """
    A node with failing changes and a full pool is shown not converging
    since the earliest of them, with how many, and its pool full; a node
    whose latest pass succeeded has nothing wrong to show: "-" (the REST
    API keeps the original shape for it).
    """
    cluster = make_rest_cluster()
    report(
        cluster, NODE_A,
        failing=[(30, "flocker:node:dataset:push"), (0, "flocker:node:dataset:create")],
        full=True,
    )  # fmt: skip
    report(cluster, NODE_B)
    result = run_cli(cluster, "nodes")
    assert result.code == EXIT_OK, result
    header, first, second = result.out.splitlines()
    assert header.split()[-1] == "STATE"
    assert first.startswith(NODE_A)
    assert first.endswith(
        "not converging since 2027-01-15 08:00:00 UTC (2 failing); pool full"
    )
    assert second.endswith("-")
    views = run_cli(cluster, "--json", "nodes").json()
    assert [(v["failing_changes"], v["pool_full"]) for v in views][0] == (2, True)
    assert views[1]["state"] == "-"


def test_a_node_whose_agent_did_not_say_shows_a_dash() -> None:
    """Before its dataset agent reports a pass, a node's state is unknown: "-"."""
    cluster = make_rest_cluster()
    [view, _] = run_cli(cluster, "--json", "nodes").json()
    assert view["state"] == "-" and view["last_converged"] is None
