"""
Transports for bulk byte streams, kept off the reactor thread's hot path.

* Threaded TLS connections (:class:`ThreadedTLSClientEndpoint`,
  :class:`ThreadedTLSServerEndpoint`): the encryption and socket I/O of each
  connection run in a worker thread of its own, so a stream of GiBs costs
  the reactor a call per MiB.  The protocols they connect are ordinary
  Twisted protocols; the transports offer what Twisted's TLS transports do.
* :class:`PipeWriter`: a consumer writing straight into a command's
  standard input while its pipe takes it.

The dataset transfers (:mod:`flocker.volume.transfer`) are their users.
This package imports nothing from Flocker but :mod:`flocker.ca` (the
certificate checks).
"""

from ._handshake import TLS_REFUSED, TLSFailed
from ._pipe_writer import PAUSE_ABOVE, PipeWriter
from ._threaded_tls import (
    BACKGROUND_NICE,
    DELIVERY_SIZE,
    HIGH_WATER,
    LOW_WATER,
    in_background,
)
from ._threaded_tls_endpoints import (
    HANDSHAKE_TIMEOUT,
    MAXIMUM_CONNECTIONS,
    MAXIMUM_PER_PEER,
    ThreadedTLSClientEndpoint,
    ThreadedTLSServerEndpoint,
)

__all__ = [
    "BACKGROUND_NICE",
    "DELIVERY_SIZE",
    "HANDSHAKE_TIMEOUT",
    "HIGH_WATER",
    "LOW_WATER",
    "MAXIMUM_CONNECTIONS",
    "MAXIMUM_PER_PEER",
    "PAUSE_ABOVE",
    "TLS_REFUSED",
    "PipeWriter",
    "TLSFailed",
    "ThreadedTLSClientEndpoint",
    "ThreadedTLSServerEndpoint",
    "in_background",
]
