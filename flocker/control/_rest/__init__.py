"""The REST API v1: Klein route objects over the control service's state.

The API answers at the paths and with the JSON shapes of the original
Flocker v1 API.  Its routes come from ``schema/endpoints.yml`` (each handler
names its operation with `operation`); request bodies are validated against
``schema/types.yml`` before a handler sees them.

The layout, one module per concern:

* `_root` — `ConfigurationAPIUserV1`, the root route object, which mounts
  the others as child resources, and `LoggedAPIResource`, what is served;
* `_routes_configuration`, `_routes_state`, `_routes_datasets`,
  `_routes_environments` — one route object per subtree of ``/v1``, each
  with its own ``Klein()``;
* `_context` — `APIContext`, what the route objects share: the services and
  the write path;
* `_operation` — registering an operation on a Klein app, mounting a child,
  and the one table of errors → statuses;
* `_agents` — snapshot operations asked of a dataset's primary.

Handlers only translate JSON to and from the model: the rules are the
model's (`flocker.control._model`, `flocker.control._cloning`), whose typed
errors (`ModelError` subclasses) carry the user-facing description.

Writes go through `ConfigurationService.change` with a pure function that
checks everything against the configuration *it is given* (so the checks and
the change are atomic) and is durable before the response is sent.
Configuration reads carry ``X-Configuration-Tag``; a write carrying
``X-If-Configuration-Matches`` is refused with 412 unless the configuration
still has that tag.

A move or deletion of a dataset that a node holds a lease on is accepted
(200) and carried out when the lease is released or lapses, as the original
API did (`DeferredChanges`); a request with ``X-Refuse-If-Leased: true`` is
refused with 409 instead.

Errors are ``{"description": ...}`` with a precise 4xx status; anything
unexpected is a 500 naming the eliot task of the request (every request is a
``flocker:control:rest:request`` action, see `LoggedAPIResource`).
"""

from ._context import DEFAULT_FAILOVER_AFTER, APIContext
from ._operation import configuration_tag
from ._root import (
    MAXIMUM_BODY_SIZE,
    REST_REQUEST,
    ConfigurationAPIUserV1,
    LoggedAPIResource,
)

__all__ = [
    "DEFAULT_FAILOVER_AFTER",
    "MAXIMUM_BODY_SIZE",
    "REST_REQUEST",
    "APIContext",
    "ConfigurationAPIUserV1",
    "LoggedAPIResource",
    "configuration_tag",
]
