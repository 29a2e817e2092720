"""
What ``flocker-deploy`` reads: applications, where each should run, and the
error it raises for anything it cannot accept.

Both application file formats (Flocker's own and docker-compose's) parse to
the same `Application` values; the deployment file gives `Placement`.
"""

from __future__ import annotations

from pyrsistent import PClass, field, pmap_field, pset_field, pvector_field

from ..apiclient import ContainerPort, HealthCheck, Link, RestartPolicy

__all__ = [
    "Application",
    "ConfigurationError",
    "Placement",
    "Volume",
]


class ConfigurationError(Exception):
    """
    A file (or the cluster) does not allow the deployment; nothing was changed.

    The message is one line naming the file and the key, e.g.
    ``application.yml: applications.web.portz: unknown key``.
    """


class Volume(PClass):
    """
    An application's dataset.

    :ivar mountpoint: where it is mounted inside the container.
    :ivar maximum_size: its quota in bytes, or ``None`` to leave the dataset's
        quota as it is (unlimited for a new dataset).
    """

    mountpoint = field(type=str, mandatory=True)
    maximum_size = field(type=(int, type(None)), initial=None)


class Application(PClass):
    """
    One application: a container and, optionally, its dataset.

    Ports and links are kept sorted the way the REST API returns them, so an
    application compares equal to the container the API reports for it.

    :ivar health: how its node tells it is ready, or ``None`` (then a TCP
        connect on its lowest published port).
    :ivar replicas: how many instances run, each on its own node (the
        first on its node in the deployment file, the others on the nodes
        after it); more than one only without a volume.
    """

    name = field(type=str, mandatory=True)
    image = field(type=str, mandatory=True)
    ports = pvector_field(ContainerPort)
    links = pvector_field(Link)
    volume = field(type=(Volume, type(None)), initial=None)
    environment = pmap_field(str, str)
    restart_policy = field(type=RestartPolicy, initial=RestartPolicy())
    memory_limit = field(type=(int, type(None)), initial=None)
    cpu_shares = field(type=(int, type(None)), initial=None)
    health = field(type=(HealthCheck, type(None)), initial=None)
    replicas = field(type=int, initial=1)


class Placement(PClass):
    """
    The deployment file: which node each deployed application runs on.

    :ivar nodes: application name → the node as the file names it (an address
        or a UUID, resolved against the cluster later).
    :ivar paths: application name → where the file names it
        (``nodes.NODE[i]``), for error messages.
    :ivar node_names: every node the file names, with applications or not.
    """

    nodes = pmap_field(str, str)
    paths = pmap_field(str, str)
    node_names = pset_field(str)
