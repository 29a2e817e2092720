"""
The Docker volume plugin that serves Flocker datasets to ``docker run``.

`VolumePlugin` answers Docker's volume plugin protocol (a Klein application,
``VolumePlugin(...).app.resource()``) over the REST API; ``flocker-docker-plugin``
(`flocker.dockerplugin.script`) serves it on a unix socket.
"""

from ._plugin import (
    CONTENT_TYPE,
    DEFAULT_MOUNT_TIMEOUT,
    METADATA_NAME,
    PluginError,
    VolumePlugin,
    parse_size,
)

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_MOUNT_TIMEOUT",
    "METADATA_NAME",
    "PluginError",
    "VolumePlugin",
    "parse_size",
]
