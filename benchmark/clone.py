"""
Benchmark: clone a 2 GiB dataset five times through the ZFS backend.

A dataset with 2 GiB of random data is snapshotted and cloned five times
with :meth:`ZFSVolumeBackend.clone` (which also checks names, sets
Flocker's properties and reads back the new dataset's details).  The
scenario records the time of each clone and the pool space the five clones
added (``used`` of the pool, after letting zfs-fuse commit), and, in the
same run, the time of five bare ``zfs clone`` commands as the baseline.
Targets: < 100 ms per clone and < 5 MiB extra space in all.

    benchmark/run clone [--size 2G] [--clones 5]
"""

from __future__ import annotations

import argparse
import subprocess
import uuid
from typing import Any

from benchmark._harness import Timer, summarize, write_results
from benchmark.transfer import (
    DATASET,
    GiB,
    MiB,
    destroy_dataset,
    fill,
    parse_size,
    pool_allocated,
    scratch_pools,
)


async def run(reactor: Any, size: int, clones: int) -> dict[str, Any]:
    """Clone, time and measure; the results document."""
    from flocker.volume.zfs import ZFSVolumeBackend

    pool_size = f"{max(4 * GiB, size + 2 * GiB) // MiB}M"
    with scratch_pools(1, pool_size) as (_, (pool,)):
        backend = ZFSVolumeBackend(reactor, pool.name)
        info = await backend.create(DATASET)
        print(f"writing {size / MiB:.0f} MiB of random data", flush=True)
        fill(info.path, size)
        await backend.snapshot(DATASET, "s1")
        raw_seconds = []
        for i in range(clones):
            name = f"{pool.name}/raw-clone-{i}"
            with Timer() as timer:
                subprocess.run(
                    ["zfs", "clone", f"{pool.name}/{DATASET}@s1", name], check=True
                )
            raw_seconds.append(timer.seconds)
        for i in range(clones):
            destroy_dataset(f"{pool.name}/raw-clone-{i}")
        before = pool_allocated(pool.name)
        flocker_seconds = []
        made = []
        for _ in range(clones):
            new = str(uuid.uuid4())
            with Timer() as timer:
                await backend.clone(DATASET, "s1", new)
            flocker_seconds.append(timer.seconds)
            made.append(new)
            print(f"clone {len(made)}: {timer.seconds * 1000:.0f} ms", flush=True)
        after = pool_allocated(pool.name)
        for new in made:
            await backend.destroy(new)
        await backend.destroy(DATASET)
    flocker = summarize(flocker_seconds)
    raw = summarize(raw_seconds)
    extra = after - before
    return {
        "data_bytes": size,
        "clones": clones,
        "flocker_clone_seconds": flocker,
        "bare_zfs_clone_seconds": raw,
        "samples": {"flocker": flocker_seconds, "bare_zfs_clone": raw_seconds},
        "flocker_over_bare_time": flocker["median"] / raw["median"],
        "extra_pool_bytes": extra,
        "extra_bytes_over_data": extra / size,
        "target_seconds_each": 0.1,
        "target_extra_bytes": 5 * MiB,
        "meets_target": flocker["max"] < 0.1 and extra < 5 * MiB,
    }


def plot(results: dict[str, Any]) -> Any:
    """Time of each clone against the bare command and the target."""

    def draw(axes: Any) -> None:
        flocker = [s * 1000 for s in results["samples"]["flocker"]]
        raw = [s * 1000 for s in results["samples"]["bare_zfs_clone"]]
        x = range(len(flocker))
        axes.bar(
            [i - 0.2 for i in x], raw, 0.4, label="bare zfs clone", color="#888888"
        )
        axes.bar(
            [i + 0.2 for i in x], flocker, 0.4, label="Flocker clone", color="#2a7ab9"
        )
        axes.axhline(100, color="red", linestyle="--", label="target 100 ms")
        axes.set_xticks(list(x), [f"clone {i + 1}" for i in x])
        axes.set_ylabel("milliseconds")
        axes.set_title(
            f"Cloning {results['data_bytes'] / GiB:.2g} GiB x{results['clones']}: "
            f"median {results['flocker_clone_seconds']['median'] * 1000:.0f} ms, "
            f"extra space {results['extra_pool_bytes'] / 1024:.0f} KiB in all"
        )
        axes.legend()

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario and write benchmark/results/clone.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run clone")
    parser.add_argument("--size", default="2G", help="dataset size (default 2G)")
    parser.add_argument("--clones", type=int, default=5)
    options = parser.parse_args(argv)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def body(reactor: Any) -> None:
        results = await run(reactor, parse_size(options.size), options.clones)
        paths = write_results("clone", results, plot(results))
        print(
            f"median {results['flocker_clone_seconds']['median'] * 1000:.0f} ms, "
            f"extra {results['extra_pool_bytes']} bytes -> {paths[0]}"
        )

    react(lambda reactor: Deferred.fromCoroutine(body(reactor)))


if __name__ == "__main__":
    main()
