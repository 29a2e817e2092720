"""Socket options Flocker's connections share."""

from __future__ import annotations

from typing import Any


def no_delay(transport: Any) -> bool:
    """
    Have a TCP transport (or a TLS transport wrapping one) send small
    writes at once (``TCP_NODELAY``).

    Flocker's control connections and routed connections carry small
    messages answered by small messages.  With Nagle's algorithm, a message
    written while the peer has not yet acknowledged the previous one waits
    for that acknowledgement, which the peer delays by up to 40 ms: a state
    report sent soon after another reached the control service 40 ms late,
    and so did every route change it caused.

    :return: whether the option was set (a transport that is not TCP,
        such as a test's in-memory one, is left alone).
    """
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, NotImplementedError, OSError):
        return False
    return True


__all__ = ["no_delay"]
