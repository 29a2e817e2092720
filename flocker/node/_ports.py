"""
The TCP ports something already listens on at a node's address.

The control service chooses ports for environment copies; it knows what the
configuration publishes but not what else runs on the nodes (another
cluster's containers and routers, a user's own programs).  The container
agent reads the kernel's socket tables, ``/proc/net/tcp`` and
``/proc/net/tcp6``, and reports the ports in the LISTEN state (``0A``) bound
either to the node's own address or to a wildcard address (``0.0.0.0``,
``::``), since both keep a container from publishing that port on the node's
address.

In those tables an address is hexadecimal in the kernel's byte order:
an IPv4 address is one little-endian 32-bit word (``0100007F`` is
127.0.0.1); an IPv6 address is four such words.  The port is big-endian
hexadecimal.  Parsing is pure (`listening_ports`); reading the files is
blocking and is done in a thread (`read_busy_ports` is what the agent runs
there).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["PROC_TABLES", "listening_ports", "read_busy_ports"]

#: The socket tables read, IPv4 then IPv6.
PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")

#: The kernel's code for a listening TCP socket.
_LISTEN = "0A"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address from its ``/proc/net/tcp*`` form (words little-endian)."""
    raw = bytes.fromhex(hex_address)
    if len(raw) not in (4, 16):
        raise ValueError(f"not an address: {hex_address!r}")
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(swapped) == 4:
        return ipaddress.IPv4Address(swapped)
    address = ipaddress.IPv6Address(swapped)
    mapped = address.ipv4_mapped
    return mapped if mapped is not None else address


def _listeners(table: str) -> Iterable[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """(local address, port) of each listening socket of one table's text."""
    for line in table.splitlines()[1:]:
        columns = line.split()
        if len(columns) < 4 or columns[3] != _LISTEN:
            continue
        try:
            host, port = columns[1].split(":")
            yield _address(host), int(port, 16)
        except ValueError:
            continue  # a line this parser does not understand: not ours to judge


def listening_ports(tables: Iterable[str], address: str) -> frozenset[int]:
    """
    The ports listened on at ``address`` or at a wildcard address.

    :param tables: the texts of ``/proc/net/tcp`` and ``/proc/net/tcp6``.
    :param address: the node's address (IPv4 or IPv6).
    """
    node = ipaddress.ip_address(address)
    found = set()
    for table in tables:
        for local, port in _listeners(table):
            if local == node or local.is_unspecified:
                found.add(port)
    return frozenset(found)


def read_busy_ports(address: str, paths: Iterable[str] = PROC_TABLES) -> frozenset[int]:
    """
    Read the socket tables and return `listening_ports` for ``address``.

    Blocking: call it in a thread.  A table that does not exist (no IPv6
    in the kernel) counts as empty.
    """
    tables = []
    for path in paths:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                tables.append(handle.read())
        except FileNotFoundError:
            continue
    return listening_ports(tables, address)
