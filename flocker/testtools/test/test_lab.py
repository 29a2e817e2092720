"""Tests for the local cluster's node addresses (``flocker.testtools.lab``)."""

import os
import subprocess

import pytest

from flocker.testtools import lab


def test_node_address_counts_from_eleven():
    """Node 0 is ….11, node 1 ….12, in the network asked for."""
    assert lab.node_address(0) == "127.0.0.11"
    assert lab.node_address(1, lab.ROUTABLE_NETWORK) == "198.18.0.12"


def test_loopback_only_without_ip(monkeypatch):
    """When addresses cannot be added (no ``ip``, not root), nodes use 127.0.0.x."""

    def refuse(*args, **kwargs):
        raise OSError("no ip command")

    monkeypatch.setattr(subprocess, "run", refuse)
    assert lab.node_addresses(2) == ["127.0.0.11", "127.0.0.12"]


@pytest.mark.functional
def test_routable_addresses_on_loopback():
    """
    As root, node addresses are in 198.18.0.0/15 and on ``lo`` (asking
    twice adds nothing and fails nothing), so a socket can bind them.
    """
    if os.geteuid() != 0:
        pytest.skip("adding addresses to lo needs root")
    first = lab.node_addresses(3)
    assert first == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
    assert lab.node_addresses(3) == first
    assert all(lab._on_loopback(address) for address in first)
    assert lab._free_port(first) > 0
