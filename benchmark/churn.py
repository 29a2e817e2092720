"""
Benchmark: many clients creating and deleting datasets at once, and whether
the cluster converges afterwards.

A local cluster (``admin/lab``: real zfs-fuse pools, real agents, real TLS)
takes ``--clients`` threads (50 by default) that each create a dataset on a
random node, delete it, and start again, for ``--duration`` seconds.  Meanwhile
the scenario samples, every 50 ms, how many ``zfs``/``zpool`` commands each
dataset agent is running (its child processes), and once a second what
``GET /v1/state/nodes`` says of each node (failing changes, last successful
convergence).  When the load stops it measures how long until the cluster
has converged: the state holds exactly the datasets the configuration does,
and no node reports a failing change.

The baseline, in the same run and on the same cluster: the time for one
dataset to be created and appear in the state, then deleted and gone, with
nothing else happening.  Before Flocker bounded its agents' storage
commands, this load drove up to 76 concurrent ``zfs`` commands in one agent
and deadlocked zfs-fuse within 15 s.

    benchmark/run churn [--clients 50] [--duration 30] [--nodes 2]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
import urllib.error
from typing import Any

from benchmark._harness import summarize, write_results
from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

MIB = 1024 * 1024

#: Where the benchmark's nodes live (no other local cluster uses it).
NETWORK = "198.18.9."


def storage_commands(agent_pids: list[int]) -> dict[int, int]:
    """How many ``zfs``/``zpool`` processes each agent has as children now."""
    counts = dict.fromkeys(agent_pids, 0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if name in ("zfs", "zpool") and parent in counts:
            counts[parent] += 1
    return counts


def _state_datasets(cluster: dict[str, Any]) -> set[str]:
    return {d["dataset_id"] for d in lab.api_request(cluster, "GET", "/v1/state/datasets")}


def _configured(cluster: dict[str, Any]) -> set[str]:
    return {
        d["dataset_id"]
        for d in lab.api_request(cluster, "GET", "/v1/configuration/datasets")
        if not d.get("deleted")
    }


def _failing(cluster: dict[str, Any]) -> int:
    return sum(
        len(node.get("failing_changes") or [])
        for node in lab.api_request(cluster, "GET", "/v1/state/nodes")
    )


def converged(cluster: dict[str, Any]) -> bool:
    """The state holds exactly the configured datasets, and nothing fails."""
    return _state_datasets(cluster) == _configured(cluster) and _failing(cluster) == 0


def baseline(cluster: dict[str, Any], rounds: int = 3) -> list[float]:
    """Seconds for one dataset to be created and appear, then deleted and gone."""
    seconds = []
    node = cluster["nodes"][0]["uuid"]
    for _ in range(rounds):
        started = time.monotonic()
        made = lab.api_request(
            cluster,
            "POST",
            "/v1/configuration/datasets",
            {"primary": node, "maximum_size": 16 * MIB},
        )["dataset_id"]
        wait_for(lambda m=made: m in _state_datasets(cluster), 120, "the dataset")
        lab.api_request(cluster, "DELETE", f"/v1/configuration/datasets/{made}")
        wait_for(lambda m=made: m not in _state_datasets(cluster), 120, "its removal")
        seconds.append(time.monotonic() - started)
    return seconds


class Client(threading.Thread):
    """Creates a dataset on a random node, deletes it, again, until stopped."""

    def __init__(self, cluster: dict[str, Any], stopping: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cluster, self.stopping = cluster, stopping
        self.nodes = [node["uuid"] for node in cluster["nodes"]]
        self.requests = 0
        self.errors: dict[str, int] = {}

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        self.requests += 1
        try:
            return lab.api_request(self.cluster, method, path, body)
        except urllib.error.HTTPError as error:
            key = str(error.code)
        except OSError as error:
            key = type(error).__name__
        self.errors[key] = self.errors.get(key, 0) + 1
        return None

    def run(self) -> None:
        """Churn until told to stop."""
        while not self.stopping.is_set():
            made = self._call(
                "POST",
                "/v1/configuration/datasets",
                {"primary": random.choice(self.nodes), "maximum_size": 16 * MIB},
            )
            if made is not None:
                self._call("DELETE", f"/v1/configuration/datasets/{made['dataset_id']}")


def run(clients: int, duration: float, nodes: int, directory: str) -> dict[str, Any]:
    """Churn a fresh local cluster; the results document."""
    cluster = lab.up(directory, nodes=nodes, network=NETWORK)
    try:
        base = baseline(cluster)
        print(f"baseline create+delete: {[round(s, 2) for s in base]} s", flush=True)
        agents = [node["pids"]["dataset"] for node in cluster["nodes"]]
        stopping = threading.Event()
        workers = [Client(cluster, stopping) for _ in range(clients)]
        commands: list[tuple[float, list[int]]] = []
        failing: list[tuple[float, int]] = []
        sampling = threading.Event()

        def sample() -> None:
            last_state = 0.0
            while not sampling.is_set():
                now = time.monotonic() - started
                counts = storage_commands(agents)
                commands.append((now, [counts[pid] for pid in agents]))
                if now - last_state >= 1.0:
                    last_state = now
                    try:
                        failing.append((now, _failing(cluster)))
                    except OSError:
                        pass
                time.sleep(0.05)

        started = time.monotonic()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for worker in workers:
            worker.start()
        time.sleep(duration)
        stopping.set()
        for worker in workers:
            worker.join(60)
        load_ended = time.monotonic()
        deadline = load_ended + 600
        settled: float | None = None
        while time.monotonic() < deadline:
            try:
                if converged(cluster):
                    settled = time.monotonic() - load_ended
                    break
            except OSError:
                pass
            time.sleep(0.5)
        sampling.set()
        sampler.join(10)
    finally:
        lab.down(directory)
    peak_per_agent = max((max(c) for _, c in commands), default=0)
    peak_total = max((sum(c) for _, c in commands), default=0)
    requests = sum(w.requests for w in workers)
    errors: dict[str, int] = {}
    for worker in workers:
        for key, count in worker.errors.items():
            errors[key] = errors.get(key, 0) + count
    base_summary = summarize(base)
    return {
        "clients": clients,
        "duration_seconds": duration,
        "nodes": nodes,
        "requests": requests,
        "request_errors": errors,
        "peak_storage_commands_per_agent": peak_per_agent,
        "peak_storage_commands_all_agents": peak_total,
        "converged": settled is not None,
        "seconds_to_converge_after_load": settled,
        "baseline_create_delete_seconds": base_summary,
        "converge_over_baseline": None
        if settled is None
        else settled / base_summary["median"],
        "peak_failing_changes": max((f for _, f in failing), default=0),
        "samples": {"storage_commands": commands, "failing_changes": failing},
    }


def plot(results: dict[str, Any]) -> Any:
    """Storage commands per agent over time, and failing changes."""

    def draw(axes: Any) -> None:
        commands = results["samples"]["storage_commands"]
        times = [t for t, _ in commands]
        for index in range(results["nodes"]):
            axes.plot(
                times, [c[index] for _, c in commands], label=f"zfs commands, agent {index + 1}"
            )
        failing = results["samples"]["failing_changes"]
        axes.plot(
            [t for t, _ in failing],
            [f for _, f in failing],
            "k--",
            label="failing changes (all nodes)",
        )
        axes.axvline(results["duration_seconds"], color="red", linestyle=":", label="load stops")
        axes.set_xlabel("seconds since the load started")
        settled = results["seconds_to_converge_after_load"]
        axes.set_title(
            f"{results['clients']} clients creating and deleting datasets: peak "
            f"{results['peak_storage_commands_per_agent']} zfs commands per agent; "
            + (
                f"converged {settled:.1f} s after the load"
                if settled is not None
                else "did not converge"
            ),
            fontsize=9,
        )
        axes.legend(fontsize=8)

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario and write benchmark/results/churn.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run churn")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--nodes", type=int, default=2)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flocker-churn-") as directory:
        results = run(options.clients, options.duration, options.nodes, directory)
    paths = write_results("churn", results, plot(results))
    print(
        f"{results['requests']} requests, peak {results['peak_storage_commands_per_agent']} "
        f"zfs commands per agent, converged after "
        f"{results['seconds_to_converge_after_load']} s -> {paths[0]}"
    )


if __name__ == "__main__":
    main()
