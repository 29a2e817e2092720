"""Pytest fixtures for the real parts Flocker drives, and the no-skip rule.

Loaded for every test by the project's ``conftest.py``.  Fixtures:

* ``zfs_pool`` — a fresh file-backed pool, destroyed after the test even
  when it fails; ``make_zfs_pool`` makes more of them (e.g. two nodes).
* ``docker_client`` — a Docker SDK client; containers that the test made
  (those labelled with ``docker_test_labels``) are removed afterwards.
* ``busybox_image`` — the tag of a locally built busybox image.
* ``etcd_cluster`` — a one-member real etcd on free loopback ports, killed
  after the test; ``make_etcd_cluster`` makes more (``members=3``).
* ``local_registries`` — two real Docker registries on loopback for the
  session, a public one and a private one asking for credentials
  (``flocker.testtools.registry.LocalRegistry``).

When ``FLOCKER_REQUIRE_REAL=1`` (``admin/run-tests`` sets it when run as
root, as CI is), a functional or acceptance test that skips is reported as a
failure: a missing ZFS or Docker must not pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .images import ensure_busybox_image
from .zfs import FilePool, create_pool, destroy_pool, zfs_available

REQUIRE_REAL = "FLOCKER_REQUIRE_REAL"
TEST_LABEL = "org.flocker.test"
REAL_MARKERS = ("functional", "acceptance")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Turn the skip of a real-component test into a failure when required."""
    outcome: Any = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get(REQUIRE_REAL) != "1":
        return
    if not any(item.get_closest_marker(name) for name in REAL_MARKERS):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
    report.outcome = "failed"
    report.longrepr = (
        f"{REQUIRE_REAL}=1 but this {REAL_MARKERS} test was skipped: {reason}"
    )


def require_zfs() -> None:
    """Skip the calling test if ZFS is not usable here."""
    problem = zfs_available()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture
def make_zfs_pool(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., FilePool]]:
    """A factory of file-backed pools, all destroyed after the test."""
    require_zfs()
    made: list[FilePool] = []
    directory = str(tmp_path_factory.mktemp("zfs"))

    def make(size: str = "4G") -> FilePool:
        pool = create_pool(directory, size=size)
        made.append(pool)
        return pool

    yield make
    errors = []
    for pool in reversed(made):
        try:
            destroy_pool(pool)
        except Exception as error:  # keep destroying the others
            errors.append(error)
    shutil.rmtree(directory, ignore_errors=True)
    if errors:
        raise errors[0]


@pytest.fixture
def zfs_pool(make_zfs_pool: Callable[..., FilePool]) -> FilePool:
    """A fresh file-backed ZFS pool for one test."""
    return make_zfs_pool()


@pytest.fixture(scope="session")
def _docker_session() -> Iterator[Any]:
    """One Docker SDK client for the session, or a skip if none answers."""
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as error:
        pytest.skip(f"Docker Engine does not answer: {error}")
    yield client
    client.close()


@pytest.fixture
def docker_test_labels() -> dict[str, str]:
    """Labels to put on every container a test makes, for clean-up."""
    return {TEST_LABEL: uuid.uuid4().hex}


@pytest.fixture
def docker_client(
    _docker_session: Any, docker_test_labels: dict[str, str]
) -> Iterator[Any]:
    """A Docker client; containers with the test's labels go afterwards."""
    yield _docker_session
    value = docker_test_labels[TEST_LABEL]
    for container in _docker_session.containers.list(
        all=True, filters={"label": f"{TEST_LABEL}={value}"}
    ):
        container.remove(force=True, v=True)


@pytest.fixture(scope="session")
def busybox_image(_docker_session: Any) -> str:
    """The tag of the local busybox image, built once per machine."""
    return ensure_busybox_image(_docker_session)


@pytest.fixture
def eliot_logger() -> Iterator[Any]:
    """
    An eliot ``MemoryLogger`` receiving every message the test logs.

    Afterwards the messages are validated against their declared types, and
    any logged traceback fails the test unless the test flushed it.
    """
    from eliot import MemoryLogger
    from eliot.testing import check_for_errors, swap_logger

    logger = MemoryLogger()
    previous = swap_logger(logger)
    try:
        yield logger
    finally:
        swap_logger(previous)
    check_for_errors(logger)  # validates the messages, then the tracebacks


#: The node addresses of the tests' local clusters (…11, …12, …).
TEST_NETWORK = "198.18.1."


@pytest.fixture
def make_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """
    A factory of local clusters (``flocker.testtools.lab``), all stopped
    and removed after the test; each call returns the cluster dict.

    Their nodes are on :data:`TEST_NETWORK`, not on the addresses the
    quickstart's and the benchmarks' clusters use, so a test cutting its
    node off with iptables cuts no other cluster's node.  Keyword
    arguments go to `lab.up` (``fence_after``, ``failover_after``, …).
    """
    from . import lab

    require_zfs()
    made: list[str] = []

    def make(nodes: int = 2, backend: str = "zfs", **options: Any) -> dict[str, Any]:
        directory = str(tmp_path_factory.mktemp("lab"))
        made.append(directory)
        options.setdefault("network", TEST_NETWORK)
        return lab.up(directory, nodes=nodes, backend=backend, **options)

    yield make
    for directory in made:
        lab.down(directory)


@pytest.fixture
def make_etcd_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Any]]:
    """
    A factory of real etcd clusters (``flocker.testtools.etcd.EtcdCluster``)
    on free loopback ports, every member killed after the test; it skips the
    test (a failure under ``FLOCKER_REQUIRE_REAL=1``) when etcd is missing.
    """
    from .etcd import EtcdCluster, etcd_available

    problem = etcd_available()
    if problem is not None:
        pytest.skip(problem)
    made: list[EtcdCluster] = []

    def make(members: int = 1) -> EtcdCluster:
        cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), members=members)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture
def etcd_cluster(make_etcd_cluster: Callable[..., Any]) -> Any:
    """A fresh one-member real etcd for one test."""
    return make_etcd_cluster()


@pytest.fixture(scope="session")
def local_registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """
    ``(public, private)``: real Docker registries on loopback ports for the
    session (the private one asks for ``PRIVATE_REGISTRY_CREDENTIALS``); it
    skips the test (a failure under ``FLOCKER_REQUIRE_REAL=1``) when
    ``docker-registry`` is missing.
    """
    from .registry import LocalRegistry, registry_available

    problem = registry_available()
    if problem is not None:
        pytest.skip(problem)
    directory = tmp_path_factory.mktemp("registries")
    public = LocalRegistry(directory / "public")
    try:
        private = LocalRegistry(directory / "private", PRIVATE_REGISTRY_CREDENTIALS)
    except Exception:
        public.stop()
        raise
    yield public, private
    public.stop()
    private.stop()


#: The user name and password of the tests' private registry.
PRIVATE_REGISTRY_CREDENTIALS = ("flocker-test", "pull-secret-4b1d")
