"""
Endpoints for :mod:`flocker.volume._threaded_tls` connections: a client
endpoint that connects and shakes hands in a worker thread, and a server
endpoint whose listening port accepts in a thread of its own.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from collections.abc import Callable
from time import sleep
from typing import Any

from cryptography import x509
from eliot import write_traceback
from twisted.internet import error as twisted_error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from ._threaded_tls import TLS_REFUSED, _address, _ThreadedTLSTransport


@implementer(IStreamClientEndpoint)
class ThreadedTLSClientEndpoint:
    """
    Connects to ``host:port`` over TCP, then TLS with ``context``, in a
    worker thread; ``check`` must accept the server's certificate.
    """

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        context: ssl.SSLContext,
        check: Callable[[x509.Certificate], None],
        timeout: float = 30,
    ) -> None:
        """:param timeout: Seconds for the TCP connection and the handshake."""
        self._reactor = reactor
        self._host = host
        self._port = port
        self._context = context
        self._check = check
        self._timeout = timeout

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        The connected protocol, once the handshake and check succeeded.

        Cancelling the result closes whatever is under way; no protocol is
        built after that.
        """
        cancelled = False
        transports: list[_ThreadedTLSTransport] = []

        def cancel(_: Deferred[IProtocol]) -> None:
            nonlocal cancelled
            cancelled = True
            for transport in transports:
                transport.abortConnection()

        result: Deferred[IProtocol] = Deferred(cancel)

        def fail(failure: Failure) -> None:
            if not result.called:
                result.errback(failure)

        def connect_in_thread() -> None:
            try:
                sock = socket.create_connection(
                    (self._host, self._port), timeout=self._timeout
                )
            except TimeoutError:
                failure = Failure(twisted_error.TCPTimedOutError(string=self._host))
                self._reactor.callFromThread(fail, failure)
                return
            except OSError as error:
                if error.errno == errno.ECONNREFUSED:
                    refused = twisted_error.ConnectionRefusedError(string=str(error))
                    failure = Failure(refused)
                else:
                    failure = Failure(twisted_error.ConnectError(string=str(error)))
                self._reactor.callFromThread(fail, failure)
                return
            self._reactor.callFromThread(connected, sock)

        def connected(sock: socket.socket) -> None:
            if cancelled:
                sock.close()
                return
            try:
                transport = _ThreadedTLSTransport(
                    self._reactor, sock, self._context, False, self._check, self._timeout
                )
            except OSError as error:  # e.g. reset before we looked at it
                sock.close()
                fail(Failure(twisted_error.ConnectError(string=str(error))))
                return
            transports.append(transport)
            transport.handshaken.addCallbacks(handshaken, fail)
            transport.start()

        def handshaken(transport: _ThreadedTLSTransport) -> None:
            if cancelled:
                transport.abortConnection()
                return
            try:
                protocol = factory.buildProtocol(transport.getPeer())
                if protocol is None:
                    raise twisted_error.ConnectingCancelledError(self._host)
                transport._attach(protocol)
            except Exception:
                transport.abortConnection()
                fail(Failure())
            else:
                result.callback(protocol)

        threading.Thread(
            target=connect_in_thread, name=f"connect {self._host}", daemon=True
        ).start()
        return result


@implementer(IListeningPort)
class _ThreadedTLSPort:
    """A listening socket whose accepting thread starts TLS connections."""

    def __init__(
        self,
        reactor: Any,
        sock: socket.socket,
        factory: IProtocolFactory,
        context: ssl.SSLContext,
        check: Callable[[x509.Certificate], None],
        handshake_timeout: float,
    ) -> None:
        self._reactor = reactor
        self._sock = sock
        self._factory = factory
        self._context = context
        self._check = check
        self._handshake_timeout = handshake_timeout
        self._host = _address(sock.getsockname())
        self._stopped: Deferred[None] = Deferred()
        self._listening = False
        self._stopping = False

    def startListening(self) -> None:  # noqa: N802
        """Start accepting (in a thread)."""
        if self._listening:
            return
        if self._stopped.called or self._stopping:
            raise twisted_error.CannotListenError(
                self._host.host, self._host.port, RuntimeError("stopped for good")
            )
        self._listening = True
        self._factory.doStart()
        threading.Thread(
            target=self._accept_loop, name=f"accept :{self._host.port}", daemon=True
        ).start()

    def stopListening(self) -> Deferred[None]:  # noqa: N802
        """Stop accepting (connections already made go on)."""
        if not self._listening:
            return succeed(None)
        self._listening = False
        self._stopping = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        return self._stopped

    def getHost(self) -> IPv4Address | IPv6Address:  # noqa: N802
        """The address listened on (its ``port`` is the port number)."""
        return self._host

    def _accept_loop(self) -> None:
        while True:
            try:
                connection, _ = self._sock.accept()
            except OSError:
                if not self._listening:
                    break
                sleep(0.05)  # e.g. ECONNABORTED, EMFILE: go on listening
                continue
            if not self._listening:
                connection.close()
                break
            self._reactor.callFromThread(self._accepted, connection)
        self._sock.close()
        self._reactor.callFromThread(self._closed)

    def _closed(self) -> None:
        self._factory.doStop()
        self._stopped.callback(None)

    def _accepted(self, connection: socket.socket) -> None:
        try:
            transport = _ThreadedTLSTransport(
                self._reactor,
                connection,
                self._context,
                True,
                self._check,
                self._handshake_timeout,
            )
        except OSError:
            connection.close()  # gone before we looked at it
            return
        peer = f"{transport.getPeer().host}:{transport.getPeer().port}"
        transport.handshaken.addCallbacks(
            self._handshaken, lambda failure: self._refused(peer, failure)
        )
        transport.start()

    def _refused(self, peer: str, failure: Failure) -> None:
        TLS_REFUSED.log(peer=peer, reason=failure.getErrorMessage())

    def _handshaken(self, transport: _ThreadedTLSTransport) -> None:
        if not self._listening:  # the factory may be stopped already
            transport.abortConnection()
            return
        try:
            protocol = self._factory.buildProtocol(transport.getPeer())
            if protocol is None:
                transport.abortConnection()
                return
            transport._attach(protocol)
        except Exception:
            write_traceback()
            transport.abortConnection()


@implementer(IStreamServerEndpoint)
class ThreadedTLSServerEndpoint:
    """
    Listens on ``port`` (0: any free one) of ``interface``; every connection
    runs TLS with ``context`` in a worker thread, and ``check`` must accept
    the client's certificate before a protocol is built.
    """

    def __init__(
        self,
        reactor: Any,
        port: int,
        context: ssl.SSLContext,
        check: Callable[[x509.Certificate], None],
        interface: str = "",
        backlog: int = 50,
        handshake_timeout: float = 30,
    ) -> None:
        """:param handshake_timeout: Seconds a client has to finish its handshake."""
        self._reactor = reactor
        self._port = port
        self._context = context
        self._check = check
        self._interface = interface
        self._backlog = backlog
        self._handshake_timeout = handshake_timeout

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Bind and listen; the port, or a ``CannotListenError`` failure."""
        family = socket.AF_INET6 if ":" in self._interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._interface, self._port))
            sock.listen(self._backlog)
        except OSError as error:
            sock.close()
            return fail(
                twisted_error.CannotListenError(self._interface, self._port, error)
            )
        port = _ThreadedTLSPort(
            self._reactor,
            sock,
            factory,
            self._context,
            self._check,
            self._handshake_timeout,
        )
        port.startListening()
        return succeed(port)
