"""
Benchmark: moving a dataset between the nodes of a local cluster.

On a 2-node local cluster (``flocker.testtools.lab``, zfs backend) a dataset
is created on node 1 and filled with N bytes of random data; then
``POST /v1/configuration/datasets/<id> {"primary": node 2}`` asks for the
move.  Measured:

* **total**: from the request until ``GET /v1/state/datasets`` shows the
  dataset with its path on node 2;
* **unavailability, as the API shows it**: a thread polls the state as fast
  as one keep-alive HTTPS connection allows and records which nodes report
  the dataset with a path; the time during which *no* node does is given as
  a lower bound (between samples that saw nothing) and an upper bound
  (between the samples around them).  Times when *both* nodes report a path
  are recorded too;
* **unavailability, from the agents' eliot logs**: from the moment the
  source agent stops exposing the dataset (it starts the final snapshot of
  the ``flocker:node:dataset:push`` action right after) until the
  destination has stored and exposed the final increment (its
  ``flocker:volume:transfer:receive`` action ends), and until it reported
  that to the control service (the next ``flocker:control:amp:report_state``
  ends), with a breakdown of where that time goes.

The bytes on node 2 are checked (SHA-256) after every move: a move that
corrupts data fails the benchmark.  Baseline in the same run: a plain local
``zfs send | zfs recv`` of the same data from node 1's pool into node 2's.
Target: unavailable < 1 s, independent of the dataset size.

    benchmark/run move [--size 1GiB] [--sizes 64MiB,256MiB,1GiB] [--repetitions 1]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from benchmark._harness import summarize, write_results

MiB = 1024 * 1024
GiB = 1024 * MiB
TARGET_UNAVAILABLE = 1.0

#: One state sample: (request sent, reply read, nodes reporting a path).
Sample = tuple[float, float, frozenset[str]]


def parse_size(text: str) -> int:
    """``"1GiB"``, ``"64MiB"``, ``"1G"``, ``"512M"``, or bytes -> bytes."""
    value = text.strip()
    units = {"k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB}
    lowered = value.lower()
    for suffix in ("ib", "b"):
        if lowered.endswith(suffix) and lowered[: -len(suffix)][-1:] in units:
            lowered = lowered[: -len(suffix)]
            break
    factor = 1
    if lowered[-1:] in units:
        factor = units[lowered[-1]]
        lowered = lowered[:-1]
    try:
        number = float(lowered)
    except ValueError:
        raise ValueError(f"not a size: {text!r}") from None
    size = int(number * factor)
    if size <= 0:
        raise ValueError(f"a size must be positive: {text!r}")
    return size


def parse_sizes(text: str) -> list[int]:
    """A comma-separated list of sizes -> bytes each, in the order given."""
    sizes = [parse_size(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise ValueError(f"no sizes in {text!r}")
    return sizes


# ---------------------------------------------------------------------------
# Pure helpers: state samples and eliot logs


def windows(
    samples: Sequence[Sample], predicate: Callable[[frozenset[str]], bool]
) -> dict[str, Any]:
    """
    The time during which ``predicate(holders)`` held, from state samples.

    For each run of consecutive samples where it holds, the lower bound runs
    from the first to the last such sample's reply; the upper bound from the
    reply of the sample before the run to the request of the sample after it
    (or the run's own ends where there is none).
    """
    lower = upper = 0.0
    runs = 0
    index = 0
    while index < len(samples):
        if not predicate(samples[index][2]):
            index += 1
            continue
        first = index
        while index < len(samples) and predicate(samples[index][2]):
            index += 1
        last = index - 1
        runs += 1
        lower += samples[last][1] - samples[first][1]
        start = samples[first - 1][1] if first > 0 else samples[first][0]
        end = samples[index][0] if index < len(samples) else samples[last][1]
        upper += end - start
    return {"lower_seconds": lower, "upper_seconds": upper, "runs": runs}


def first_holding(samples: Sequence[Sample], node: str) -> float | None:
    """The reply time of the first sample in which ``node`` reports a path."""
    for _, replied, holders in samples:
        if node in holders:
            return replied
    return None


def read_log(path: str) -> list[dict[str, Any]]:
    """The eliot messages of a log file (lines that are not JSON are skipped)."""
    messages = []
    with open(path) as handle:
        for line in handle:
            try:
                messages.append(json.loads(line))
            except ValueError:
                continue
    return messages


def _end_of(messages: Iterable[dict[str, Any]], start: dict[str, Any]) -> dict[str, Any] | None:
    """The message that ends the action ``start`` began."""
    prefix = start["task_level"][:-1]
    for message in messages:
        if (
            message.get("task_uuid") == start.get("task_uuid")
            and message.get("action_type") == start["action_type"]
            and message.get("action_status") in ("succeeded", "failed")
            and message["task_level"][:-1] == prefix
        ):
            return message
    return None


def _started(
    messages: Iterable[dict[str, Any]], action_type: str, after: float, **fields: Any
) -> list[dict[str, Any]]:
    """Start messages of ``action_type`` at or after ``after`` with ``fields``."""
    return [
        m
        for m in messages
        if m.get("action_type") == action_type
        and m.get("action_status") == "started"
        and m.get("timestamp", 0) >= after
        and all(m.get(k) == v for k, v in fields.items())
    ]


def _inside(
    messages: Iterable[dict[str, Any]], action_type: str, outer: dict[str, Any]
) -> list[dict[str, Any]]:
    """Start messages of ``action_type`` nested in the action ``outer`` began."""
    prefix = outer["task_level"][:-1]
    return [
        m
        for m in messages
        if m.get("action_type") == action_type
        and m.get("action_status") == "started"
        and m.get("task_uuid") == outer.get("task_uuid")
        and m["task_level"][: len(prefix)] == prefix
        and len(m["task_level"]) > len(prefix) + 1
    ]


def _duration(messages: list[dict[str, Any]], start: dict[str, Any] | None) -> float | None:
    if start is None:
        return None
    end = _end_of(messages, start)
    return None if end is None else end["timestamp"] - start["timestamp"]


def move_timeline(
    source: list[dict[str, Any]],
    destination: list[dict[str, Any]],
    dataset_id: str,
    after: float,
) -> dict[str, Any]:
    """
    When the last move of ``dataset_id`` (at or after wall time ``after``)
    handed the dataset over, from the source's and destination's eliot logs.

    The source marks the dataset as no longer exposed immediately before it
    takes the final snapshot, so the start of that ``flocker:volume:snapshot``
    action is the start of the window; the final stream is the last
    ``flocker:volume:transfer:send`` of the dataset.  The destination exposes
    the dataset durably before its ``flocker:volume:transfer:receive`` of
    that snapshot ends; the control service hears of it when its next
    ``flocker:control:amp:report_state`` ends.

    :raise ValueError: if the logs do not show a complete move.
    """
    pushes = _started(source, "flocker:node:dataset:push", after, dataset_id=dataset_id)
    sends = _started(source, "flocker:volume:transfer:send", after, dataset_id=dataset_id)
    if not pushes or not sends:
        raise ValueError(f"the source log shows no push of {dataset_id}")
    final = sends[-1]
    snapshot = final["snapshot"]
    [snapshot_start, *_] = _started(
        source, "flocker:volume:snapshot", after, dataset_id=dataset_id, snapshot=snapshot
    ) or [None]
    if snapshot_start is None:
        raise ValueError(f"the source log shows no snapshot {snapshot}")
    send_end = _end_of(source, final)
    receives = _started(
        destination, "flocker:volume:transfer:receive", after,
        dataset_id=dataset_id, snapshot=snapshot,
    )  # fmt: skip
    if not receives:
        raise ValueError(f"the destination log shows no receive of {snapshot}")
    receive = receives[-1]
    receive_end = _end_of(destination, receive)
    if receive_end is None or receive_end.get("action_status") != "succeeded":
        raise ValueError(f"the destination did not store {snapshot}")
    stored_at = receive_end["timestamp"]
    finishes = _inside(destination, "flocker:volume:receive_finish", receive)
    streams = _inside(destination, "flocker:volume:receive", receive)
    reports = [
        m
        for m in _started(destination, "flocker:control:amp:report_state", stored_at)
        if _end_of(destination, m) is not None
    ]
    reported_at = _end_of(destination, reports[0])["timestamp"] if reports else None  # type: ignore[index]
    handoff_at = snapshot_start["timestamp"]
    rounds = []
    for send in sends:
        end = _end_of(source, send)
        rounds.append(
            {
                "snapshot": send["snapshot"],
                "base": send.get("base"),
                "bytes": None if end is None else end.get("bytes"),
                "seconds": None if end is None else end["timestamp"] - send["timestamp"],
            }
        )
    return {
        "push_started_at": pushes[0]["timestamp"],
        "handoff_at": handoff_at,
        "stored_at": stored_at,
        "reported_at": reported_at,
        "unavailable_until_stored_seconds": stored_at - handoff_at,
        "unavailable_until_reported_seconds": (
            None if reported_at is None else reported_at - handoff_at
        ),
        "final_round": {
            "snapshot_seconds": final["timestamp"] - handoff_at,
            "send_seconds": (
                None if send_end is None else send_end["timestamp"] - final["timestamp"]
            ),
            "connect_seconds": receive["timestamp"] - final["timestamp"],
            "receive_stream_seconds": _duration(destination, streams[0] if streams else None),
            "receive_finish_seconds": _duration(
                destination, finishes[0] if finishes else None
            ),
            "stored_to_reported_seconds": (
                None if reported_at is None else reported_at - stored_at
            ),
        },
        "rounds": rounds,
    }


# ---------------------------------------------------------------------------
# Talking to the cluster


class StatePoller(threading.Thread):
    """
    Polls ``GET /v1/state/datasets`` over one keep-alive HTTPS connection and
    records which nodes report ``dataset_id`` with a path.
    """

    def __init__(self, cluster: dict[str, Any], dataset_id: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.dataset_id = dataset_id
        self.interval = interval
        self.samples: list[Sample] = []
        self.errors = 0
        self.stopping = threading.Event()
        self.changed = threading.Condition()

    def _connect(self) -> http.client.HTTPSConnection:
        certificates = self.cluster["certificates"]
        context = ssl.create_default_context(cafile=certificates["ca"])
        context.load_cert_chain(certificates["user_cert"], certificates["user_key"])
        control = self.cluster["control"]
        return http.client.HTTPSConnection(
            control["host"], control["api_port"], context=context, timeout=10
        )

    def run(self) -> None:
        """Sample until stopped."""
        connection = self._connect()
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                connection.request("GET", "/v1/state/datasets")
                reply = connection.getresponse()
                entries = json.loads(reply.read())
            except (OSError, http.client.HTTPException, ValueError):
                self.errors += 1
                connection.close()
                connection = self._connect()
                continue
            replied = time.monotonic()
            holders = frozenset(
                entry["primary"]
                for entry in entries
                if entry.get("dataset_id") == self.dataset_id and entry.get("path")
            )
            with self.changed:
                self.samples.append((sent, replied, holders))
                self.changed.notify_all()
            time.sleep(self.interval)
        connection.close()

    def wait_for(self, predicate: Callable[[frozenset[str]], bool], timeout: float) -> None:
        """Block until a sample satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (self.samples and predicate(self.samples[-1][2])):
                left = deadline - time.monotonic()
                if left <= 0 or not self.is_alive():
                    raise RuntimeError(f"timed out waiting for {self.dataset_id}")
                self.changed.wait(min(left, 1))


def fill(path: str, size: int, seed: int) -> str:
    """Write ``size`` pseudo-random bytes to ``path``/data; their SHA-256."""
    generator = random.Random(seed)
    digest = hashlib.sha256()
    with open(os.path.join(path, "data"), "wb") as handle:
        left = size
        while left:
            chunk = generator.randbytes(min(left, 4 * MiB))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    subprocess.run(["sync"], check=True)
    return digest.hexdigest()


def file_digest(path: str) -> str:
    """SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def pipe_baseline(source_pool: str, dataset_id: str, target_pool: str) -> float:
    """Seconds for a plain ``zfs send | zfs recv`` of the dataset to the other pool."""
    from benchmark.transfer import destroy_dataset, local_pipe

    snapshot = f"{source_pool}/{dataset_id}@bench-baseline"
    target = f"{target_pool}/bench-baseline-copy"
    subprocess.run(["zfs", "snapshot", snapshot], check=True, capture_output=True)
    try:
        seconds = local_pipe(snapshot, target)
    finally:
        destroy_dataset(target)
        for _ in range(50):
            if not subprocess.run(["zfs", "destroy", snapshot], capture_output=True).returncode:
                break
            time.sleep(0.2)
    subprocess.run(["sync"], check=True)
    return seconds


def wait_exposed(cluster: dict[str, Any], dataset_id: str, node_uuid: str) -> str:
    """Poll until ``node_uuid`` exposes the dataset; its path."""
    from flocker.testtools import lab

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for entry in lab.api_request(cluster, "GET", "/v1/state/datasets"):
            if (
                entry["dataset_id"] == dataset_id
                and entry["primary"] == node_uuid
                and entry.get("path")
            ):
                return str(entry["path"])
        time.sleep(0.05)
    raise RuntimeError(f"{dataset_id} was never exposed on {node_uuid}")


class CorruptMove(Exception):
    """The moved dataset's bytes differ from those written."""


def measure_move(
    cluster: dict[str, Any], size: int, interval: float, seed: int
) -> dict[str, Any]:
    """Create, fill, baseline-copy and move one dataset; its figures."""
    from flocker.testtools import lab

    one, two = cluster["nodes"][:2]
    dataset_id = str(uuid.uuid4())
    lab.api_request(
        cluster, "POST", "/v1/configuration/datasets",
        {"primary": one["uuid"], "dataset_id": dataset_id},
    )  # fmt: skip
    path = wait_exposed(cluster, dataset_id, one["uuid"])
    print(f"writing {size / MiB:.0f} MiB into {dataset_id} on node 1", flush=True)
    written = fill(path, size, seed)
    pipe_seconds = pipe_baseline(one["pool"], dataset_id, two["pool"])
    print(f"baseline zfs send | zfs recv: {pipe_seconds:.2f} s", flush=True)
    time.sleep(2)  # let the agents see the baseline snapshot come and go

    poller = StatePoller(cluster, dataset_id, interval)
    poller.start()
    poller.wait_for(lambda holders: one["uuid"] in holders, 30)
    requested_wall = time.time()
    requested = time.monotonic()
    lab.api_request(
        cluster, "POST", f"/v1/configuration/datasets/{dataset_id}", {"primary": two["uuid"]}
    )
    try:
        poller.wait_for(lambda holders: two["uuid"] in holders, 600)
        # Keep sampling until the source's copy has left the state too.
        try:
            poller.wait_for(lambda holders: one["uuid"] not in holders, 30)
        except RuntimeError:
            pass
        time.sleep(0.2)
    finally:
        poller.stopping.set()
        poller.join()
    samples = [s for s in poller.samples if s[0] >= requested]
    arrived = first_holding(samples, two["uuid"])
    assert arrived is not None
    total = arrived - requested
    unavailable = windows(samples, lambda holders: not holders)
    overlap = windows(samples, lambda holders: len(holders) > 1)
    intervals = [b[1] - a[1] for a, b in zip(samples, samples[1:], strict=False)]

    new_path = wait_exposed(cluster, dataset_id, two["uuid"])
    moved = file_digest(os.path.join(new_path, "data"))
    if moved != written:
        raise CorruptMove(
            f"{dataset_id}: node 2 has sha256 {moved}, node 1 had {written}"
        )

    timeline = move_timeline(
        read_log(os.path.join(one["log_dir"], "flocker-dataset-agent.log")),
        read_log(os.path.join(two["log_dir"], "flocker-dataset-agent.log")),
        dataset_id,
        requested_wall - 1,
    )
    timeline["push_started_after_request_seconds"] = (
        timeline["push_started_at"] - requested_wall
    )
    result = {
        "dataset_id": dataset_id,
        "data_bytes": size,
        "sha256": written,
        "verified": True,
        "total_seconds": total,
        "local_pipe_seconds": pipe_seconds,
        "total_to_pipe_ratio": total / pipe_seconds,
        "api_unavailable": unavailable,
        "api_both_nodes_expose": overlap,
        "api_samples": len(samples),
        "api_sample_interval_median_seconds": (
            sorted(intervals)[len(intervals) // 2] if intervals else None
        ),
        "api_poll_errors": poller.errors,
        "log": timeline,
    }
    print(
        f"{size / MiB:.0f} MiB: total {total:.2f} s (pipe {pipe_seconds:.2f} s); "
        f"unavailable via API {unavailable['lower_seconds']:.3f}-"
        f"{unavailable['upper_seconds']:.3f} s, both nodes exposing "
        f"{overlap['upper_seconds']:.3f} s; from logs until stored "
        f"{timeline['unavailable_until_stored_seconds']:.3f} s, until reported "
        f"{timeline['unavailable_until_reported_seconds'] or float('nan'):.3f} s; "
        f"sha256 verified",
        flush=True,
    )
    return result


def per_size(moves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each size, summaries of the figures over its repetitions."""
    sizes = sorted({m["data_bytes"] for m in moves})
    table = []
    for size in sizes:
        mine = [m for m in moves if m["data_bytes"] == size]
        reported = [
            m["log"]["unavailable_until_reported_seconds"]
            for m in mine
            if m["log"]["unavailable_until_reported_seconds"] is not None
        ]
        table.append(
            {
                "data_bytes": size,
                "repetitions": len(mine),
                "total_seconds": summarize([m["total_seconds"] for m in mine]),
                "local_pipe_seconds": summarize([m["local_pipe_seconds"] for m in mine]),
                "api_unavailable_upper_seconds": summarize(
                    [m["api_unavailable"]["upper_seconds"] for m in mine]
                ),
                "log_unavailable_until_stored_seconds": summarize(
                    [m["log"]["unavailable_until_stored_seconds"] for m in mine]
                ),
                "log_unavailable_until_reported_seconds": (
                    summarize(reported) if reported else None
                ),
            }
        )
    return table


def run(
    sizes: list[int], interval: float, repetitions: int = 1, keep_logs: str | None = None
) -> dict[str, Any]:
    """Measure ``repetitions`` moves of each size on a fresh local cluster."""
    from benchmark.convergence import teardown
    from flocker.testtools import lab

    load_before = list(os.getloadavg())  # the machine is shared: say how busy
    directory = tempfile.mkdtemp(prefix="flocker-bench-move-")
    moves = []
    try:
        cluster = lab.up(directory, nodes=2, backend="zfs")
        seed = 0
        for repetition in range(repetitions):
            for size in sizes:
                seed += 1
                print(f"repetition {repetition + 1}/{repetitions}", flush=True)
                moves.append(measure_move(cluster, size, interval, seed=seed))
                # Free node 2's pool for the next one (not waited for).
                lab.api_request(
                    cluster, "DELETE", f"/v1/configuration/datasets/{moves[-1]['dataset_id']}"
                )
    finally:
        teardown(directory, keep_logs)
    worst = max(
        max(
            m["api_unavailable"]["upper_seconds"],
            m["log"]["unavailable_until_reported_seconds"]
            or m["log"]["unavailable_until_stored_seconds"],
        )
        for m in moves
    )
    return {
        "sizes": sizes,
        "repetitions": repetitions,
        "poll_interval_seconds": interval,
        "per_size": per_size(moves),
        "moves": moves,
        "target_unavailable_seconds": TARGET_UNAVAILABLE,
        "worst_unavailable_seconds": worst,
        "meets_target": worst < TARGET_UNAVAILABLE,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }


def plot(results: dict[str, Any]) -> Any:
    """Every move's total time and unavailability against size; medians joined."""

    def draw(axes: Any) -> None:
        table = results["per_size"]
        sizes = [row["data_bytes"] / MiB for row in table]
        figure = axes.figure
        axes.remove()
        times, windows_axes = figure.subplots(1, 2)
        series = [
            (times, "total_seconds", lambda m: m["total_seconds"], "o-", "#2a7ab9",
             "move: total (API)"),
            (times, "local_pipe_seconds", lambda m: m["local_pipe_seconds"], "s--",
             "#888888", "local zfs send | zfs recv"),
            (windows_axes, "log_unavailable_until_reported_seconds",
             lambda m: m["log"]["unavailable_until_reported_seconds"], "v-", "#a03030",
             "logs: until reported"),
            (windows_axes, "log_unavailable_until_stored_seconds",
             lambda m: m["log"]["unavailable_until_stored_seconds"], "x:", "#a03030",
             "logs: until stored"),
            (windows_axes, "api_unavailable_upper_seconds",
             lambda m: m["api_unavailable"]["upper_seconds"], "^-", "#d08020",
             "API polling (upper bound)"),
        ]  # fmt: skip
        for where, key, value, style, colour, label in series:
            medians = [row[key]["median"] if row[key] else None for row in table]
            where.plot(sizes, medians, style, color=colour, label=label)
            points = [(m["data_bytes"] / MiB, value(m)) for m in results["moves"]]
            where.scatter(
                [x for x, y in points if y is not None],
                [y for x, y in points if y is not None],
                color=colour, s=10, alpha=0.5,
            )  # fmt: skip
        windows_axes.axhline(
            TARGET_UNAVAILABLE, color="#c03030", linestyle=":", label="target"
        )
        for where in (times, windows_axes):
            if len(sizes) > 1:
                where.set_xscale("log", base=2)
            where.set_xticks(sizes)
            where.set_xticklabels([f"{s:.0f}" for s in sizes])
            where.set_xlabel("dataset size (MiB)")
            where.set_ylim(bottom=0)
            where.legend(loc="upper left", fontsize="x-small")
        times.set_ylabel("seconds (lines: medians)")
        times.set_title("time to move", fontsize="medium")
        windows_axes.set_title("time unavailable", fontsize="medium")
        figure.suptitle(
            f"Moving a dataset between two nodes ({results['repetitions']} per size): "
            f"worst unavailability {results['worst_unavailable_seconds']:.2f} s"
        )

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario; write benchmark/results/move.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run move")
    parser.add_argument("--size", default="1GiB", help="data size (default 1GiB)")
    parser.add_argument("--sizes", help="several sizes, e.g. 64MiB,256MiB,1GiB")
    parser.add_argument("--interval", type=float, default=0.005, help="API poll interval, s")
    parser.add_argument("--repetitions", type=int, default=1, help="moves per size")
    parser.add_argument("--keep-logs", help="copy the daemons' logs to this directory")
    options = parser.parse_args(argv)
    try:
        sizes = parse_sizes(options.sizes) if options.sizes else [parse_size(options.size)]
    except ValueError as error:
        parser.error(str(error))
    if options.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    if os.geteuid() != 0:
        sys.exit("benchmark/run move: needs root (ZFS pools)")
    try:
        results = run(sizes, options.interval, options.repetitions, options.keep_logs)
    except CorruptMove as error:
        sys.exit(f"benchmark/run move: CORRUPT DATA after the move: {error}")
    paths = write_results("move", results, plot(results))
    print(
        f"worst unavailability {results['worst_unavailable_seconds']:.3f} s: target "
        f"< {TARGET_UNAVAILABLE} s {'met' if results['meets_target'] else 'MISSED'} "
        f"-> {paths[0]}"
    )


if __name__ == "__main__":
    main()
