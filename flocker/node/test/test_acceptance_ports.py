"""
Acceptance test: an environment copy whose port another program binds
after the control service chose it is moved to a free port and answers
there (on a real local cluster, driven through the REST API).
"""

import socket

import pytest

from flocker.testtools import lab

from .test_acceptance_containers import deploy_counter, request
from .test_acceptance_datasets import api, wait_for

pytestmark = pytest.mark.acceptance


def copy_port(cluster, environment, copy):
    """The external port of the only application of ``copy``, as configured now."""
    found = api(cluster, "GET", f"/v1/environments/{environment}")
    [entry] = [c for c in found["copies"] if c["name"] == copy]
    [application] = entry["applications"]
    return application["ports"][0]["external"]


def test_copy_moves_off_a_port_taken_after_the_choice(make_lab):
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
        api(
            cluster, "POST", "/v1/environments",
            {"name": "late", "applications": [name], "copies": ["a"],
             "ports": {"a": {name: {str(port): taken}}}},
        )
        # The copy's dataset is cloned and mounted before its container
        # starts: the port is bound well before the container wants it.
        squatter.bind((node["address"], taken))
        squatter.listen()
        moved = wait_for(
            lambda: (lambda p: p if p != taken else None)(copy_port(cluster, "late", "a")),
            240,
            "the copy to be moved off the taken port",
        )
        print(f"\ncopy moved from the taken port {taken} to {moved}")
        # The copy starts from the original's data: "ready" + this request.
        assert wait_for(lambda: request(node["address"], moved, "copy"), 240, "the copy") == 2
    finally:
        squatter.close()
