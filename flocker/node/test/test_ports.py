"""Tests for ``flocker.node._ports``: the ports listened on at a node's address."""

from pathlib import Path

from flocker.node._ports import listening_ports, read_busy_ports

#: /proc/net/tcp: 198.18.0.12:20000 and 0.0.0.0:2024 listen; 127.0.0.1:51023
#: listens on another address; 198.18.0.12:20001 is an established connection.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0C0012C6:4E20 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:C74F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 0C0012C6:4E21 0B0012C6:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
"""

#: /proc/net/tcp6: [::]:8080 and the IPv4-mapped ::ffff:198.18.0.12:9200
#: listen; [::1]:5432 listens on another address.
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000C0012C6:23F0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0 100 0 0 10 0
   2: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0 100 0 0 10 0
"""


def test_ports_listened_on_at_the_address_or_a_wildcard() -> None:
    """
    Listening sockets on the node's address and on 0.0.0.0 and :: count, in
    both tables, IPv4-mapped IPv6 addresses included; sockets on other
    addresses and connections that are not listening do not.
    """
    assert listening_ports([TCP, TCP6], "198.18.0.12") == {20000, 2024, 8080, 9200}


def test_other_address_sees_only_wildcards() -> None:
    """Another node's address sees only the wildcard listeners."""
    assert listening_ports([TCP, TCP6], "198.18.0.11") == {2024, 8080}


def test_ipv6_node_address() -> None:
    """An IPv6 node address is compared with the IPv6 table's addresses."""
    assert listening_ports([TCP6], "::1") == {8080, 5432}


def test_malformed_lines_ignored() -> None:
    """Lines the parser does not understand are skipped, not fatal."""
    text = TCP.splitlines()[0] + "\n   0: nonsense 0A\n   1: XYZ:0050 00000000:0000 0A\n"
    assert listening_ports([text], "198.18.0.12") == frozenset()


def test_reads_the_tables_and_skips_missing_ones(tmp_path: Path) -> None:
    """The tables are read from their files; a missing one (no IPv6) is empty."""
    tcp = tmp_path / "tcp"
    tcp.write_text(TCP)
    assert read_busy_ports("198.18.0.12", [str(tcp), str(tmp_path / "tcp6")]) == {20000, 2024}


def test_reads_this_machine() -> None:
    """This machine's own tables parse (whatever listens on it)."""
    assert isinstance(read_busy_ports("127.0.0.1"), frozenset)
