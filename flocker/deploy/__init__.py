"""
``flocker-deploy``: a whole cluster's applications, from two files, in one call.

``flocker-deploy deployment.yml application.yml`` reads the applications
(Flocker's ``application.yml`` format, see `flocker.deploy._flockerformat`,
or a docker-compose file, see `flocker.deploy._compose`) and where each
runs (``deployment.yml``), checks everything against itself and against the
cluster, then makes the control service's configuration match through the
REST API: datasets created (named after their application) or reused,
applications added, moved with their data, updated (a new revision, which
the control service rolls back by itself if it turns unhealthy) or
removed.  Running it
again with the same files changes nothing.  See `flocker.deploy.script` for
the command line and its exit status.
"""

from ._model import Application, ConfigurationError, Placement, Volume
from ._plan import (
    AddContainer,
    ClusterConfiguration,
    CreateDataset,
    MoveContainer,
    MoveDataset,
    RemoveContainer,
    ResizeDataset,
    UpdateContainer,
    calculate_changes,
    check_deployment,
    read_cluster,
    resolve_nodes,
)

__all__ = [
    "AddContainer",
    "Application",
    "ClusterConfiguration",
    "ConfigurationError",
    "CreateDataset",
    "MoveContainer",
    "MoveDataset",
    "Placement",
    "RemoveContainer",
    "ResizeDataset",
    "UpdateContainer",
    "Volume",
    "calculate_changes",
    "check_deployment",
    "read_cluster",
    "resolve_nodes",
]
