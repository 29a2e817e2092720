"""
The ``flocker-control`` daemon: the control service of a Flocker cluster.

Usage::

    flocker-control [--data-path /var/lib/flocker] [--port 4523]
                    [--agent-port 4524] [--certificates-directory /etc/flocker]
                    [--log-dir /var/log/flocker] [--foreground]
                    [--failover-after 20] [--fence-after 10]
                    [--store etcd://HOST:PORT[,HOST:PORT...] [--import FILE]]

It loads the desired configuration from ``<data-path>/configuration.json``
(refusing to start if that file is corrupt), then serves the REST API
(HTTPS, client certificates required) on ``--port`` and the agent protocol
(AMP over TLS) on ``--agent-port``.  The certificates directory holds
``cluster.crt`` and ``control-service.crt``/``.key`` as ``flocker-ca``
makes them.  Logs are eliot JSON lines in ``<log-dir>/flocker-control.log``
(and on standard output with ``--foreground``).  SIGTERM or SIGINT stop it.

Datasets whose replication says ``failover: automatic`` fail over by
themselves (`flocker.control._failover.AutomaticFailover`) once their
primary's dataset agent has been silent for ``--failover-after`` seconds;
the same silence lets a manual failover go ahead without ``force``.
``--fence-after`` is the agents' own setting (they stop exposing their
copies after that long without the control service): the control service
refuses to start unless ``--failover-after`` is greater than
``--fence-after`` plus `FENCE_MARGIN` seconds, so that a cut-off primary
has fenced itself before a replica is promoted.

With ``--store etcd://…`` the configuration lives in etcd instead of the
file, and several ``flocker-control`` instances (each with its own
``--data-path`` for nothing but its logs) serve the same cluster: every
instance serves the REST API and its agents, follows the configuration other
instances write (`ConfigurationService.follow`) and shares its agents'
reports with the others (`flocker.control._shared_state`); one of them, the
leader (`flocker.control._leader`), runs the singleton duties
(`flocker.control._maintenance`).  ``--import FILE`` copies a file store's
configuration (its ``configuration.json`` or its data directory) into an
empty etcd once, then exits.

Errors in the options, missing certificates or a corrupt configuration are
one line on standard error and a non-zero exit status.

Run as ``flocker-control`` (console script) or
``python -m flocker.control.script``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TextIO, cast
from uuid import uuid4

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.task import react

from flocker.ca import (
    CertificateError,
    identify_certificate,
    load_tls_files,
    server_context_factory,
)
from flocker.common import start_daemon_logging

from ._clusterstate import DEFAULT_STATE_EXPIRATION, ClusterStateService
from ._etcd import EtcdClient, EtcdUnavailable, parse_etcd_url
from ._etcd_store import (
    ConfigurationAlreadyPresent,
    EtcdConfigurationStore,
    import_configuration,
)
from ._leader import AlwaysLeader, Leadership
from ._maintenance import build_duties
from ._persistence import (
    ConfigurationCorrupt,
    ConfigurationService,
    FileConfigurationStore,
)
from ._protocol import FENCE_MARGIN, ControlAMPService
from ._relay import AgentRelay
from ._shared_state import SharedClusterState
from .rest_service import DEFAULT_FAILOVER_AFTER, create_api_service

__all__ = [
    "AGENT_PORT",
    "API_PORT",
    "DEFAULT_FENCE_AFTER",
    "FENCE_MARGIN",
    "ControlOptions",
    "build_control_service",
    "main",
    "parse_options",
]

#: Default TCP ports of the REST API and the agent protocol.
API_PORT = 4523
AGENT_PORT = 4524

#: The agents' default ``fence_after``: seconds without the control service
#: after which a dataset agent stops exposing its copies.
DEFAULT_FENCE_AFTER = 10.0


#: Exit statuses: a failure to start, and a malformed command line.
EXIT_FAILURE = 1
EXIT_USAGE = 2

#: The file name of the control service's certificate and key (``.crt``/``.key``).
CONTROL_CERTIFICATE_BASENAME = "control-service"


class UsageError(Exception):
    """The command line is wrong."""


@attrs.frozen
class ControlOptions:
    """
    The daemon's settings, from its command line.

    :ivar data_path: directory of the configuration file.
    :ivar port: REST API port (0: any free port).
    :ivar agent_port: agent protocol port (0: any free port).
    :ivar certificates_directory: ``cluster.crt`` and ``control-service.crt/.key``.
    :ivar log_dir: where ``flocker-control.log`` goes, or ``None`` for no file.
    :ivar foreground: also log to standard output.
    :ivar listen_address: interface to listen on (empty: all).
    :ivar ports_file: if set, the bound ports are written there as JSON
        ``{"api": N, "agent": M}`` once listening (useful with port 0).
    :ivar state_expiration: seconds of silence before a node's state is dropped.
    :ivar failover_after: seconds a primary's dataset agent must have been
        silent before a failover is allowed without ``force``, and before a
        dataset with automatic failover fails over.
    :ivar fence_after: the agents' ``fence_after`` setting; ``failover_after``
        must exceed it by more than `FENCE_MARGIN`.
    :ivar store: the etcd members' client URLs (from ``etcd://h:p,h:p``),
        or ``None`` for the embedded file store.
    :ivar import_path: with ``store``, a file store's configuration to copy
        into etcd (then exit), or ``None``.
    :ivar instance_name: how this instance names itself to the others (in
        the leadership key and the shared state, followed by a random part
        so two instances never share an identity); empty: the host name
        and the API port.
    """

    data_path: Path = Path("/var/lib/flocker")
    port: int = API_PORT
    agent_port: int = AGENT_PORT
    certificates_directory: Path = Path("/etc/flocker")
    log_dir: Path | None = Path("/var/log/flocker")
    foreground: bool = False
    listen_address: str = ""
    ports_file: Path | None = None
    state_expiration: float = DEFAULT_STATE_EXPIRATION
    failover_after: float = DEFAULT_FAILOVER_AFTER
    fence_after: float = DEFAULT_FENCE_AFTER
    store: tuple[str, ...] | None = None
    import_path: Path | None = None
    instance_name: str = ""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise the problem as a `UsageError`."""
        raise UsageError(message)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {port}")
    return port


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flocker-control",
        description="Run the Flocker control service (REST API and agent protocol).",
    )
    defaults = ControlOptions()
    parser.add_argument(
        "--data-path",
        type=Path,
        default=defaults.data_path,
        help="directory of the stored configuration (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=defaults.port,
        help="REST API port (default: %(default)s)",
    )
    parser.add_argument(
        "--agent-port",
        type=_port,
        default=defaults.agent_port,
        help="agent protocol port (default: %(default)s)",
    )
    parser.add_argument(
        "--certificates-directory",
        type=Path,
        default=defaults.certificates_directory,
        help="cluster.crt and control-service.crt/.key (default: %(default)s)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="directory for flocker-control.log (default: /var/log/flocker, "
        "or no file with --foreground)",
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="log to standard output too",
    )
    parser.add_argument(
        "--listen-address",
        default="",
        help="address to listen on (default: all interfaces)",
    )
    parser.add_argument(
        "--ports-file",
        type=Path,
        default=None,
        help='write {"api": PORT, "agent": PORT} here once listening',
    )
    parser.add_argument(
        "--state-expiration",
        type=_positive,
        default=defaults.state_expiration,
        help="seconds before a silent node's state is forgotten (default: %(default)s)",
    )
    parser.add_argument(
        "--failover-after",
        metavar="SECONDS",
        type=_positive,
        default=defaults.failover_after,
        help="seconds a primary's dataset agent must have been silent before a "
        "failover is allowed without force, and before datasets with automatic "
        "failover fail over (default: %(default)s)",
    )
    parser.add_argument(
        "--fence-after",
        metavar="SECONDS",
        type=_positive,
        default=defaults.fence_after,
        help="the dataset agents' --fence-after: seconds without the control "
        "service after which they stop exposing their copies; --failover-after "
        f"must exceed it by more than {FENCE_MARGIN:g} (default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        metavar="etcd://HOST:PORT[,HOST:PORT...]",
        default=None,
        help="keep the configuration in this etcd cluster, shared by every "
        "control instance given the same URL (default: a file in --data-path)",
    )
    parser.add_argument(
        "--instance-name",
        metavar="NAME",
        default="",
        help="with --store: this instance's name among the control instances "
        "(default: HOSTNAME:PORT)",
    )
    parser.add_argument(
        "--import",
        dest="import_path",
        metavar="FILE",
        type=Path,
        default=None,
        help="with --store: copy this file store's configuration (its "
        "configuration.json or data directory) into etcd, which must hold "
        "none yet, then exit",
    )
    return parser


def parse_options(argv: Sequence[str]) -> ControlOptions:
    """
    The settings a command line asks for.

    :raise UsageError: the command line is wrong.
    """
    namespace = _parser().parse_args(list(argv))
    if not namespace.failover_after > namespace.fence_after + FENCE_MARGIN:
        raise UsageError(
            f"--failover-after ({namespace.failover_after:g} s) must be greater than "
            f"--fence-after ({namespace.fence_after:g} s) plus {FENCE_MARGIN:g}: a "
            "primary cut off from the control service must have fenced itself "
            "before a replica is promoted"
        )
    store = None
    if namespace.store is not None:
        try:
            store = tuple(parse_etcd_url(namespace.store))
        except ValueError as e:
            raise UsageError(f"--store: {e}") from None
    if namespace.import_path is not None and store is None:
        raise UsageError("--import needs --store etcd://...: the store to import into")
    log_dir = namespace.log_dir
    if log_dir is None and not namespace.foreground:
        log_dir = ControlOptions().log_dir
    return ControlOptions(
        data_path=namespace.data_path,
        port=namespace.port,
        agent_port=namespace.agent_port,
        certificates_directory=namespace.certificates_directory,
        log_dir=log_dir,
        foreground=namespace.foreground,
        listen_address=namespace.listen_address,
        ports_file=namespace.ports_file,
        state_expiration=namespace.state_expiration,
        failover_after=namespace.failover_after,
        fence_after=namespace.fence_after,
        store=store,
        import_path=namespace.import_path,
        instance_name=namespace.instance_name,
    )


if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IDelayedCall, IReactorThreads, IReactorTime
    from zope.interface import implementer

    @implementer(IReactorTime)
    class _ControlReactor(Protocol):
        """
        What the control service asks of its reactor, method by method: time
        for every service, and the shutdown trigger (``IReactorCore``); the
        file store's threads are asked for below.  A typing protocol rather
        than an interface combining Twisted's, so that Twisted's type of the
        global reactor (``_IReactorCommon``), which the tests pass, fits it.
        """

        def seconds(self) -> float:
            """``IReactorTime.seconds``."""

        def callLater(  # noqa: N802 - Twisted's name
            self,
            delay: float,
            callable: Callable[..., Any],
            *args: object,
            **kwargs: object,
        ) -> IDelayedCall:
            """``IReactorTime.callLater``."""

        def getDelayedCalls(self) -> Sequence[IDelayedCall]:  # noqa: N802
            """``IReactorTime.getDelayedCalls``."""

        def addSystemEventTrigger(  # noqa: N802 - Twisted's name
            self,
            phase: str,
            eventType: str,  # noqa: N803
            callable: Callable[..., Any],
            *args: object,
            **kwargs: object,
        ) -> Any:
            """``IReactorCore.addSystemEventTrigger``."""


def build_control_service(
    reactor: _ControlReactor, options: ControlOptions
) -> MultiService:
    """
    Wire the control service: configuration, cluster state, agents, REST API.

    The result's ``configuration_service`` must be loaded (``await
    service.configuration_service.load()``) before it is started.  Its
    children are named ``"agents"`` (the `ControlAMPService`), ``"api"``
    (the REST API service), ``"leadership"`` (an `AlwaysLeader` with the file
    store, a `Leadership` with etcd) whose ``duties`` are the singleton
    duties of `build_duties` (``"failover"``, the `AutomaticFailover`, among
    them) and, with etcd, ``"shared-state"`` (the `SharedClusterState`) and
    ``"relay"`` (the `AgentRelay` the REST API reaches agents through).

    :raise CertificateError: the certificates are missing or unusable.
    """
    tls = load_tls_files(options.certificates_directory, CONTROL_CERTIFICATE_BASENAME)
    context = server_context_factory(tls.credential, tls.authority)
    etcd: EtcdClient | None = None
    store: Any
    if options.store is None:
        # Every reactor provides IReactorThreads, but Twisted's type of the
        # global reactor (_IReactorCommon) leaves it out.
        threads = cast("IReactorThreads", reactor)
        store = FileConfigurationStore(
            threads, threads.getThreadPool(), options.data_path
        )
    else:
        etcd = EtcdClient(reactor, list(options.store))
        store = EtcdConfigurationStore(etcd)
    configuration_service = ConfigurationService(store)
    cluster_state_service = ClusterStateService(
        reactor, expiration=options.state_expiration
    )
    service = MultiService()
    agents = ControlAMPService(
        reactor,
        configuration_service,
        cluster_state_service,
        SSL4ServerEndpoint(
            reactor, options.agent_port, context, interface=options.listen_address
        ),
        failover_after=options.failover_after,
    )
    agents.setName("agents")
    agents.setServiceParent(service)
    # What the REST layer asks the agents through: with etcd, an agent
    # connected to another instance is asked through it.
    reach: Any = agents
    sharing: SharedClusterState | None = None
    instance_id = ""
    if etcd is not None:
        name = options.instance_name or f"{socket.gethostname()}:{options.port}"
        instance_id = f"{name}/{uuid4()}"
        sharing = SharedClusterState(reactor, etcd, cluster_state_service, instance_id)
        configuration_service.stale_reason = sharing.stale_reason
        sharing.setName("shared-state")
        sharing.setServiceParent(service)
        reach = AgentRelay(reactor, etcd, instance_id, agents, sharing)
        reach.setName("relay")
        reach.setServiceParent(service)
    api_endpoint: Any = options.port
    if options.listen_address:
        api_endpoint = f"tcp:{options.port}:interface={options.listen_address}"
    api = create_api_service(
        reactor,
        configuration_service,
        cluster_state_service,
        api_endpoint,
        context,
        reach,
        options.failover_after,
        cluster_uuid=identify_certificate(tls.credential.certificate).cluster_uuid,
        duties=False,
    )
    api.setName("api")
    api.setServiceParent(service)
    duties = build_duties(
        reactor, configuration_service, cluster_state_service, options.failover_after
    )
    leadership: Service = (
        AlwaysLeader(duties) if etcd is None else Leadership(reactor, etcd, instance_id, duties)
    )
    leadership.setName("leadership")
    leadership.setServiceParent(service)
    service.etcd = etcd  # type: ignore[attr-defined]
    service.configuration_service = configuration_service  # type: ignore[attr-defined]
    service.cluster_state_service = cluster_state_service  # type: ignore[attr-defined]
    return service


async def _listening_ports(service: MultiService) -> dict[str, int]:
    """The ports the agents and API services listen on."""
    agents: Any = service.getServiceNamed("agents")
    api: Any = service.getServiceNamed("api")
    agent_port = await agents.listening()
    api_port = await api.getServiceNamed("api").listening()
    return {"api": api_port.getHost().port, "agent": agent_port.getHost().port}


def _fail(stderr: TextIO, message: str, status: int = EXIT_FAILURE) -> NoReturn:
    stderr.write(f"flocker-control: error: {message}\n")
    stderr.flush()
    raise SystemExit(status)


def main(
    reactor: _ControlReactor,
    argv: Sequence[str],
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> Deferred[None]:
    """
    Run the control service until the reactor stops (``react(main, [argv])``).

    :return: a Deferred that fails with ``SystemExit`` on a start-up error
        and otherwise never fires.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr

    async def run() -> None:
        try:
            options = parse_options(argv)
        except UsageError as e:
            _fail(err, str(e), EXIT_USAGE)
        try:
            service = build_control_service(reactor, options)
        except CertificateError as e:
            _fail(err, f"cannot load certificates: {e}")
        start_daemon_logging(
            "flocker-control",
            None if options.log_dir is None else str(options.log_dir),
            stdout=out if options.foreground else None,
        )
        configuration: Any = service.configuration_service  # type: ignore[attr-defined]
        if options.import_path is not None:
            try:
                generation = await import_configuration(
                    configuration.store, options.import_path
                )
            except (ConfigurationAlreadyPresent, ConfigurationCorrupt) as e:
                _fail(err, str(e))
            except EtcdUnavailable as e:
                _fail(err, f"cannot reach etcd: {e}")
            except OSError as e:
                _fail(err, f"cannot read {options.import_path}: {e}")
            out.write(
                f"flocker-control: imported generation {generation} of "
                f"{options.import_path} into etcd\n"
            )
            out.flush()
            raise SystemExit(0)
        try:
            await configuration.load()
        except ConfigurationCorrupt as e:
            _fail(err, str(e))
        except EtcdUnavailable as e:
            _fail(err, f"cannot reach etcd: {e}")
        except OSError as e:
            _fail(err, f"cannot read the configuration in {options.data_path}: {e}")
        configuration.follow()
        service.startService()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        try:
            ports = await _listening_ports(service)
        except CannotListenError as e:
            _fail(err, f"cannot listen: {e}")
        if options.ports_file is not None:
            temporary = options.ports_file.with_name(options.ports_file.name + ".tmp")
            temporary.write_text(json.dumps(ports))
            os.replace(temporary, options.ports_file)
        await Deferred()  # until the reactor stops

    return Deferred.fromCoroutine(run())


def _run() -> None:
    """The console script's entry point."""
    react(main, [sys.argv[1:]])


if __name__ == "__main__":
    _run()
