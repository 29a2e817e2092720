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
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from eliot import log_message
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.task import react

from flocker.ca import (
    CertificateError,
    TLSFiles,
    UnknownPeer,
    identify_certificate,
    load_tls_files,
)
from flocker.common import ConfigurationError, start_daemon_logging
from flocker.volume import IVolumeBackend

from ._agentconfig import AgentConfig, load_agent_config
from ._dataset_agent import DatasetAgent
from ._roles import FileRoles

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IReactorCore,
        IReactorFromThreads,
        IReactorTCP,
        IReactorTime,
    )

    class _AgentReactor(
        IReactorCore, IReactorTime, IReactorTCP, IReactorProcess, IReactorFromThreads
    ):
        """
        What an agent daemon asks of the reactor ``react`` gives it, as
        Twisted types the global reactor (``twisted.internet._IReactorCommon``):
        time for the loop, the fence and the control connection, TCP for the
        control connection, the transfers and the router, processes for the
        volume backend's commands, calls from the Docker thread pool, and the
        shutdown trigger.
        """


def make_backend(reactor: IReactorProcess, config: AgentConfig) -> IVolumeBackend:
    """The volume backend ``agent.yml`` asks for."""
    # load_agent_config refuses a zfs backend without a pool and the others
    # without a root.
    if config.backend == "zfs":
        from flocker.volume.zfs import ZFSVolumeBackend

        assert config.pool is not None
        return ZFSVolumeBackend(reactor, config.pool, config.default_maximum_size)
    assert config.root is not None
    if config.backend == "directory":
        from flocker.volume.directory import DirectoryVolumeBackend

        return DirectoryVolumeBackend(
            reactor, config.root, default_maximum_size=config.default_maximum_size
        )
    from flocker.volume.loopback import DEFAULT_SIZE, LoopbackVolumeBackend

    # An image needs a size: without default-maximum-size, the backend's own.
    return LoopbackVolumeBackend(
        reactor,
        config.root,
        default_maximum_size=config.default_maximum_size or DEFAULT_SIZE,
    )


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


def build_dataset_agent_service(
    reactor: _AgentReactor, config: AgentConfig
) -> MultiService:
    """
    Build a dataset agent from ``agent.yml``; nothing runs until the
    service starts.

    :raise StartupError: for unusable certificates or a corrupt role record.
    """
    tls, node_uuid, roles = load_node_files(config)
    agent = DatasetAgent(
        reactor,
        node_uuid,
        config.address,
        make_backend(reactor, config),
        roles,
        tls,
        config.control,
        config.transfer_port,
        fence_after=config.fence_after,
    )
    log_message(
        message_type="flocker:node:dataset_agent:configured",
        node_uuid=node_uuid,
        address=config.address,
        control=[str(a) for a in config.control],
        backend=config.backend,
        fence_after=config.fence_after,
    )
    return agent.service()


def build_container_agent_service(
    reactor: _AgentReactor, config: AgentConfig
) -> MultiService:
    """
    Build a container agent from ``agent.yml``: the Docker runtime (in a
    thread pool), the node's router and the agent that joins them.
    """
    import docker
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    from flocker.route import NodeRouter
    from flocker.runtime import DockerRuntime

    from ._answering import AnsweringWatch
    from ._container_agent import ContainerAgent
    from ._era import node_era
    from ._health import NetworkProbe
    from ._ports import read_busy_ports

    tls, node_uuid, _ = load_node_files(config)
    pool = ThreadPool(minthreads=1, maxthreads=4, name="docker")
    runtime = DockerRuntime(
        node_uuid, lambda: docker.from_env(timeout=120), pool, reactor
    )
    router = NodeRouter(reactor, config.address)
    agent = ContainerAgent(
        reactor,
        node_uuid,
        config.address,
        runtime,
        router,
        tls,
        config.control,
        fence_after=config.fence_after,
        answering=AnsweringWatch(reactor, node_uuid, config.address),
        listening=partial(deferToThreadPool, reactor, pool, read_busy_ports, config.address),
        era=node_era(node_uuid),
        registries=config.registries,
        health_probe=NetworkProbe(reactor),
    )
    service = MultiService()
    _ThreadPoolService(pool).setServiceParent(service)
    router.setServiceParent(service)
    agent.service().setServiceParent(service)
    log_message(
        message_type="flocker:node:container_agent:configured",
        node_uuid=node_uuid,
        address=config.address,
        control=[str(a) for a in config.control],
        fence_after=config.fence_after,
    )
    return service


class _ThreadPoolService(Service):
    """Starts and stops a thread pool with the agent."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start the threads."""
        Service.startService(self)
        self.pool.start()

    def stopService(self) -> None:  # noqa: N802
        """Stop the threads."""
        Service.stopService(self)
        self.pool.stop()


def _arguments(argv: list[str], prog: str = "flocker-dataset-agent") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Converge this node towards the cluster configuration.",
    )
    parser.add_argument(
        "--agent-config", default="/etc/flocker/agent.yml", help="the agent.yml file"
    )
    parser.add_argument(
        "--foreground-log", action="store_true", help="also log to standard output"
    )
    return parser.parse_args(argv)


def _agent_main(
    name: str,
    build: Callable[[_AgentReactor, AgentConfig], MultiService],
    argv: list[str] | None,
) -> None:
    """Run an agent daemon: check its configuration, then serve until stopped."""
    options = _arguments(sys.argv[1:] if argv is None else argv, name)
    try:
        config = load_agent_config(options.agent_config)
        load_node_files(config)
    except (ConfigurationError, StartupError) as error:
        sys.exit(f"{name}: {error}")

    def main(reactor: _AgentReactor) -> Deferred[None]:
        start_daemon_logging(
            name,
            config.log_directory,
            sys.stdout if options.foreground_log else None,
        )
        service = build(reactor, config)
        service.startService()
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        return Deferred()

    react(main)


def dataset_agent_main(argv: list[str] | None = None) -> None:
    """The ``flocker-dataset-agent`` console script."""
    _agent_main("flocker-dataset-agent", build_dataset_agent_service, argv)


def container_agent_main(argv: list[str] | None = None) -> None:
    """The ``flocker-container-agent`` console script."""
    _agent_main("flocker-container-agent", build_container_agent_service, argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "container":
        container_agent_main(sys.argv[2:])
    else:
        dataset_agent_main()
