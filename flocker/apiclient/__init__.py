"""
Clients of the Flocker REST API v1: `FlockerClient` (treq over HTTPS with a
user certificate) and `FakeFlockerClient` (in memory), both providing
`IFlockerAPIV1Client` and passing the same contract suite
(`flocker.apiclient.testtools.make_iflockerapiv1client_tests`).
"""

from ._client import DEFAULT_API_PORT, FlockerClient, container_to_json
from ._interface import (
    UNCHANGED,
    BadRequest,
    ConfigurationChanged,
    Container,
    ContainerAlreadyExists,
    ContainerConflict,
    ContainerPort,
    ContainerState,
    Dataset,
    DatasetAlreadyExists,
    DatasetConflict,
    DatasetsConfiguration,
    DatasetState,
    FlockerAPIError,
    IFlockerAPIV1Client,
    Lease,
    LeaseAlreadyHeld,
    Link,
    MountedDataset,
    Node,
    ResponseError,
    RestartPolicy,
    UnknownContainer,
    UnknownDataset,
    UnknownEra,
    UnknownLease,
)
from .memory import FakeFlockerClient

__all__ = [
    "DEFAULT_API_PORT",
    "UNCHANGED",
    "BadRequest",
    "ConfigurationChanged",
    "Container",
    "ContainerAlreadyExists",
    "ContainerConflict",
    "ContainerPort",
    "ContainerState",
    "Dataset",
    "DatasetAlreadyExists",
    "DatasetConflict",
    "DatasetState",
    "DatasetsConfiguration",
    "FakeFlockerClient",
    "FlockerAPIError",
    "FlockerClient",
    "IFlockerAPIV1Client",
    "Lease",
    "LeaseAlreadyHeld",
    "Link",
    "MountedDataset",
    "Node",
    "ResponseError",
    "RestartPolicy",
    "UnknownContainer",
    "UnknownDataset",
    "UnknownEra",
    "UnknownLease",
    "container_to_json",
]
