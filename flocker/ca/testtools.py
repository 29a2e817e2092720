"""
Test helpers: a whole cluster's certificates in a directory, in milliseconds.

Other packages' tests use :func:`make_test_cluster_credentials`::

    from flocker.ca import load_tls_files, server_context_factory
    from flocker.ca.testtools import make_test_cluster_credentials

    def test_something(tmp_path):
        creds = make_test_cluster_credentials(tmp_path, nodes=2)
        control = load_tls_files(creds.control_directory, "control-service")
        node = load_tls_files(creds.node_directories[0], "node")
        server = server_context_factory(control.credential, control.authority)
        ...

or the ``cluster_credentials`` pytest fixture below (import it into a
``conftest.py`` or test module: ``from flocker.ca.testtools import
cluster_credentials  # noqa: F401``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from uuid import UUID

import pytest
from pyrsistent import PClass, field, pmap_field, pvector_field

from ._ca import (
    AUTHORITY_CERTIFICATE_FILENAME,
    create_api_certificate,
    create_control_certificate,
    create_node_certificate,
    initialize,
    load_authority,
)


class TestClusterCredentials(PClass):
    """
    Where :func:`make_test_cluster_credentials` wrote a cluster's files.

    ``directory`` holds everything as ``flocker-ca`` writes it (``cluster.crt``,
    ``cluster.key``, ``control-<hostname>.crt``, ``<uuid>.crt``,
    ``<username>.crt`` and keys). Each party also gets a ready-to-use
    directory laid out the way its daemon expects ``/etc/flocker``:

    :ivar directory: The flocker-ca output directory.
    :ivar cluster_uuid: The cluster's UUID.
    :ivar ca_certificate: ``directory/cluster.crt``.
    :ivar ca_key: ``directory/cluster.key``.
    :ivar control_hostname: The host name/IP in the control certificate.
    :ivar control_directory: ``cluster.crt``, ``control-service.crt``/``.key``
        (``load_tls_files(control_directory, "control-service")``).
    :ivar node_uuids: The nodes' UUIDs, in order.
    :ivar node_directories: One per node, in the same order: ``cluster.crt``,
        ``node.crt``/``node.key`` (``load_tls_files(d, "node")``).
    :ivar user_directories: username -> directory with ``cluster.crt``,
        ``<username>.crt``/``.key`` (``load_tls_files(d, username)``).
    """

    __test__ = False  # not a test class, despite the name

    directory = field(type=Path, mandatory=True)
    cluster_uuid = field(type=UUID, mandatory=True)
    ca_certificate = field(type=Path, mandatory=True)
    ca_key = field(type=Path, mandatory=True)
    control_hostname = field(type=str, mandatory=True)
    control_directory = field(type=Path, mandatory=True)
    node_uuids = pvector_field(UUID)
    node_directories = pvector_field(Path)
    user_directories = pmap_field(str, Path)


def _party_directory(
    root: Path,
    name: str,
    ca_certificate: Path,
    certificate: Path,
    key: Path,
    basename: str,
) -> Path:
    """Make ``root/name`` holding ``cluster.crt`` and ``<basename>.crt/.key``."""
    directory = root / name
    directory.mkdir()
    shutil.copyfile(ca_certificate, directory / AUTHORITY_CERTIFICATE_FILENAME)
    shutil.copyfile(certificate, directory / f"{basename}.crt")
    shutil.copyfile(key, directory / f"{basename}.key")
    (directory / f"{basename}.key").chmod(0o600)
    return directory


def make_test_cluster_credentials(
    directory: Path | str,
    nodes: int = 2,
    control_hostname: str = "127.0.0.1",
    users: Iterable[str] = ("alice",),
    cluster_name: str = "test-cluster",
    node_uuids: Iterable[UUID] = (),
) -> TestClusterCredentials:
    """
    Write a whole cluster's certificates into ``directory``.

    ``directory`` must exist and should be empty (a ``tmp_path`` is ideal).
    It gets a CA, a control service
    certificate for ``control_hostname``, ``nodes`` node certificates and one
    API certificate per user, plus per-party directories (see
    :class:`TestClusterCredentials`). Takes a few milliseconds.

    :param node_uuids: UUIDs for the first nodes (random for the rest).
    """
    root = Path(directory)
    ca = initialize(root, cluster_name)
    authority = load_authority(root, with_key=True)
    control = create_control_certificate(authority, control_hostname, root)
    control_directory = _party_directory(
        root,
        "control",
        ca.certificate_path,
        control.certificate_path,
        control.key_path,
        "control-service",
    )
    chosen = list(node_uuids)
    uuids, node_directories = [], []
    for i in range(nodes):
        node = create_node_certificate(
            authority, root, chosen[i] if i < len(chosen) else None
        )
        uuids.append(node.node_uuid)
        node_directories.append(
            _party_directory(
                root,
                f"node-{i}",
                ca.certificate_path,
                node.certificate_path,
                node.key_path,
                "node",
            )
        )
    user_directories = {}
    for username in users:
        user = create_api_certificate(authority, username, root)
        user_directories[username] = _party_directory(
            root,
            f"user-{username}",
            ca.certificate_path,
            user.certificate_path,
            user.key_path,
            username,
        )
    return TestClusterCredentials(
        directory=root,
        cluster_uuid=authority.cluster_uuid,
        ca_certificate=ca.certificate_path,
        ca_key=ca.key_path,
        control_hostname=control_hostname,
        control_directory=control_directory,
        node_uuids=uuids,
        node_directories=node_directories,
        user_directories=user_directories,
    )


@pytest.fixture
def cluster_credentials(tmp_path: Path) -> TestClusterCredentials:
    """A fresh cluster's certificates (2 nodes, control on 127.0.0.1, alice)."""
    directory = tmp_path / "cluster-credentials"
    directory.mkdir()
    return make_test_cluster_credentials(directory)
