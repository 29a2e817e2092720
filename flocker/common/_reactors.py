"""
Reactor types for code that needs more than one of Twisted's reactor interfaces.

A zope interface names one ability (``IReactorTCP``, ``IReactorTime``); a
service that listens on ports *and* schedules retries needs both of one
object.  These typing protocols say so to mypy, method by method, with the
signatures of the Twisted interfaces they combine; the real reactor and
``twisted.internet.testing.MemoryReactorClock`` both satisfy them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.interfaces import IConnector, IDelayedCall, IListeningPort
from twisted.internet.protocol import ClientFactory, ServerFactory
from twisted.internet.protocol import Protocol as _ProtocolBase

__all__ = ["TCPTimeReactor"]

_P = TypeVar("_P", bound=_ProtocolBase)


class TCPTimeReactor(Protocol):
    """A reactor providing both ``IReactorTCP`` and ``IReactorTime``."""

    def listenTCP(  # noqa: N802 - Twisted's name
        self,
        port: int,
        factory: ServerFactory,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        """Listen on a TCP port (``IReactorTCP.listenTCP``)."""

    def connectTCP(  # noqa: N802 - Twisted's name
        self,
        host: str,
        port: int,
        factory: ClientFactory[_P],
        timeout: float = 30.0,
        bindAddress: tuple[str, int] | None = None,  # noqa: N803
    ) -> IConnector:
        """Connect to a TCP port (``IReactorTCP.connectTCP``)."""

    def callLater(  # noqa: N802 - Twisted's name
        self,
        delay: float,
        callable: Callable[..., Any],
        *args: object,
        **kwargs: object,
    ) -> IDelayedCall:
        """Call ``callable`` in ``delay`` seconds (``IReactorTime.callLater``)."""

    def seconds(self) -> float:
        """The current time in seconds (``IReactorTime.seconds``)."""
