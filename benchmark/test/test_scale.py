"""
Tests for the pure parts of the scale benchmark (instance counts, where
Docker published a port, requests served per instance, ratios, options,
the plot) and of the closed-loop load, against real HTTP servers on
127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from benchmark._harness import write_results
from benchmark._load import Load, ratio, summary
from benchmark.scale import (
    parse_instances,
    parse_options,
    plot,
    published_binding,
    served,
)


def test_instance_counts_parse_in_increasing_order() -> None:
    """A comma-separated list of increasing counts from 1 to the nodes parses, spaces allowed."""
    assert parse_instances("1,2,3") == [1, 2, 3]
    assert parse_instances(" 1, 3 ") == [1, 3]
    assert parse_instances("2") == [2]
    assert parse_instances("1,2,3,4,5", nodes=5) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not an instance count"),
        ("1,,2", "not an instance count"),
        ("one", "not an instance count"),
        ("1.5", "not an instance count"),
        ("0,1", "from 1 to 3"),
        ("1,4", "from 1 to 3"),
        ("-1", "from 1 to 3"),
        ("2,1", "increase"),
        ("1,1,2", "increase"),
    ],
)
def test_bad_instance_counts_are_refused_saying_why(text: str, why: str) -> None:
    """Anything but increasing counts from 1 to the number of nodes is refused."""
    with pytest.raises(ValueError, match=why):
        parse_instances(text)


def test_options_default_and_parse_the_instance_counts() -> None:
    """Without options: 15 s per phase, 8 clients, 1, 2 and 3 instances."""
    options = parse_options([])
    assert (options.seconds, options.clients, options.instances) == (15.0, 8, [1, 2, 3])
    assert parse_options(["--instances", "1,3", "--clients", "2"]).instances == [1, 3]


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--instances", "3,2"], "increase"),
        (["--instances", "4"], "from 1 to 3"),
        (["--instances", "two"], "not an instance count"),
    ],
)
def test_bad_instance_options_exit_saying_why(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Bad instance counts exit with status 2 before any cluster starts, the
    usage saying what is wrong (the options every load scenario shares are
    tested with the update benchmark's).
    """
    with pytest.raises(SystemExit) as exited:
        parse_options(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: benchmark/run scale") and why in error


def test_published_binding_is_the_host_address_and_port_docker_chose() -> None:
    """The binding's address and port; an address of 0.0.0.0 or none is the node's."""
    ports: dict[str, Any] = {"80/tcp": [{"HostIp": "198.18.0.11", "HostPort": "32768"}]}
    assert published_binding(ports, 80, "10.0.0.1") == ("198.18.0.11", 32768)
    wildcard: dict[str, Any] = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40000"}]}
    assert published_binding(wildcard, 80, "198.18.0.12") == ("198.18.0.12", 40000)
    bare: dict[str, Any] = {"80/tcp": [{"HostIp": "", "HostPort": "40001"}]}
    assert published_binding(bare, 80, "198.18.0.13") == ("198.18.0.13", 40001)


def test_an_unpublished_port_is_a_lookup_error() -> None:
    """A port missing, exposed but unbound, or bound without a host port is not published."""
    for ports in (
        {},
        {"80/tcp": None},
        {"80/tcp": [{"HostIp": "1.2.3.4", "HostPort": ""}]},
    ):
        with pytest.raises(LookupError, match="80/tcp"):
            published_binding(ports, 80, "1.2.3.4")
    with pytest.raises(LookupError):
        published_binding({"8080/tcp": [{"HostPort": "1"}]}, 80, "1.2.3.4")


def test_served_is_the_difference_per_node_counting_new_instances_from_zero() -> None:
    """Requests served in a phase: each node's count after minus before; a new node from 0."""
    assert served({"b": 30, "a": 25, "c": 7}, {"a": 10, "b": 10}) == {
        "a": 15,
        "b": 20,
        "c": 7,
    }
    assert served({}, {"a": 3}) == {}


def test_ratio_is_none_without_both_sides() -> None:
    """A ratio needs a numerator and a non-zero denominator."""
    assert ratio(30.0, 60.0) == 0.5
    assert ratio(None, 60.0) is None
    assert ratio(30.0, None) is None
    assert ratio(30.0, 0.0) is None
    assert ratio(0.0, 2.0) == 0.0


class _Counter(BaseHTTPRequestHandler):
    """Answers every GET like the counter: 200 with a count, or ``status`` when set."""

    status = 200
    count = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        """Count the request and answer with the count (or the error status)."""
        with self.lock:
            type(self).count += 1
            count = self.count
        body = f"{count}\n".encode()
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Say nothing on stderr."""


def _serve(status: int) -> Iterator[int]:
    """Serve ``_Counter`` answering ``status`` on a free 127.0.0.1 port; yield the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    server.status = status  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def counter() -> Iterator[int]:
    """A local HTTP server acknowledging every request."""
    yield from _serve(200)


@pytest.fixture
def broken() -> Iterator[int]:
    """A local HTTP server answering every request 500."""
    yield from _serve(500)


def test_load_clients_send_numbered_requests_until_stopped(counter: int) -> None:
    """
    Each client numbers its requests from 0 and sends them one after
    another; every request is acknowledged and recorded in order of sending.
    """
    load = Load("127.0.0.1", counter, clients=3, timeout=5.0)
    started = time.monotonic()
    load.start()
    while load.acknowledged() < 30 and time.monotonic() - started < 10:
        time.sleep(0.01)
    requests = load.stop()
    assert len(requests) >= 30 and all(r.ok for r in requests)
    assert [r.sent for r in requests] == sorted(r.sent for r in requests)
    for client in ("c0", "c1", "c2"):
        names = [r.name for r in requests if r.name.startswith(client + "-")]
        assert names == [f"{client}-{n}" for n in range(len(names))]
    assert summary(requests, started, time.monotonic())["requests_per_second"] > 0


def test_load_records_error_answers_and_refused_connections_as_failures(
    broken: int,
) -> None:
    """An HTTP error and a refused connection are failures with their reason, not acknowledged."""
    load = Load("127.0.0.1", broken, clients=1, timeout=5.0, pause=0.01)
    load.start()
    time.sleep(0.2)
    requests = load.stop()
    assert requests and all(r.error == "HTTP 500" for r in requests)
    assert load.acknowledged() == 0
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    load = Load("127.0.0.1", closed, clients=1, timeout=5.0, pause=0.01)
    load.start()
    time.sleep(0.1)
    refused = load.stop()
    assert refused and all(r.error == "ConnectionRefusedError" for r in refused)


def test_a_load_needs_a_client() -> None:
    """A load of no clients is refused."""
    with pytest.raises(ValueError, match="at least one client"):
        Load("127.0.0.1", 1, clients=0)


def example_phase(label: str, instances: int, rps: float) -> dict[str, Any]:
    """One phase's figures, as ``load_phase`` and ``run`` give them."""
    return {
        "label": label,
        "instances": instances,
        "requests_per_second": rps,
        "p50_seconds": 0.01,
        "p99_seconds": None if rps == 0 else 0.05,
        "rps_to_direct_ratio": rps / 100.0 if rps else None,
    }


def test_the_plot_draws_every_phase_with_its_ratio(tmp_path: Any) -> None:
    """The figure is written from the results alone, a phase without latency included."""
    results = {
        "phases": [
            example_phase("direct", 1, 100.0),
            example_phase("routed", 1, 60.0),
            example_phase("routed", 2, 0.0),
            example_phase("direct", 1, 100.0),
        ],
        "direct_requests_per_second": 100.0,
        "routed_to_direct_ratio": {"1": 0.6, "2": None},
        "clients": 8,
        "failed_requests": 0,
    }
    _, png_path = write_results("scale", results, plot(results), str(tmp_path))
    assert png_path is not None and os.path.getsize(png_path) > 0
