"""
Acceptance tests of the ports environment copies get, on a real local
cluster driven through the REST API: a port another program listens on
is never chosen and is refused when asked for, and a copy whose port
another program binds after the choice is moved to a free port and
answers there.
"""

import socket
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest

from flocker.control._cloning import FIRST_FREE_PORT
from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

from .test_acceptance_containers import deploy_counter, request
from .test_acceptance_datasets import api, api_error

pytestmark = pytest.mark.acceptance


def first_free_from(address: str, start: int) -> socket.socket:
    """A socket listening on the first port from ``start`` up free at ``address``."""
    for candidate in range(start, 65536):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((address, candidate))
        except OSError:
            listener.close()
            continue
        listener.listen()
        return listener
    raise AssertionError(f"no free port from {start} up on {address}")


def copy_port(cluster: dict[str, Any], environment: str, copy: str) -> int:
    """The external port of the only application of ``copy``, as configured now."""
    found = api(cluster, "GET", f"/v1/environments/{environment}")
    [entry] = [c for c in found["copies"] if c["name"] == copy]
    [application] = entry["applications"]
    port: int = application["ports"][0]["external"]
    return port


def test_copy_moves_off_a_port_taken_after_the_choice(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    A program binding a copy's port before its container starts does not
    leave the copy pending: the node reports the conflict, the control
    service gives the copy another port, and the copy answers there.
    """
    cluster = make_lab(nodes=1)
    [node] = cluster["nodes"]
    name, _, port = deploy_counter(cluster, node)
    squatter = socket.socket()
    try:
        taken = lab._free_port([node["address"]])
        # Taken just before the copy is asked for, before the node reports
        # it busy: every node's router listens on a copy's port as soon as
        # the configuration reaches it, so the squatter must come first.
        squatter.bind((node["address"], taken))
        squatter.listen()
        api(
            cluster, "POST", "/v1/environments",
            {"name": "late", "applications": [name], "copies": ["a"],
             "ports": {"a": {name: {str(port): taken}}}},
        )
        moved = wait_for(
            lambda: (lambda p: p if p != taken else None)(copy_port(cluster, "late", "a")),
            240,
            "the copy to be moved off the taken port",
        )
        assert moved is not None  # wait_for returns a true value
        print(f"\ncopy moved from the taken port {taken} to {moved}")
        # The copy starts from the original's data: "ready" + this request.
        assert wait_for(lambda: request(node["address"], moved, "copy"), 240, "the copy") == 2
    finally:
        squatter.close()


def test_port_another_program_listens_on_refused_and_avoided(
    make_lab: Callable[..., dict[str, Any]],
) -> None:
    """
    Once the node has reported a port another program listens on at its
    address (the first one copies' ports would be chosen from), a copy
    asking for it is refused (409, naming the port), and copies whose
    ports are chosen for them skip it.
    """
    cluster = make_lab(nodes=1)
    [node] = cluster["nodes"]
    name, _, port = deploy_counter(cluster, node)
    squatter = first_free_from(node["address"], FIRST_FREE_PORT)
    try:
        taken = squatter.getsockname()[1]
        tries = iter(range(1000))

        def refused() -> tuple[int, Any] | None:
            """Ask for the port until the node's report refuses it."""
            environment = f"ask{next(tries)}"
            body = {"name": environment, "applications": [name], "copies": ["a"],
                    "ports": {"a": {name: {str(port): taken}}}}
            try:
                api(cluster, "POST", "/v1/environments", body)
            except urllib.error.HTTPError:
                pass
            else:  # the node had not reported the port yet
                api(cluster, "DELETE", f"/v1/environments/{environment}")
                return None
            return api_error(cluster, "POST", "/v1/environments", body)

        refusal = wait_for(refused, 120, "the busy port to be refused")
        assert refusal is not None  # wait_for returns a true value
        code, body = refusal
        assert code == 409 and str(taken) in body["description"]
        made = api(cluster, "POST", "/v1/environments",
                   {"name": "chosen", "applications": [name], "copies": 3})
        chosen = {a["ports"][0]["external"] for c in made["copies"] for a in c["applications"]}
        assert len(chosen) == 3 and taken not in chosen
    finally:
        squatter.close()
