"""
``flocker-docker-plugin``: serve Flocker volumes to this node's Docker Engine.

It listens on ``<socket-directory>/<plugin-name>.sock`` (by default
``/run/docker/plugins/flocker.sock``, where Docker finds plugins by name) and
answers Docker's volume plugin protocol with `VolumePlugin`, talking to the
control service's REST API with a user certificate.  The node is named by
``--node-uuid`` or by the ``node.crt`` in the certificates directory.

Usage::

    flocker-docker-plugin --control-host 10.0.0.1 --certificates-directory /etc/flocker

(``--user`` defaults to ``plugin``, ``--plugin-name`` to ``flocker``.)  With
several control service instances, ``--control-host`` is repeated, once per
instance, as ``HOST`` or ``HOST:PORT`` (``--control-port`` is the port of
those given without one); the plugin's requests go to the next instance
when one cannot be connected to (see `flocker.apiclient.FlockerClient`).
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import socket
import sys
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.task import react
from twisted.web.server import Site

from flocker.apiclient import DEFAULT_API_PORT, FlockerClient
from flocker.ca import (
    CertificateError,
    UnknownPeer,
    identify_certificate,
    load_credential,
    load_tls_files,
)
from flocker.common import format_address, parse_address, start_daemon_logging

from ._logging import STARTED
from ._plugin import DEFAULT_MOUNT_TIMEOUT, VolumePlugin

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IReactorCore,
        IReactorTCP,
        IReactorTime,
        IReactorUNIX,
    )

    class _PluginReactor(IReactorCore, IReactorTime, IReactorTCP, IReactorUNIX):
        """
        What the plugin daemon asks of the reactor ``react`` gives it: TCP and
        time for the REST client, time for the plugin's polls and time-outs,
        the unix socket Docker calls, and the shutdown trigger.
        """


__all__ = [
    "PluginOptions",
    "SocketService",
    "StartupError",
    "build_plugin_service",
    "check_options",
    "main",
    "prepare_socket",
]

NAME = "flocker-docker-plugin"
DEFAULT_SOCKET_DIRECTORY = "/run/docker/plugins"
_PLUGIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: The longest unix socket path the kernel accepts.
_MAXIMUM_SOCKET_PATH = 107


class SocketService(Service):
    """
    Listens on an endpoint while running.

    :ivar listening: fires with the listening port, or fails if it cannot
        listen (so ``main`` can exit saying why).
    """

    def __init__(self, endpoint: Any, factory: Any) -> None:
        """Serve ``factory`` on ``endpoint`` once started."""
        self.endpoint = endpoint
        self.factory = factory
        self.listening: Deferred[Any] = Deferred()

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start listening."""
        Service.startService(self)
        self.listening = self.endpoint.listen(self.factory)

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted's name)
        """Stop listening (the socket file is removed)."""
        Service.stopService(self)

        def stop(port: Any) -> Any:
            return port.stopListening()

        def ignore(failure: Any) -> None:
            return None

        return self.listening.addCallbacks(stop, ignore)


class StartupError(Exception):
    """The plugin cannot start; the message is one line saying why."""


@attrs.frozen
class PluginOptions:
    """The checked command line."""

    #: Each control service instance's ``(host, port)``, at least one.
    control: tuple[tuple[str, int], ...]
    certificates_directory: str
    user: str
    node_uuid: UUID
    socket_path: str
    log_dir: str | None
    mount_timeout: float
    foreground_log: bool
    delete_on_remove: bool = False


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line."""

    def error(self, message: str) -> NoReturn:
        """Exit with ``flocker-docker-plugin: <message>``."""
        self.exit(2, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=NAME,
        description="Serve Flocker datasets as Docker volumes on this node.",
    )
    parser.add_argument(
        "--control-host",
        required=True,
        action="append",
        metavar="HOST[:PORT]",
        help="a control service instance's address; repeat it for each instance",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=DEFAULT_API_PORT,
        help=f"the REST API port of hosts given without one (default {DEFAULT_API_PORT})",
    )
    parser.add_argument(
        "--certificates-directory",
        default="/etc/flocker",
        help="holds cluster.crt, <user>.crt/.key and (unless --node-uuid) node.crt",
    )
    parser.add_argument(
        "--user", default="plugin", help="the API user certificate's name (plugin)"
    )
    parser.add_argument(
        "--node-uuid", help="this node's UUID (default: read from node.crt)"
    )
    parser.add_argument(
        "--plugin-name",
        default="flocker",
        help="the name Docker knows the driver by (default flocker)",
    )
    parser.add_argument(
        "--socket-directory",
        default=DEFAULT_SOCKET_DIRECTORY,
        help=f"where the socket goes (default {DEFAULT_SOCKET_DIRECTORY})",
    )
    parser.add_argument("--log-dir", help="where the eliot log file goes")
    parser.add_argument(
        "--mount-timeout",
        type=float,
        default=DEFAULT_MOUNT_TIMEOUT,
        help=f"seconds a mount waits for its dataset (default {DEFAULT_MOUNT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--foreground-log", action="store_true", help="also log to standard output"
    )
    parser.add_argument(
        "--delete-on-remove",
        action="store_true",
        help="make 'docker volume rm' delete the dataset and its data (by "
        "default it only makes Docker forget the volume and keeps the data)",
    )
    return parser


def _node_uuid(given: str | None, directory: str) -> UUID:
    """The node's UUID: given, or read from ``node.crt``."""
    if given is not None:
        try:
            return UUID(given)
        except ValueError:
            raise StartupError(f"--node-uuid: {given!r} is not a UUID") from None
    try:
        credential = load_credential(directory, "node")
        identity = identify_certificate(credential.certificate)
    except (CertificateError, UnknownPeer, OSError) as error:
        raise StartupError(
            f"no --node-uuid given and cannot read node.crt: {error}"
        ) from None
    if identity.node_uuid is None:
        raise StartupError(f"{directory}/node.crt is not a node certificate")
    return UUID(str(identity.node_uuid))


def check_options(argv: list[str]) -> PluginOptions:
    """
    Parse and check the command line (argparse exits for unknown options).

    :raise StartupError: for unusable values or certificates.
    """
    options = _parser().parse_args(argv)
    if not 0 < options.control_port < 65536:
        raise StartupError(f"--control-port: {options.control_port} is not a port")
    try:
        control = tuple(
            parse_address(host, options.control_port) for host in options.control_host
        )
    except ValueError as error:
        raise StartupError(f"--control-host: {error}") from None
    if not options.mount_timeout > 0:
        raise StartupError("--mount-timeout must be positive")
    if not _PLUGIN_NAME.match(options.plugin_name):
        raise StartupError(
            f"--plugin-name: {options.plugin_name!r} is not a plugin name "
            "(letters, digits, '.', '_', '-')"
        )
    socket_path = os.path.join(
        os.path.abspath(options.socket_directory), options.plugin_name + ".sock"
    )
    if len(socket_path.encode()) > _MAXIMUM_SOCKET_PATH:
        raise StartupError(f"the socket path {socket_path} is too long")
    try:
        load_tls_files(options.certificates_directory, options.user)
    except (CertificateError, OSError) as error:
        raise StartupError(f"cannot use the certificates: {error}") from None
    node_uuid = _node_uuid(options.node_uuid, options.certificates_directory)
    return PluginOptions(
        control=control,
        certificates_directory=options.certificates_directory,
        user=options.user,
        node_uuid=node_uuid,
        socket_path=socket_path,
        log_dir=options.log_dir,
        mount_timeout=options.mount_timeout,
        foreground_log=options.foreground_log,
        delete_on_remove=options.delete_on_remove,
    )


def prepare_socket(path: str) -> None:
    """
    Make the socket's directory and remove a stale socket left by a crash.

    :raise StartupError: if another process listens there.
    """
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as error:
        raise StartupError(f"cannot make {os.path.dirname(path)}: {error}") from None
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except OSError as error:
        if error.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT):
            raise StartupError(f"cannot use {path}: {error}") from None
        os.unlink(path)
    else:
        raise StartupError(f"another plugin already listens on {path}")
    finally:
        probe.close()


def build_plugin_service(
    reactor: _PluginReactor, options: PluginOptions
) -> MultiService:
    """Wire the plugin: the REST client, `VolumePlugin`, the unix socket server."""
    client = FlockerClient.from_certificates(
        reactor,
        options.control,
        DEFAULT_API_PORT,
        options.certificates_directory,
        options.user,
    )
    plugin = VolumePlugin(
        reactor,
        client,
        options.node_uuid,
        mount_timeout=options.mount_timeout,
        delete_on_remove=options.delete_on_remove,
    )
    site = Site(plugin.app.resource())
    site.noisy = False
    service = MultiService()
    listener = SocketService(
        UNIXServerEndpoint(reactor, options.socket_path, mode=0o660), site
    )
    listener.setName("socket")
    listener.setServiceParent(service)
    return service


def main(argv: list[str] | None = None) -> None:
    """The ``flocker-docker-plugin`` console script."""
    try:
        options = check_options(sys.argv[1:] if argv is None else argv)
        prepare_socket(options.socket_path)
    except StartupError as error:
        sys.exit(f"{NAME}: {error}")

    async def run(reactor: _PluginReactor) -> None:
        start_daemon_logging(
            NAME, options.log_dir, sys.stdout if options.foreground_log else None
        )
        service = build_plugin_service(reactor, options)
        service.startService()
        listener = service.getServiceNamed("socket")
        try:
            await listener.listening
        except Exception as error:
            service.stopService()
            raise SystemExit(
                f"{NAME}: cannot listen on {options.socket_path}: {error}"
            ) from None
        STARTED.log(
            socket=options.socket_path,
            node_uuid=str(options.node_uuid),
            control=", ".join(format_address(h, p) for h, p in options.control),
        )
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        await Deferred()

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
