"""
A closed-loop HTTP load on the counter test image, and how to summarise it.

:class:`Load` runs N client threads against one address and port.  Each
client sends numbered requests (``c<client>-<n>``: the counter appends the
text to its log, so a request acknowledged can be looked for afterwards)
one after the other, each on a new connection, through the acceptance
tests' ``attempt``, and records when it was sent, when its answer (or its
failure) came and what went wrong.  A client waits ``pause`` seconds
between requests: 0 is as fast as the service answers (a throughput
test), a few milliseconds a steady load.

The functions after it are pure: they take the recorded requests and say
how many were sent and failed in a window, their latency percentiles, the
acknowledged requests per second, the failures with their times, a
timeline in bins, and which acknowledged writes a log is missing.  Last
come the cluster queries both ``benchmark/run upgrade`` and ``benchmark/run
scale`` poll while they load an application: its instances' reported
health, its configuration entry, its containers in the Docker engine the
local cluster's nodes share.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """
    One request a client sent.

    :ivar name: The text it carried (``c<client>-<n>``).
    :ivar sent: When it was sent (monotonic seconds).
    :ivar answered: When its answer or its failure came (monotonic seconds).
    :ivar error: What went wrong (``"HTTP 500"``, ``"timeout"``, …), or
        ``""`` when the counter acknowledged it.
    """

    name: str
    sent: float
    answered: float
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the counter acknowledged the request."""
        return not self.error

    @property
    def wait(self) -> float:
        """How long the client waited for the answer or the failure."""
        return self.answered - self.sent


class Load:
    """
    ``clients`` threads sending numbered requests to ``address``:``port``
    until :meth:`stop`.
    """

    def __init__(
        self,
        address: str,
        port: int,
        clients: int = 4,
        timeout: float = 30.0,
        pause: float = 0.0,
    ) -> None:
        """
        :param timeout: Seconds each request is given (the routers hold a
            connection up to 30 s while no instance is healthy).
        :param pause: Seconds a client waits after each answer.
        """
        if clients < 1:
            raise ValueError(f"a load needs at least one client, not {clients}")
        self.address, self.port = address, port
        self.timeout, self.pause = timeout, pause
        self._stopping = threading.Event()
        self._sent: list[list[Request]] = [[] for _ in range(clients)]
        self._threads = [
            threading.Thread(target=self._client, args=(index,), daemon=True)
            for index in range(clients)
        ]

    def _client(self, index: int) -> None:
        """One client's loop: send c<index>-0, c<index>-1, … until stopped."""
        from flocker.node.test.test_acceptance_containers import attempt

        mine = self._sent[index]
        n = 0
        while not self._stopping.is_set():
            name = f"c{index}-{n}"
            sent = time.monotonic()
            count, error = attempt(self.address, self.port, name, self.timeout)
            answered = time.monotonic()
            mine.append(
                Request(name, sent, answered, "" if count is not None else error)
            )
            n += 1
            if self.pause:
                self._stopping.wait(self.pause)

    def start(self) -> None:
        """Start every client."""
        for thread in self._threads:
            thread.start()

    def acknowledged(self) -> int:
        """How many requests were acknowledged so far."""
        return sum(1 for mine in self._sent for request in list(mine) if request.ok)

    def stop(self) -> list[Request]:
        """Stop the clients (each finishes its request); every request, by time sent."""
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        return sorted((r for mine in self._sent for r in mine), key=lambda r: r.sent)


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """
    The nearest-rank percentile (``fraction`` 0.99 is p99) of ``values``;
    ``None`` when there are none.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"a percentile is a fraction in (0, 1], not {fraction}")
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def sent_between(
    requests: Iterable[Request], start: float, end: float
) -> list[Request]:
    """The requests sent in [``start``, ``end``)."""
    return [r for r in requests if start <= r.sent < end]


def summary(requests: Sequence[Request], start: float, end: float) -> dict[str, Any]:
    """
    The requests sent in [``start``, ``end``): how many, how many were
    acknowledged and failed, acknowledged ones per second of the window,
    and the acknowledged ones' latency (p50, p99, max) and the longest
    wait of any (failed ones included).
    """
    if end <= start:
        raise ValueError(f"a window ends after it starts: [{start}, {end})")
    window = sent_between(requests, start, end)
    waits = [r.wait for r in window if r.ok]
    return {
        "seconds": end - start,
        "requests": len(window),
        "acknowledged": len(waits),
        "failed": len(window) - len(waits),
        "requests_per_second": len(waits) / (end - start),
        "p50_seconds": percentile(waits, 0.5),
        "p99_seconds": percentile(waits, 0.99),
        "max_seconds": max(waits, default=None),
        "longest_wait_seconds": max((r.wait for r in window), default=None),
    }


def failures(requests: Iterable[Request], origin: float) -> list[dict[str, Any]]:
    """
    Each failed request: its name, when it was sent and answered relative
    to ``origin`` (e.g. the update request), how long it waited and why.
    """
    return [
        {
            "request": r.name,
            "sent_at_seconds": r.sent - origin,
            "failed_at_seconds": r.answered - origin,
            "waited_seconds": r.wait,
            "error": r.error,
        }
        for r in requests
        if not r.ok
    ]


def timeline(
    requests: Sequence[Request], origin: float, width: float = 0.5
) -> list[dict[str, Any]]:
    """
    The requests in bins of ``width`` seconds by time sent, relative to
    ``origin``: per bin its start, how many were sent and failed, and the
    acknowledged ones' p50 and longest latency (``None`` with none).
    Empty bins between the first and last request are kept.
    """
    if width <= 0:
        raise ValueError(f"a bin is wider than 0 s, not {width}")
    if not requests:
        return []
    first = math.floor((min(r.sent for r in requests) - origin) / width)
    last = math.floor((max(r.sent for r in requests) - origin) / width)
    bins: dict[int, list[Request]] = {index: [] for index in range(first, last + 1)}
    for r in requests:
        bins[math.floor((r.sent - origin) / width)].append(r)
    result = []
    for index, members in sorted(bins.items()):
        waits = [r.wait for r in members if r.ok]
        result.append(
            {
                "at_seconds": index * width,
                "requests": len(members),
                "failed": len(members) - len(waits),
                "p50_seconds": percentile(waits, 0.5),
                "max_seconds": max(waits, default=None),
            }
        )
    return result


def acknowledged_names(requests: Iterable[Request]) -> list[str]:
    """The names of the acknowledged requests, in the order given."""
    return [r.name for r in requests if r.ok]


def lost_writes(requests: Iterable[Request], logged: Iterable[str]) -> list[str]:
    """The acknowledged requests whose text is not among the ``logged`` lines."""
    present = set(logged)
    return [name for name in acknowledged_names(requests) if name not in present]


def each_client_in_order(requests: Iterable[Request], logged: Sequence[str]) -> bool:
    """
    Whether every client's acknowledged requests appear in the log in the
    order the client sent them (clients interleave; each one is sequential).
    """
    position = {line: index for index, line in enumerate(logged)}
    last: dict[str, int] = {}
    for r in sorted(requests, key=lambda r: r.sent):
        if not r.ok or r.name not in position:
            continue
        client = r.name.split("-", 1)[0]
        if position[r.name] < last.get(client, -1):
            return False
        last[client] = position[r.name]
    return True


def parse_load_options(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    seconds: float,
    clients: int,
    seconds_help: str,
) -> argparse.Namespace:
    """
    Parse ``argv`` with ``parser`` plus the options every load scenario
    takes: ``--seconds`` (default ``seconds``), ``--clients`` (default
    ``clients``) and ``--keep-logs``; a ``--seconds`` not above 0 or fewer
    than one client exits with usage (status 2).
    """
    parser.add_argument(
        "--seconds",
        type=float,
        default=seconds,
        help=f"{seconds_help} (default {seconds:g})",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=clients,
        help=f"concurrent clients (default {clients})",
    )
    parser.add_argument("--keep-logs", help="copy the daemons' logs to this directory")
    options = parser.parse_args(argv)
    if not options.seconds > 0:
        parser.error("--seconds must be more than 0")
    if options.clients < 1:
        parser.error("--clients must be at least 1")
    return options


# The cluster side: what the benchmarks poll while they load an application.


def reported_health(
    containers: Sequence[Mapping[str, Any]], name: str
) -> dict[str, str | None]:
    """
    Node UUID → the health its node reports for application ``name``
    (``None`` when it reports none), from a ``GET /v1/state/containers``
    listing.
    """
    return {
        entry["node_uuid"]: entry.get("health")
        for entry in containers
        if entry.get("name") == name
    }


def state_containers(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """``GET /v1/state/containers``, or nothing while the control service does not answer."""
    from flocker.testtools import lab

    try:
        listing: list[dict[str, Any]] = lab.api_request(
            cluster, "GET", "/v1/state/containers"
        )
    except OSError:
        return []
    return listing


def configured(cluster: dict[str, Any], name: str) -> dict[str, Any]:
    """The application's entry in ``GET /v1/configuration/containers``."""
    from flocker.testtools import lab

    for entry in lab.api_request(cluster, "GET", "/v1/configuration/containers"):
        if entry["name"] == name:
            found: dict[str, Any] = entry
            return found
    raise LookupError(f"{name} is not configured")


def healthy_instances(cluster: dict[str, Any], name: str) -> list[str]:
    """The nodes reporting application ``name`` healthy."""
    health = reported_health(state_containers(cluster), name)
    return sorted(node for node, status in health.items() if status == "healthy")


def instance_containers(client: Any, name: str) -> dict[str, Any]:
    """
    Node UUID → its running container of application ``name``, as the
    Docker SDK ``client`` lists it.
    """
    from flocker.runtime._interface import APPLICATION_LABEL, NODE_LABEL

    found = {}
    for container in client.containers.list(
        filters={"label": f"{APPLICATION_LABEL}={name}", "status": "running"}
    ):
        found[(container.attrs["Config"].get("Labels") or {})[NODE_LABEL]] = container
    return found


def with_docker(use: Callable[[Any], T]) -> T:
    """``use`` a Docker SDK client for this machine's engine, closed afterwards."""
    import docker

    client = docker.from_env()
    try:
        return use(client)
    finally:
        client.close()
