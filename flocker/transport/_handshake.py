"""
The TLS handshake of a threaded TLS connection, driven step by step on a
non-blocking socket (by a client's worker thread, or by a listening port's
one thread for all the connections it accepts), and what a refused one is.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable
from time import monotonic
from typing import Any

from cryptography import x509
from eliot import Field, MessageType
from twisted.internet.address import IPv4Address, IPv6Address

from ..ca import PeerRejected

#: Encrypted bytes read at once during a handshake (before the peer is
#: authenticated, a connection holds no more than this and its TLS state).
HANDSHAKE_READ = 16 * 1024

_PEER = Field.for_types("peer", [str], "The remote address.")
_REASON = Field.for_types("reason", [str], "Why.")

#: Named for the volume transfers it was written for; operators' log
#: queries know it by this name.
TLS_REFUSED = MessageType(
    "flocker:volume:tls:refused",
    [_PEER, _REASON],
    "An incoming connection failed its TLS handshake or its certificate check.",
)


class TLSFailed(Exception):
    """The TLS handshake failed, or the peer's certificate was rejected."""


def _address(sockname: Any) -> IPv4Address | IPv6Address:
    """A Twisted address for a socket name."""
    host, port = sockname[0], sockname[1]
    if ":" in host:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)


def _send(
    sock: socket.socket, cipher: memoryview, out_bio: ssl.MemoryBIO
) -> tuple[memoryview, bool]:
    """
    Send ``cipher`` (encrypted bytes the socket has yet to take), then what
    TLS produced meanwhile, while the socket takes them: what is left
    unsent, and whether some of it waits for the socket.
    """
    while True:
        if not cipher:
            if not out_bio.pending:
                return cipher, False
            cipher = memoryview(out_bio.read())
        try:
            sent = sock.send(cipher)
        except (BlockingIOError, InterruptedError):
            return cipher, True
        cipher = cipher[sent:]


class _Handshake:
    """
    A TLS handshake on a non-blocking socket, driven step by step: by a
    client's worker thread, or by a listening port's one thread for all
    its connections, so a peer costs no thread and no large buffer until
    it is authenticated.

    :ivar deadline: When (``time.monotonic``) the handshake must be done.
    """

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_side: bool,
        check: Callable[[x509.Certificate], None],
        timeout: float,
    ) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.sock = sock
        self.in_bio = ssl.MemoryBIO()
        self.out_bio = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.in_bio, self.out_bio, server_side=server_side)
        self.cipher = memoryview(b"")  # encrypted bytes the socket has yet to take
        self.deadline = monotonic() + timeout
        self.certificate: x509.Certificate | None = None
        self._check = check
        self._done = False

    def _flush(self) -> bool:
        """Send what TLS produced; whether some waits for the socket."""
        self.cipher, blocked = _send(self.sock, self.cipher, self.out_bio)
        return blocked

    def step(self) -> int:
        """
        Advance as far as the socket allows: the ``select.POLL*`` events
        to wait for before calling again, or 0 once the handshake is done
        and the peer's certificate passed the check.

        :raise TLSFailed: the handshake failed, or the check refused.
        :raise OSError: the socket failed.
        """
        if self.certificate is not None:
            return 0
        while True:
            if not self._done:
                try:
                    self.tls.do_handshake()
                    self._done = True
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLError, ssl.CertificateError) as error:
                    try:
                        self._flush()  # the alert tells the peer why
                    except OSError:
                        pass
                    raise TLSFailed(f"the TLS handshake failed: {error}") from None
            if self._flush():
                return select.POLLOUT
            if self._done:
                break
            try:
                count = self.sock.recv(HANDSHAKE_READ)
            except (BlockingIOError, InterruptedError):
                return select.POLLIN
            if not count:
                raise TLSFailed("the peer closed the connection during the handshake")
            self.in_bio.write(count)
        der = self.tls.getpeercert(binary_form=True)
        if not der:
            raise TLSFailed("the peer presented no certificate")
        certificate = x509.load_der_x509_certificate(der)
        try:
            self._check(certificate)
        except PeerRejected as error:
            raise TLSFailed(str(error)) from None
        self.certificate = certificate
        return 0
