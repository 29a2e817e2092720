"""
Acceptance: sampling the pools themselves (``zfs get readonly,mounted``,
not the API) while a dataset moves back and forth on a real local cluster,
at no sampled moment is it writable on two nodes: the destination's copy
is received read-only until it is exposed, and the source's copy is made
read-only before its final snapshot.
"""

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from flocker.node.test.test_acceptance_datasets import (
    MIB,
    create,
    move,
    wait_exposed,
    write_data,
)

pytestmark = pytest.mark.acceptance


def copy_mode(node: dict[str, Any], dataset_id: str) -> str:
    """
    ``"writable"``, ``"read-only"`` (mounted so) or ``"absent"`` (no such
    filesystem, or not mounted) for ``node``'s copy of the dataset.
    """
    result = subprocess.run(
        ["zfs", "get", "-H", "-o", "value", "readonly,mounted", f"{node['pool']}/{dataset_id}"],
        capture_output=True,
        text=True,
    )
    values = result.stdout.split()
    if result.returncode != 0 or len(values) != 2 or values[1] != "yes":
        return "absent"
    return "writable" if values[0] == "off" else "read-only"


class PoolSampler(threading.Thread):
    """
    Samples both nodes' copies, one ``zfs get`` at a time: the move's
    destination first, then its source.  A destination seen writable has
    had the final increment, so its source was made read-only before that:
    sampling in this order never sees two writable copies that were not
    writable at one moment.
    """

    def __init__(self, dataset_id: str) -> None:
        super().__init__(daemon=True)
        self.dataset_id = dataset_id
        # (source, destination) of the current move
        self.direction: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.samples: list[tuple[str, str]] = []  # (source mode, destination mode)
        self.done = threading.Event()

    def run(self) -> None:
        """Sample until told to stop."""
        while not self.done.is_set():
            direction = self.direction
            if direction is not None:
                source, destination = direction
                there = copy_mode(destination, self.dataset_id)
                here = copy_mode(source, self.dataset_id)
                self.samples.append((here, there))
            time.sleep(0.02)


def test_a_moving_dataset_is_never_writable_on_two_nodes(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    A dataset with 64 MiB moves from node 1 to node 2, back, and to node 2
    again; in every pool sample one copy at most is writable, the copy
    moving in is seen (read-only) before it is exposed, and each move ends
    with the new primary's copy writable.
    """
    cluster = make_lab(nodes=2)
    one, two = cluster["nodes"]
    state = create(cluster, one)
    dataset_id = state["dataset_id"]
    write_data(state["path"], 64 * MIB)
    sampler = PoolSampler(dataset_id)
    sampler.start()
    try:
        for source, destination in [(one, two), (two, one), (one, two)]:
            sampler.direction = (source, destination)
            move(cluster, dataset_id, destination)
            wait_exposed(cluster, dataset_id, destination)
            assert copy_mode(destination, dataset_id) == "writable"
    finally:
        sampler.done.set()
        sampler.join()
    both = [s for s in sampler.samples if s == ("writable", "writable")]
    assert both == [], f"{len(both)} of {len(sampler.samples)} samples writable on both nodes"
    moving_in = [s for s in sampler.samples if s[1] == "read-only"]
    assert moving_in, f"no sample saw the copy moving in: {sampler.samples[:20]}"
