"""
Container runtimes: the Docker Engine and an in-memory fake.

:class:`IContainerRuntime` runs the containers of one Flocker node, each
described by a :class:`ContainerSpec` value; see ``flocker.runtime._interface``
for the semantics (ownership labels, engine names, desired-versus-actual
comparison, image pulls).  :class:`DockerRuntime` is the real provider,
:class:`MemoryRuntime` the fake; ``flocker.runtime.testtools`` has the
contract suite both pass.
"""

from ._interface import (
    APPLICATION_LABEL,
    CPU_SHARES_RANGE,
    FRESH_CONNECTION,
    MINIMUM_MEMORY_LIMIT,
    NODE_LABEL,
    SWAPPINESS_RANGE,
    ContainerExists,
    ContainerRuntimeError,
    ContainerSpec,
    ContainerState,
    EngineError,
    IContainerRuntime,
    ImageNotFound,
    ImagePullFailed,
    InvalidName,
    PortInUse,
    PublishedPort,
    PullProgress,
    RegistryCredentials,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    RestartPolicy,
    UnknownContainer,
    VolumeBind,
    container_name,
    is_valid_name,
)
from .docker import DockerAdapter, DockerRuntime
from .memory import MemoryEngine, MemoryRuntime, memory_runtimes

__all__ = [
    "APPLICATION_LABEL",
    "CPU_SHARES_RANGE",
    "FRESH_CONNECTION",
    "MINIMUM_MEMORY_LIMIT",
    "NODE_LABEL",
    "SWAPPINESS_RANGE",
    "ContainerExists",
    "ContainerRuntimeError",
    "ContainerSpec",
    "ContainerState",
    "DockerAdapter",
    "DockerRuntime",
    "EngineError",
    "IContainerRuntime",
    "ImageNotFound",
    "ImagePullFailed",
    "InvalidName",
    "MemoryEngine",
    "MemoryRuntime",
    "PortInUse",
    "PublishedPort",
    "PullProgress",
    "RegistryCredentials",
    "RestartAlways",
    "RestartNever",
    "RestartOnFailure",
    "RestartPolicy",
    "UnknownContainer",
    "VolumeBind",
    "container_name",
    "is_valid_name",
    "memory_runtimes",
]
