"""Host and port pairs as people write them: ``HOST``, ``HOST:PORT``, ``[V6]:PORT``.

Agents (``agent.yml``), the CLI (``--control-host``) and the Docker plugin
(``--control-host``) all take control service addresses this way, with a
default port for an address that names none.  An IPv6 address with a port
is written in brackets (``[fd00::1]:4524``); one without brackets is taken
whole as the host (``fd00::1`` is a host, not host ``fd00:`` port 1).
"""

from __future__ import annotations

__all__ = ["check_port", "format_address", "parse_address"]


def check_port(port: object) -> int:
    """
    ``port`` if it is a TCP port number (1-65535).

    :raise ValueError: with a one-line message otherwise.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{port!r} is not a TCP port (1-65535)")
    return port


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """
    ``(host, port)`` from ``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT``.

    :raise ValueError: with a one-line message naming what is wrong.
    """
    written = text.strip()
    if written.startswith("["):
        host, bracket, rest = written[1:].partition("]")
        if not bracket or not host:
            raise ValueError(f"{text!r}: an IPv6 address in brackets needs its ']'")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    elif written.count(":") == 1:
        host, _, port_text = written.partition(":")
    else:
        host, port_text = written, None
    if not host:
        raise ValueError(f"{text!r} names no host")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit():
        raise ValueError(f"{text!r}: {port_text!r} is not a TCP port (1-65535)")
    try:
        return host, check_port(int(port_text))
    except ValueError:
        raise ValueError(
            f"{text!r}: {port_text} is not a TCP port (1-65535)"
        ) from None


def format_address(host: str, port: int) -> str:
    """``HOST:PORT``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
