"""
Benchmark: standing replicas — lag, CPU and wire cost under load, and moves.

On a 3-node local cluster (``flocker.testtools.lab``, zfs backend):

1. **Lag under load.**  A dataset on node 1 has standing replicas on nodes 2
   and 3 (continuous mode).  A writer on the host appends random data to a
   file in the dataset's mount path at a steady rate (``--rate`` MB/s,
   10^6 bytes, in 256 KiB ``os.write`` calls on an absolute schedule, no
   fsync) for ``--seconds``.  Every 0.5 s ``GET /v1/state/datasets`` is
   sampled for both replicas' ``lag_seconds``: p50 and p99 over both
   (goal p99 <= 5 s).  The state's lag is ``now - creation`` of the
   replica's newest snapshot, and ZFS's ``creation`` has whole seconds, so
   the lag derived from the snapshot's name (``flocker-replica-<ns>-…``)
   is recorded alongside.
2. **CPU cost.**  The primary's dataset agent's CPU seconds (utime + stime
   from ``/proc/<pid>/stat``) during that load, against a same-run
   baseline: the same writer for the same time on another dataset on
   node 1 without replicas, run *first* (before the replicated dataset
   exists, and deleted before it is created).  Reported as extra CPU
   seconds per second.  The agent's reaped children (``zfs`` commands),
   the replicas' agents and the ``zfs-fuse`` daemon are recorded too.
3. **Wire efficiency.**  The ``bytes`` of succeeded
   ``flocker:volume:transfer:send`` actions inside the
   ``flocker:node:dataset:replicate`` actions of that dataset in node 1's
   ``flocker-dataset-agent.log``, from the start of the load until both
   replicas hold a snapshot taken after its end (or the catch-up timeout,
   :data:`CATCH_UP_TIMEOUT`), over 2 x bytes written (goal <= 1.1).  Per
   replica too: what it received over what was written before the newest
   snapshot it received, which stays meaningful if replication stops
   part-way (the results then say ``replicas_caught_up: false``; the
   failed sends are counted by kind).
4. **Move with a current replica.**  For each of ``--sizes``: dataset A
   with that much random data on node 1 and a replica on node 2; dataset B
   with as much random data on node 1 and no replicas.  Once node 2's
   replica of A is current (its newest snapshot was taken after the write
   ended and its lag is small), A moves to node 2; then B moves to node 3
   (the same-run baseline: a move to a node without a replica).  Each
   move's total time (request until the destination exposes it) and its
   unavailability (from the first state sample in which node 1 no longer
   exposes it until the first in which the destination does; the state is
   polled every 20 ms) give with/without ratios, and 1 GiB / 64 MiB with a
   replica gives the flatness (ideally ~1).  The bytes pushed by each move
   are read from node 1's log and the data is checked (SHA-256) after it.

    benchmark/run replication [--seconds 60] [--rate 5] [--sizes 64MiB,1GiB]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from benchmark._harness import write_results
from benchmark.move import (
    MiB,
    StatePoller,
    file_digest,
    fill,
    first_holding,
    parse_sizes,
    read_log,
    wait_exposed,
    windows,
)

REPLICA_PREFIX = "flocker-replica-"
CHUNK = 256 * 1024
LAG_SAMPLE_INTERVAL = 0.5
MOVE_POLL_INTERVAL = 0.02
TARGET_LAG_P99 = 5.0
TARGET_WIRE_RATIO = 1.1
#: A replica counts as current for a move when its lag is at most this.
CURRENT_LAG = 5.0
#: Seconds allowed for the replicas to catch up after the load.
CATCH_UP_TIMEOUT = 90.0
#: Seconds allowed for a replica to become current before a move, and for a move.
MOVE_TIMEOUT = 180.0

REPLICATE = "flocker:node:dataset:replicate"
PUSH = "flocker:node:dataset:push"
SEND = "flocker:volume:transfer:send"


# ---------------------------------------------------------------------------
# Pure helpers


def percentile(samples: Sequence[float], p: float) -> float:
    """
    The ``p``-th percentile (0-100) of ``samples``, interpolating linearly
    between the two nearest ranks.

    :raise ValueError: for no samples or ``p`` outside 0-100.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"not a percentile: {p}")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def lag_summary(samples: Sequence[float | None]) -> dict[str, Any]:
    """p50, p99, maximum and counts of lag samples (``None``: not reported)."""
    known = [s for s in samples if s is not None]
    summary: dict[str, Any] = {
        "count": len(known),
        "missing": len(samples) - len(known),
    }
    if known:
        summary.update(
            p50=percentile(known, 50), p99=percentile(known, 99), max=max(known)
        )
    else:
        summary.update(p50=None, p99=None, max=None)
    return summary


def snapshot_time(name: str | None) -> float | None:
    """
    When a replication snapshot was taken (seconds since the epoch), from
    its name ``flocker-replica-<nanoseconds>-<hex>``; ``None`` for any other.
    """
    if not name or not name.startswith(REPLICA_PREFIX):
        return None
    stamp = name[len(REPLICA_PREFIX) :].split("-", 1)[0]
    return int(stamp) / 1e9 if stamp.isdigit() else None


def cpu_seconds(stat: str, ticks: int) -> dict[str, float]:
    """
    A process's CPU time from the text of ``/proc/<pid>/stat``: ``self``
    (utime + stime) and ``children`` (cutime + cstime of reaped children).
    """
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime..cstime are fields 14-17.
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return {"self": (utime + stime) / ticks, "children": (cutime + cstime) / ticks}


def _below(message: dict[str, Any], outer: dict[str, Any]) -> bool:
    """Whether ``message`` belongs to the action whose start is ``outer``."""
    prefix = outer["task_level"][:-1]
    level = message.get("task_level", [])
    return (
        message.get("task_uuid") == outer.get("task_uuid")
        and level[: len(prefix)] == prefix
        and len(level) > len(prefix) + 1
    )


def rounds(
    messages: Iterable[dict[str, Any]],
    action_type: str,
    dataset_id: str,
    after: float = 0.0,
    until: float = float("inf"),
) -> list[dict[str, Any]]:
    """
    The ``action_type`` actions (replication rounds or move pushes) of
    ``dataset_id`` that started between wall times ``after`` and ``until``,
    with the bytes of the ``flocker:volume:transfer:send`` actions inside
    them, oldest first.

    Each is ``{"started_at", "snapshots", "bytes", "sends", "failed_sends",
    "failures", "transfers"}`` (``failures``: the failed sends' eliot
    reasons; ``transfers``: each succeeded send's peer, snapshot and bytes):
    ``bytes`` adds up the succeeded sends only (their ``bytes`` field is on
    the success message, which carries no dataset id: it is matched to its
    start by task and level).
    """
    messages = list(messages)
    starts = [
        m
        for m in messages
        if m.get("action_type") == action_type
        and m.get("action_status") == "started"
        and m.get("dataset_id") == dataset_id
        and after <= m.get("timestamp", 0) <= until
    ]
    result = []
    for outer in starts:
        send_starts = {
            tuple(m["task_level"][:-1]): m
            for m in messages
            if m.get("action_type") == SEND
            and m.get("action_status") == "started"
            and _below(m, outer)
        }
        total = succeeded = failed = 0
        reasons: list[str] = []
        transfers: list[dict[str, Any]] = []
        for m in messages:
            if m.get("action_type") != SEND or not _below(m, outer):
                continue
            key = tuple(m["task_level"][:-1])
            if key not in send_starts:
                continue
            if m.get("action_status") == "succeeded":
                succeeded += 1
                total += int(m.get("bytes") or 0)
                transfers.append(
                    {
                        "peer": send_starts[key].get("peer"),
                        "snapshot": send_starts[key].get("snapshot"),
                        "bytes": int(m.get("bytes") or 0),
                    }
                )
            elif m.get("action_status") == "failed":
                failed += 1
                reasons.append(str(m.get("reason") or m.get("exception")))
        result.append(
            {
                "started_at": outer["timestamp"],
                "snapshots": sorted(
                    {
                        str(s["snapshot"])
                        for s in send_starts.values()
                        if s.get("snapshot")
                    }
                ),
                "bytes": total,
                "sends": succeeded,
                "failed_sends": failed,
                "failures": reasons,
                "transfers": transfers,
            }
        )
    return result


def written_before(progress: Sequence[tuple[float, int]], moment: float) -> int:
    """
    Bytes a writer had written by wall time ``moment``, from its
    ``(time, bytes written so far)`` records (in time order).
    """
    index = bisect.bisect_right([at for at, _ in progress], moment)
    return progress[index - 1][1] if index else 0


def replica_efficiency(
    found: Sequence[dict[str, Any]], progress: Sequence[tuple[float, int]]
) -> dict[str, dict[str, Any]]:
    """
    Per peer: the bytes of the succeeded sends in the rounds ``found``, over
    the bytes written before the newest snapshot it received was taken —
    the wire efficiency of what did reach each replica, meaningful even
    when replication stopped part-way.
    """
    peers: dict[str, dict[str, Any]] = {}
    for found_round in found:
        for transfer in found_round["transfers"]:
            peer = peers.setdefault(
                str(transfer["peer"]), {"bytes_sent": 0, "last_snapshot": None}
            )
            peer["bytes_sent"] += transfer["bytes"]
            taken = snapshot_time(transfer["snapshot"])
            if taken is not None and taken >= (
                snapshot_time(peer["last_snapshot"]) or 0
            ):
                peer["last_snapshot"] = transfer["snapshot"]
    for peer in peers.values():
        taken = snapshot_time(peer["last_snapshot"])
        covered = 0 if taken is None else written_before(progress, taken)
        peer["bytes_written_before_last_snapshot"] = covered
        peer["sent_over_written"] = ratio(peer["bytes_sent"], covered)
    return peers


def failure_kinds(reasons: Iterable[str]) -> dict[str, int]:
    """
    How many failures of each kind: a reason ending in a parenthesized code
    (``… (dataset-exists)``) counts under that code, any other under its
    first 100 characters.
    """
    kinds: dict[str, int] = {}
    for reason in reasons:
        text = reason.strip()
        if text.endswith(")") and "(" in text:
            key = text[text.rindex("(") + 1 : -1]
        else:
            key = text[:100]
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def unavailable(
    samples: Sequence[tuple[float, float, frozenset[str]]],
    source: str,
    destination: str,
) -> float | None:
    """
    Seconds from the first sample in which ``source`` no longer exposes the
    dataset until the first in which ``destination`` does (reply times);
    negative when the destination appeared first, ``None`` if either never
    happened.
    """
    gone = next((s[1] for s in samples if source not in s[2]), None)
    arrived = first_holding(samples, destination)
    if gone is None or arrived is None:
        return None
    return arrived - gone


def seconds_text(value: float | None) -> str:
    """``"1.23 s"``, or ``"n/a"`` for a figure that could not be measured."""
    return "n/a" if value is None else f"{value:.2f} s"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` if either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# ---------------------------------------------------------------------------
# Load, sampling and CPU


class Writer(threading.Thread):
    """
    Appends random data to ``path``/``name`` at ``rate`` bytes per second in
    :data:`CHUNK` writes on an absolute schedule (no drift); records what
    it wrote and how far it fell behind.
    """

    def __init__(
        self, path: str, rate: float, seconds: float, name: str = "load"
    ) -> None:
        super().__init__(daemon=True)
        self.target = os.path.join(path, name)
        self.rate = rate
        self.seconds = seconds
        self.written = 0
        self.progress: list[tuple[float, int]] = []
        self.started_at = self.ended_at = 0.0
        self.late_max = 0.0
        self.error: str | None = None

    def run(self) -> None:
        """Write until ``seconds`` have passed."""
        period = CHUNK / self.rate
        count = int(self.seconds / period)
        descriptor = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.started_at = time.time()
        begun = time.monotonic()
        try:
            for index in range(count):
                due = begun + index * period
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    self.late_max = max(self.late_max, -wait)
                data = os.urandom(CHUNK)
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                self.written += CHUNK
                self.progress.append((time.time(), self.written))
            left = begun + count * period - time.monotonic()
            if left > 0:
                time.sleep(left)
        except OSError as error:
            self.error = str(error)
        finally:
            os.close(descriptor)
            self.ended_at = time.time()


class LagSampler(threading.Thread):
    """
    Every :data:`LAG_SAMPLE_INTERVAL` seconds, records the dataset's replicas
    from ``GET /v1/state/datasets``: ``(wall time, {node: replica entry})``.
    """

    def __init__(self, cluster: dict[str, Any], dataset_id: str) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.dataset_id = dataset_id
        self.samples: list[tuple[float, dict[str, dict[str, Any]]]] = []
        self.errors = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        from flocker.testtools import lab

        begun = time.monotonic()
        tick = 0
        while not self.stopping.is_set():
            try:
                entries = lab.api_request(self.cluster, "GET", "/v1/state/datasets")
            except OSError:
                self.errors += 1
                entries = None
            if entries is not None:
                replicas = {}
                for entry in entries:
                    if entry.get("dataset_id") == self.dataset_id:
                        replicas = {
                            r["node_uuid"]: r for r in entry.get("replicas", [])
                        }
                self.samples.append((time.time(), replicas))
            tick += 1
            self.stopping.wait(
                max(0.0, begun + tick * LAG_SAMPLE_INTERVAL - time.monotonic())
            )

    def stop(self) -> None:
        """Stop sampling."""
        self.stopping.set()
        self.join()


def process_cpu(pid: int | None) -> dict[str, float] | None:
    """:func:`cpu_seconds` of a running process, or ``None``."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return cpu_seconds(handle.read(), os.sysconf("SC_CLK_TCK"))
    except OSError:
        return None


def zfs_fuse_pid() -> int | None:
    """The ``zfs-fuse`` daemon's pid (it does the pools' work), if it runs."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == "zfs-fuse":
                        return int(entry)
            except OSError:
                continue
    return None


def cpu_snapshot(cluster: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds so far of every node's dataset agent and of zfs-fuse."""
    return {
        "agents": [process_cpu(n["pids"].get("dataset")) for n in cluster["nodes"]],
        "zfs_fuse": process_cpu(zfs_fuse_pid()),
    }


def cpu_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What each process of :func:`cpu_snapshot` used in between."""

    def minus(b: dict[str, float] | None, a: dict[str, float] | None) -> Any:
        if a is None or b is None:
            return None
        return {k: a[k] - b[k] for k in a}

    return {
        "agents": [
            minus(b, a) for b, a in zip(before["agents"], after["agents"], strict=True)
        ],
        "zfs_fuse": minus(before["zfs_fuse"], after["zfs_fuse"]),
    }


def create_dataset(
    cluster: dict[str, Any], node: dict[str, Any], **extra: Any
) -> tuple[str, str]:
    """Create a dataset on ``node``; its id and mount path once exposed."""
    from flocker.testtools import lab

    dataset_id = str(uuid.uuid4())
    lab.api_request(
        cluster, "POST", "/v1/configuration/datasets",
        {"primary": node["uuid"], "dataset_id": dataset_id, **extra},
    )  # fmt: skip
    return dataset_id, wait_exposed(cluster, dataset_id, node["uuid"])


def replicas_of(cluster: dict[str, Any], dataset_id: str) -> dict[str, dict[str, Any]]:
    """Replica node -> its state entry, for the dataset."""
    from flocker.testtools import lab

    for entry in lab.api_request(cluster, "GET", "/v1/state/datasets"):
        if entry.get("dataset_id") == dataset_id:
            return {r["node_uuid"]: r for r in entry.get("replicas", [])}
    return {}


def wait_replicated(
    cluster: dict[str, Any],
    dataset_id: str,
    nodes: list[str],
    since: float,
    timeout: float,
) -> float | None:
    """
    Wait until every replica node in ``nodes`` holds a snapshot taken at or
    after wall time ``since`` with a lag of at most :data:`CURRENT_LAG`;
    the wall time when that was seen, or ``None`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replicas = replicas_of(cluster, dataset_id)
        if all(
            (snapshot_time(replicas.get(n, {}).get("last_snapshot")) or 0) >= since
            and (replicas[n].get("lag_seconds") or 0) <= CURRENT_LAG
            for n in nodes
        ):
            return time.time()
        time.sleep(0.2)
    return None


def delete_and_wait(
    cluster: dict[str, Any], dataset_ids: list[str], timeout: float = 60
) -> None:
    """Delete datasets and wait until the state no longer lists them."""
    from flocker.testtools import lab

    for dataset_id in dataset_ids:
        lab.api_request(cluster, "DELETE", f"/v1/configuration/datasets/{dataset_id}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = {
            e["dataset_id"]
            for e in lab.api_request(cluster, "GET", "/v1/state/datasets")
        }
        if not listed & set(dataset_ids):
            return
        time.sleep(0.5)
    print(f"warning: {dataset_ids} still in the state after {timeout} s", flush=True)


def primary_log(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """Node 1's dataset agent's eliot messages."""
    return read_log(
        os.path.join(cluster["nodes"][0]["log_dir"], "flocker-dataset-agent.log")
    )


# ---------------------------------------------------------------------------
# The measurements


def run_load(
    cluster: dict[str, Any], dataset_id: str, path: str, rate: float, seconds: float
) -> dict[str, Any]:
    """Run the writer on one dataset, sampling lag and CPU; the raw figures."""
    sampler = LagSampler(cluster, dataset_id)
    writer = Writer(path, rate, seconds)
    sampler.start()
    before = cpu_snapshot(cluster)
    started = time.monotonic()
    writer.start()
    writer.join()
    elapsed = time.monotonic() - started
    after = cpu_snapshot(cluster)
    sampler.stop()
    if writer.error:
        raise RuntimeError(f"the writer failed: {writer.error}")
    during = [
        (at - writer.started_at, replicas)
        for at, replicas in sampler.samples
        if writer.started_at <= at <= writer.ended_at
    ]
    return {
        "dataset_id": dataset_id,
        "bytes_written": writer.written,
        "seconds": elapsed,
        "achieved_rate_bytes_per_second": writer.written / elapsed,
        "writer_late_max_seconds": writer.late_max,
        "started_at": writer.started_at,
        "ended_at": writer.ended_at,
        "cpu": cpu_delta(before, after),
        "samples": during,
        "progress": writer.progress,
        "sample_errors": sampler.errors,
    }


def lag_figures(
    samples: list[tuple[float, dict[str, Any]]], nodes: list[str]
) -> dict[str, Any]:
    """Lag summaries (state's and name-derived) per replica and over both."""
    series: dict[str, list[Any]] = {n: [] for n in nodes}
    exact: dict[str, list[Any]] = {n: [] for n in nodes}
    for offset, replicas in samples:
        for node in nodes:
            entry = replicas.get(node, {})
            series[node].append([offset, entry.get("lag_seconds")])
            taken = snapshot_time(entry.get("last_snapshot"))
            exact[node].append(
                None
                if taken is None or entry.get("lag_seconds") is None
                # The state's lag was computed at about the same moment, from
                # ZFS's whole-second creation time; correct it to the name's.
                else entry["lag_seconds"] - (taken - entry["replicated_at"])
            )
    pooled = [v for n in nodes for _, v in series[n]]
    return {
        "state_lag": lag_summary(pooled),
        "state_lag_per_replica": {
            n: lag_summary([v for _, v in series[n]]) for n in nodes
        },
        "name_lag": lag_summary([v for n in nodes for v in exact[n]]),
        "series": series,
    }


def measure_load(
    cluster: dict[str, Any], rate: float, seconds: float
) -> dict[str, Any]:
    """Sections 1-3: the baseline load, then the replicated one."""
    one, two, three = cluster["nodes"][:3]
    replica_nodes = [two["uuid"], three["uuid"]]

    print(f"baseline: {seconds:.0f} s at {rate / 1e6:g} MB/s on a dataset without replicas",
          flush=True)  # fmt: skip
    plain_id, plain_path = create_dataset(cluster, one)
    time.sleep(2)
    baseline = run_load(cluster, plain_id, plain_path, rate, seconds)
    baseline.pop("samples")
    baseline.pop("progress")
    delete_and_wait(cluster, [plain_id])

    replicated_id, path = create_dataset(
        cluster, one, replicas=replica_nodes,
        replication={"interval_seconds": 0, "failover": "manual"},
    )  # fmt: skip
    if wait_replicated(cluster, replicated_id, replica_nodes, time.time(), 120) is None:
        raise RuntimeError(f"the replicas of {replicated_id} never filled")
    time.sleep(2)
    print(f"replicated: {seconds:.0f} s at {rate / 1e6:g} MB/s, replicas on nodes 2 and 3",
          flush=True)  # fmt: skip
    loaded = run_load(cluster, replicated_id, path, rate, seconds)
    caught_up = wait_replicated(
        cluster, replicated_id, replica_nodes, loaded["ended_at"], CATCH_UP_TIMEOUT
    )
    if caught_up is None:
        print(
            f"the replicas did not catch up within {CATCH_UP_TIMEOUT} s of the load's end",
            flush=True,
        )
    replicas_at_end = replicas_of(cluster, replicated_id)
    time.sleep(1)  # let the agent log the round's end
    samples = loaded.pop("samples")
    progress = loaded.pop("progress")
    lags = lag_figures(samples, replica_nodes)

    replication_rounds = rounds(
        primary_log(cluster),
        REPLICATE,
        replicated_id,
        loaded["started_at"],
        caught_up or time.time(),
    )
    sent = sum(r["bytes"] for r in replication_rounds)
    addresses = {n["address"]: n["uuid"] for n in cluster["nodes"]}
    per_replica = {
        addresses.get(peer.rsplit(":", 1)[0], peer): figures
        for peer, figures in replica_efficiency(replication_rounds, progress).items()
    }
    wire = sent / (len(replica_nodes) * loaded["bytes_written"])

    with_cpu = loaded["cpu"]["agents"][0]["self"]
    without_cpu = baseline["cpu"]["agents"][0]["self"]
    extra = (with_cpu - without_cpu) / seconds
    lag_p99 = lags["state_lag"]["p99"]
    print(
        f"lag p50 {seconds_text(lags['state_lag']['p50'])}, p99 {seconds_text(lag_p99)} "
        f"(from names: p99 {seconds_text(lags['name_lag']['p99'])}); agent CPU {with_cpu:.2f} s vs {without_cpu:.2f} s "
        f"-> {extra:.3f} CPU s/s extra; wire {sent} B / (2 x {loaded['bytes_written']} B) "
        f"= {wire:.3f} in {len(replication_rounds)} rounds",
        flush=True,
    )
    delete_and_wait(cluster, [replicated_id])
    return {
        "order": "baseline (no replicas) first, then the replicated dataset",
        "cpu_note": (
            "cpu.agents are the three nodes' dataset agents; zfs_fuse is the one "
            "zfs-fuse daemon of the machine, shared with any other cluster running"
        ),
        "lag_sample_interval_seconds": LAG_SAMPLE_INTERVAL,
        "rate_bytes_per_second": rate,
        "seconds": seconds,
        "baseline": baseline,
        "replicated": loaded,
        "replicas_caught_up": caught_up is not None,
        "replicas_caught_up_after_load_seconds": (
            None if caught_up is None else caught_up - loaded["ended_at"]
        ),
        "catch_up_timeout_seconds": CATCH_UP_TIMEOUT,
        "replicas_at_end": replicas_at_end,
        "lag": lags,
        "lag_p50_seconds": lags["state_lag"]["p50"],
        "lag_p99_seconds": lag_p99,
        "lag_target_p99_seconds": TARGET_LAG_P99,
        "lag_meets_target": lag_p99 is not None and lag_p99 <= TARGET_LAG_P99,
        "cpu": {
            "primary_agent_with_replicas_seconds": with_cpu,
            "primary_agent_without_replicas_seconds": without_cpu,
            "extra_cpu_seconds_per_second": extra,
            "with_over_without": ratio(with_cpu, without_cpu),
            "primary_agent_children_extra_seconds_per_second": (
                loaded["cpu"]["agents"][0]["children"]
                - baseline["cpu"]["agents"][0]["children"]
            )
            / seconds,
        },
        "wire": {
            "rounds": len(replication_rounds),
            "failed_sends": sum(r["failed_sends"] for r in replication_rounds),
            "failure_kinds": failure_kinds(
                [f for r in replication_rounds for f in r["failures"]]
            ),
            "bytes_sent": sent,
            "bytes_written": loaded["bytes_written"],
            "sent_over_twice_written": wire,
            "target": TARGET_WIRE_RATIO,
            "meets_target": wire <= TARGET_WIRE_RATIO,
            "round_bytes": [r["bytes"] for r in replication_rounds],
            "complete": caught_up is not None,
            "note": (
                "sent_over_twice_written counts the rounds until both replicas caught "
                "up (or the catch-up timeout): if they never did, bytes written were "
                "never sent and the ratio is low; per_replica compares what each "
                "replica received with what was written before its newest snapshot"
            ),
            "per_replica": per_replica,
        },
    }


def timed_move(
    cluster: dict[str, Any],
    dataset_id: str,
    source: dict[str, Any],
    destination: dict[str, Any],
) -> dict[str, Any]:
    """Move a dataset, polling the state every 20 ms; total and unavailability."""
    from flocker.testtools import lab

    poller = StatePoller(cluster, dataset_id, MOVE_POLL_INTERVAL)
    poller.start()
    try:
        poller.wait_for(lambda holders: source["uuid"] in holders, 30)
        requested_wall = time.time()
        requested = time.monotonic()
        lab.api_request(
            cluster, "POST", f"/v1/configuration/datasets/{dataset_id}",
            {"primary": destination["uuid"]},
        )  # fmt: skip
        try:
            poller.wait_for(
                lambda holders: destination["uuid"] in holders, MOVE_TIMEOUT
            )
        except RuntimeError:
            print(f"{dataset_id} never reached {destination['uuid']}", flush=True)
            return {"error": f"not exposed on the destination after {MOVE_TIMEOUT} s",
                    "total_seconds": None, "unavailable_seconds": None}  # fmt: skip
        try:
            poller.wait_for(lambda holders: source["uuid"] not in holders, 30)
        except RuntimeError:
            pass
    finally:
        poller.stopping.set()
        poller.join()
    samples = [s for s in poller.samples if s[0] >= requested]
    arrived = first_holding(samples, destination["uuid"])
    assert arrived is not None
    time.sleep(1)  # let the agent log the push's end
    pushes = rounds(primary_log(cluster), PUSH, dataset_id, requested_wall - 1)
    return {
        "total_seconds": arrived - requested,
        "unavailable_seconds": unavailable(
            samples, source["uuid"], destination["uuid"]
        ),
        "api_unavailable": windows(samples, lambda holders: not holders),
        "api_both_expose": windows(samples, lambda holders: len(holders) > 1),
        "samples": len(samples),
        "poll_errors": poller.errors,
        "pushed_bytes": sum(p["bytes"] for p in pushes),
        "push_sends": sum(p["sends"] for p in pushes),
    }


def measure_moves(cluster: dict[str, Any], size: int, seed: int) -> dict[str, Any]:
    """Section 4 for one size: the move to a replica, then the baseline move."""
    one, two, three = cluster["nodes"][:3]
    replicated_id, replicated_path = create_dataset(
        cluster, one, replicas=[two["uuid"]],
        replication={"interval_seconds": 0, "failover": "manual"},
    )  # fmt: skip
    plain_id, plain_path = create_dataset(cluster, one)
    print(f"{size / MiB:.0f} MiB: writing both datasets", flush=True)
    digest = fill(replicated_path, size, seed)
    written_at = time.time()
    plain_digest = fill(plain_path, size, seed + 1000)
    current_at = wait_replicated(
        cluster, replicated_id, [two["uuid"]], written_at, MOVE_TIMEOUT
    )
    if current_at is None:
        print(f"the replica never became current within {MOVE_TIMEOUT} s", flush=True)
    replica = replicas_of(cluster, replicated_id).get(two["uuid"], {})
    time.sleep(2)

    with_replica = timed_move(cluster, replicated_id, one, two)
    without_replica = timed_move(cluster, plain_id, one, three)
    verified = True
    for dataset_id, node, expected, move in [
        (replicated_id, two, digest, with_replica),
        (plain_id, three, plain_digest, without_replica),
    ]:  # fmt: skip
        if move["total_seconds"] is not None:
            moved = wait_exposed(cluster, dataset_id, node["uuid"])
            verified &= file_digest(os.path.join(moved, "data")) == expected
    result = {
        "data_bytes": size,
        "replica_current": current_at is not None,
        "replica_current_after_write_seconds": (
            None if current_at is None else current_at - written_at
        ),
        "replica_lag_at_move_seconds": replica.get("lag_seconds"),
        "with_replica": dict(
            with_replica, dataset_id=replicated_id, destination="node 2"
        ),
        "without_replica": dict(
            without_replica, dataset_id=plain_id, destination="node 3"
        ),
        "total_ratio": ratio(
            with_replica["total_seconds"], without_replica["total_seconds"]
        ),
        "unavailable_ratio": ratio(
            with_replica["unavailable_seconds"], without_replica["unavailable_seconds"]
        ),
        "data_verified": verified,
    }
    print(
        f"{size / MiB:.0f} MiB: with a replica total "
        f"{seconds_text(with_replica['total_seconds'])}, unavailable "
        f"{seconds_text(with_replica['unavailable_seconds'])}, pushed "
        f"{with_replica.get('pushed_bytes')} B; without total "
        f"{seconds_text(without_replica['total_seconds'])}, unavailable "
        f"{seconds_text(without_replica['unavailable_seconds'])}, pushed "
        f"{without_replica.get('pushed_bytes')} B; data "
        f"{'verified' if verified else 'CORRUPT'}",
        flush=True,
    )
    delete_and_wait(cluster, [replicated_id, plain_id])
    return result


def run(
    seconds: float, rate: float, sizes: list[int], keep_logs: str | None = None
) -> dict[str, Any]:
    """Every section on one fresh 3-node cluster, torn down even on failure."""
    from benchmark.convergence import teardown
    from flocker.testtools import lab

    load_before = list(os.getloadavg())  # the machine is shared: say how busy
    directory = tempfile.mkdtemp(prefix="flocker-bench-replication-")
    try:
        cluster = lab.up(directory, nodes=3, backend="zfs")
        load = measure_load(cluster, rate, seconds)
        moves = [
            measure_moves(cluster, size, seed) for seed, size in enumerate(sizes, 1)
        ]
    finally:
        teardown(directory, keep_logs)
    smallest = min(moves, key=lambda m: m["data_bytes"])
    largest = max(moves, key=lambda m: m["data_bytes"])
    return {
        "load": load,
        "moves": moves,
        "sizes": sizes,
        "move_order": "per size: the move to the replica node first, then the baseline",
        "flatness_total_largest_over_smallest": ratio(
            largest["with_replica"]["total_seconds"],
            smallest["with_replica"]["total_seconds"],
        ),
        "flatness_unavailable_largest_over_smallest": ratio(
            largest["with_replica"]["unavailable_seconds"],
            smallest["with_replica"]["unavailable_seconds"],
        ),
        "all_data_verified": all(m["data_verified"] for m in moves),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }


def plot(results: dict[str, Any]) -> Any:
    """Lag over time; CPU and wire ratios; move times with and without a replica."""

    def draw(axes: Any) -> None:
        figure = axes.figure
        figure.set_size_inches(12, 8)
        axes.remove()
        (lag, costs), (totals, gaps) = figure.subplots(2, 2)
        load = results["load"]
        for index, points in enumerate(load["lag"]["series"].values()):
            known = [(t, v) for t, v in points if v is not None]
            lag.plot([t for t, _ in known], [v for _, v in known], ".-", markersize=3,
                     linewidth=0.8, label=f"replica on node {index + 2}")  # fmt: skip
        lag.axhline(
            TARGET_LAG_P99, color="#c03030", linestyle=":", label="goal: p99 <= 5 s"
        )
        lag.axhline(load["lag_p99_seconds"] or 0, color="#444444", linestyle="--",
                    label=f"p99 {seconds_text(load['lag_p99_seconds'])}")  # fmt: skip
        lag.set_xlabel("seconds into the load")
        lag.set_ylabel("lag_seconds (state API)")
        lag.set_ylim(bottom=0)
        lag.set_title(
            f"lag under {load['rate_bytes_per_second'] / 1e6:g} MB/s: p50 "
            f"{seconds_text(load['lag_p50_seconds'])}", fontsize="medium",
        )  # fmt: skip
        lag.legend(fontsize="x-small")

        cpu, wire = load["cpu"], load["wire"]
        names = ["all rounds /\n(2 x written)"]
        values = [wire["sent_over_twice_written"]]
        order = list(load["lag"]["series"])  # replica nodes 2, 3, … in order
        for node, figures in wire.get("per_replica", {}).items():
            label = f"node {order.index(node) + 2}" if node in order else node[:8]
            names.append(f"{label}: received /\nwritten before it")
            values.append(figures["sent_over_written"] or 0)
        bars = costs.bar(names, values, color="#d08020")
        costs.bar_label(bars, fmt="%.3f")
        costs.axhline(1.0, color="#888888", linewidth=0.8)
        costs.axhline(
            TARGET_WIRE_RATIO, color="#c03030", linestyle=":", label="goal <= 1.1"
        )
        seconds = load["seconds"]
        costs.set_title(
            f"wire bytes{'' if wire.get('complete', True) else ' (replication STALLED)'}"
            f"; primary agent CPU {cpu['primary_agent_without_replicas_seconds'] / seconds:.3f}"
            f" -> {cpu['primary_agent_with_replicas_seconds'] / seconds:.3f} CPU s/s "
            f"(+{cpu['extra_cpu_seconds_per_second']:.3f})",
            fontsize="small",
        )
        costs.set_ylabel("bytes sent / bytes written")
        costs.tick_params(axis="x", labelsize="x-small")
        costs.legend(fontsize="x-small")

        labels = [f"{m['data_bytes'] / MiB:.0f} MiB" for m in results["moves"]]
        x = range(len(labels))
        for where, key, title in [
            (totals, "total_seconds", "move: request until exposed"),
            (gaps, "unavailable_seconds", "move: unavailable"),
        ]:
            with_ = [m["with_replica"][key] or 0 for m in results["moves"]]
            without = [m["without_replica"][key] or 0 for m in results["moves"]]
            a = where.bar([i - 0.2 for i in x], with_, 0.4, label="to a current replica",
                          color="#2a7ab9")  # fmt: skip
            b = where.bar([i + 0.2 for i in x], without, 0.4, label="to a node without one",
                          color="#888888")  # fmt: skip
            where.bar_label(a, fmt="%.2f", fontsize="x-small")
            where.bar_label(b, fmt="%.2f", fontsize="x-small")
            where.set_xticks(list(x), labels)
            where.set_ylabel("seconds")
            where.set_title(title, fontsize="medium")
            where.legend(fontsize="x-small")
        flat = results["flatness_total_largest_over_smallest"]
        figure.suptitle(
            f"Standing replicas: lag p99 {seconds_text(load['lag_p99_seconds'])}, wire "
            f"{wire['sent_over_twice_written']:.3f}, move flatness "
            f"{'n/a' if flat is None else f'{flat:.2f}'} (largest / smallest with a replica)"
        )

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario; write benchmark/results/replication.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run replication")
    parser.add_argument(
        "--seconds", type=float, default=60, help="load duration (default 60)"
    )
    parser.add_argument(
        "--rate", type=float, default=5, help="write rate, MB/s (default 5)"
    )
    parser.add_argument(
        "--sizes", default="64MiB,1GiB", help="move sizes (default 64MiB,1GiB)"
    )
    parser.add_argument("--keep-logs", help="copy the daemons' logs to this directory")
    options = parser.parse_args(argv)
    try:
        sizes = parse_sizes(options.sizes)
    except ValueError as error:
        parser.error(str(error))
    if options.seconds <= 0 or options.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    if os.geteuid() != 0:
        sys.exit("benchmark/run replication: needs root (ZFS pools)")
    results = run(options.seconds, options.rate * 1e6, sizes, options.keep_logs)
    paths = write_results("replication", results, plot(results))
    load = results["load"]
    print(json.dumps({
        "lag_p50_seconds": load["lag_p50_seconds"],
        "lag_p99_seconds": load["lag_p99_seconds"],
        "extra_cpu_seconds_per_second": load["cpu"]["extra_cpu_seconds_per_second"],
        "wire_ratio": load["wire"]["sent_over_twice_written"],
        "move_total_ratios": [m["total_ratio"] for m in results["moves"]],
        "move_unavailable_ratios": [m["unavailable_ratio"] for m in results["moves"]],
        "flatness": results["flatness_total_largest_over_smallest"],
    }, indent=1))  # fmt: skip
    print(f"-> {paths[0]}")
    if not results["all_data_verified"]:
        sys.exit(f"benchmark/run replication: CORRUPT DATA after a move -> {paths[0]}")


if __name__ == "__main__":
    main()
