"""The Docker runtime passes the IContainerRuntime contract on the real engine."""

from __future__ import annotations

from typing import Any

import pytest

from ..testtools import docker_harness, make_icontainerruntime_tests

pytestmark = pytest.mark.functional

_Contract: Any = make_icontainerruntime_tests(docker_harness)


class TestDockerRuntime(_Contract):  # type: ignore[misc]  # made at runtime
    """DockerRuntime against the contract, on the machine's Docker Engine."""
