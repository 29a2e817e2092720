"""
``flocker-control --store etcd://…`` as a real process against a real etcd:
moving a file configuration in with ``--import``, and refusing to start on
what it must not serve.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads

from flocker.ca.testtools import (
    TestClusterCredentials,
    cluster_credentials,  # noqa: F401 (fixture)
)

from ...testtools.etcd import EtcdCluster
from .._etcd import EtcdClient
from .._etcd_store import EtcdConfigurationStore
from .._persistence import FileConfigurationStore
from ._examples import EXAMPLE_DEPLOYMENT

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[3]


def control(credentials: TestClusterCredentials, tmp_path: Path, *args: str) -> Any:
    """Run ``flocker-control`` with ``args`` until it exits (or 60 s pass)."""
    return subprocess.run(
        [
            sys.executable, "-m", "flocker.control.script",
            "--data-path", str(tmp_path / "instance"),
            "--certificates-directory", str(credentials.control_directory),
            "--foreground",
            "--listen-address", "127.0.0.1",
            "--port", "0",
            "--agent-port", "0",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


@pytest.fixture
def client(etcd_cluster: EtcdCluster) -> Any:
    """A client of a fresh one-member real etcd."""
    client = EtcdClient(reactor, etcd_cluster.endpoints, timeout=1.0)
    yield client
    pytest_twisted.blockon(client.close())


@pytest_twisted.ensureDeferred
async def test_import_once_then_refused(
    cluster_credentials: TestClusterCredentials,  # noqa: F811
    etcd_cluster: EtcdCluster,
    client: EtcdClient,
    tmp_path: Path,
) -> None:
    """
    ``--import DIR`` copies a file store's configuration, generation and all,
    into an empty etcd and exits 0; a second import is refused with one line
    and changes nothing.
    """
    file_store = FileConfigurationStore(IReactorFromThreads(reactor), reactor.getThreadPool(), tmp_path / "old")  # type: ignore[attr-defined]
    await file_store.load()
    await file_store.save(EXAMPLE_DEPLOYMENT, 0)
    imported = control(
        cluster_credentials, tmp_path, "--store", etcd_cluster.url, "--import", str(tmp_path / "old")
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported generation 1" in imported.stdout
    stored = await EtcdConfigurationStore(client).load()
    assert (stored.generation, stored.deployment) == (1, EXAMPLE_DEPLOYMENT)
    again = control(
        cluster_credentials, tmp_path, "--store", etcd_cluster.url, "--import", str(tmp_path / "old")
    )
    assert again.returncode != 0
    [line] = again.stderr.strip().splitlines()
    assert line.startswith("flocker-control: error:") and "already" in line
    assert await EtcdConfigurationStore(client).load() == stored


@pytest_twisted.ensureDeferred
async def test_refuses_to_start_on_foreign_data(
    cluster_credentials: TestClusterCredentials,  # noqa: F811
    etcd_cluster: EtcdCluster,
    client: EtcdClient,
    tmp_path: Path,
) -> None:
    """
    An etcd whose configuration key holds something of another format or
    version stops the control service at start with one clear line, and the
    data is left as it was.
    """
    key = EtcdConfigurationStore(client).key
    for foreign, complaint in [
        (b'{"envelope_version": 99, "generation": 3, "configuration": {}}', "version 99"),
        (b'{"some": "other program"}', "not a Flocker configuration"),
    ]:
        await client.put(key, foreign)
        result = control(cluster_credentials, tmp_path, "--store", etcd_cluster.url)
        assert result.returncode != 0
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("flocker-control: error:") and complaint in line
        stored = await client.get(key)
        assert stored is not None and stored.value == foreign


def test_refuses_to_start_without_etcd(
    cluster_credentials: TestClusterCredentials,  # noqa: F811
    tmp_path: Path,
) -> None:
    """With no etcd member answering, start-up fails with one line naming etcd."""
    from ...testtools.etcd import free_port

    result = control(
        cluster_credentials, tmp_path, "--store", f"etcd://127.0.0.1:{free_port()}"
    )
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert "cannot reach etcd" in line
