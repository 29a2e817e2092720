"""``flocker-dataset-agent``: the daemon that converges a node's datasets.

It reads ``agent.yml`` (see ``_agentconfig``), takes the node's identity from
its certificate, and wires: the volume backend, the durable record of dataset
roles, the transfer receiver on the transfer port, the connection to the
control service, and the convergence loop that connects them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from eliot import log_message
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import react

from flocker.ca import (
    CertificateError,
    TLSFiles,
    UnknownPeer,
    identify_certificate,
    load_tls_files,
)
from flocker.common import ConfigurationError, start_daemon_logging
from flocker.control import NodeState
from flocker.control._protocol_agent import AgentAMPClient, NotConnected
from flocker.volume import IVolumeBackend
from flocker.volume._transfer_wire import TransferHeader
from flocker.volume.transfer import TransferReceiver, push, transfer_service

from ._agentconfig import AgentConfig, load_agent_config
from ._loop import ConvergenceLoop
from ._roles import PRIMARY, FileRoles
from .datasets import DatasetDeployer, DatasetMover


def make_backend(reactor: Any, config: AgentConfig) -> IVolumeBackend:
    """The volume backend ``agent.yml`` asks for."""
    if config.backend == "zfs":
        from flocker.volume.zfs import ZFSVolumeBackend

        return ZFSVolumeBackend(reactor, config.pool, config.default_maximum_size)
    if config.backend == "directory":
        from flocker.volume.directory import DirectoryVolumeBackend

        return DirectoryVolumeBackend(
            reactor, config.root, default_maximum_size=config.default_maximum_size
        )
    from flocker.volume.loopback import LoopbackVolumeBackend

    return LoopbackVolumeBackend(
        reactor, config.root, default_maximum_size=config.default_maximum_size
    )


class _LoopService(Service):
    """Stops the convergence loop (waiting for its pass) when the agent stops."""

    def __init__(self, loop: ConvergenceLoop) -> None:
        self.loop = loop

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted's name)
        """Let the running pass end."""
        Service.stopService(self)
        return self.loop.stop()


class StartupError(Exception):
    """The agent cannot start: unusable certificates or state."""


def load_node_files(config: AgentConfig) -> tuple[TLSFiles, str, FileRoles]:
    """
    The node's TLS files, its UUID (from its certificate) and its roles.

    :raise StartupError: with a one-line reason.
    """
    try:
        tls = load_tls_files(config.certificates, "node")
        identity = identify_certificate(tls.credential.certificate)
    except (CertificateError, UnknownPeer, OSError) as error:
        raise StartupError(f"cannot use the certificates: {error}") from None
    if identity.node_uuid is None:
        raise StartupError(f"{config.certificates}/node.crt is not a node certificate")
    try:
        roles = FileRoles(os.path.join(config.state_directory, "dataset-roles.json"))
    except (OSError, ValueError) as error:
        raise StartupError(str(error)) from None
    return tls, str(identity.node_uuid), roles


def build_dataset_agent_service(reactor: Any, config: AgentConfig) -> MultiService:
    """
    Wire a dataset agent; nothing runs until the service starts.

    :raise StartupError: for unusable certificates or a corrupt role record.
    """
    tls, node_uuid, roles = load_node_files(config)
    backend = make_backend(reactor, config)

    def send(
        dataset_id: str, snapshot: str, base: str | None, host: str, final: bool
    ) -> Deferred[int]:
        sent = push(
            reactor,
            backend,
            dataset_id,
            snapshot,
            base,
            host,
            config.transfer_port,
            tls,
            final=final,
        )
        return sent.addCallback(lambda result: result.bytes_sent)

    holder: dict[str, ConvergenceLoop] = {}

    def in_use(dataset_id: str) -> bool:
        configuration = holder["loop"].configuration
        if configuration is None:
            return True
        lease = configuration.leases.expire(reactor.seconds()).get(dataset_id)
        return lease is not None and lease.node_uuid == node_uuid

    mover = DatasetMover(backend, roles, send, in_use=in_use)
    deployer = DatasetDeployer(node_uuid, config.address, backend, roles, mover)

    def report(state: NodeState) -> Deferred[None]:
        def not_connected(failure: Any) -> None:
            # Sent again by the client as soon as it is connected.
            failure.trap(NotConnected)

        return client.report_state(state).addErrback(not_connected)

    loop = ConvergenceLoop(reactor, deployer, report)
    holder["loop"] = loop
    client = AgentAMPClient.for_control_service(
        reactor, config.control_host, config.control_port, tls, "dataset",
        loop.cluster_updated,
    )

    def stored(header: TransferHeader) -> None:
        # Durable before the sender is told, so the sender can let go.
        if header.final:
            roles.set(header.dataset_id, PRIMARY)

    receiver = TransferReceiver(backend, on_stored=stored)
    service = MultiService()
    transfer_service(
        reactor, receiver, config.transfer_port, tls, interface=config.address
    ).setServiceParent(service)
    client.setServiceParent(service)
    _LoopService(loop).setServiceParent(service)
    log_message(
        message_type="flocker:node:dataset_agent:configured",
        node_uuid=node_uuid,
        address=config.address,
        backend=config.backend,
    )
    return service


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flocker-dataset-agent",
        description="Converge this node's datasets towards the cluster configuration.",
    )
    parser.add_argument(
        "--agent-config", default="/etc/flocker/agent.yml", help="the agent.yml file"
    )
    parser.add_argument(
        "--foreground-log", action="store_true", help="also log to standard output"
    )
    return parser.parse_args(argv)


def dataset_agent_main(argv: list[str] | None = None) -> None:
    """The ``flocker-dataset-agent`` console script."""
    options = _arguments(sys.argv[1:] if argv is None else argv)
    try:
        config = load_agent_config(options.agent_config)
        load_node_files(config)
    except (ConfigurationError, StartupError) as error:
        sys.exit(f"flocker-dataset-agent: {error}")

    def main(reactor: Any) -> Deferred[None]:
        start_daemon_logging(
            "flocker-dataset-agent",
            config.log_directory,
            sys.stdout if options.foreground_log else None,
        )
        service = build_dataset_agent_service(reactor, config)
        service.startService()
        done: Deferred[None] = Deferred()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        return done if service.running else succeed(None)

    react(main)


if __name__ == "__main__":
    dataset_agent_main()
