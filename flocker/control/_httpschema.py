"""The REST API's JSON schemas: loading, validating bodies, the OpenAPI document.

``schema/types.yml`` defines every body (JSON Schema draft 2020-12, under
``$defs``); ``schema/endpoints.yml`` lists the operations (method, path,
request and response definitions).  From these two files alone:

* `validate_body` checks a decoded request body and raises `SchemaError`
  with a message naming the offending field;
* the Klein routes are registered (`klein_path` turns ``{id}`` into ``<id>``);
* `openapi_document` builds the OpenAPI 3.1 document served at
  ``/v1/openapi.json`` (OpenAPI 3.1 schemas *are* JSON Schema 2020-12, so the
  definitions are published as they are, with ``#/$defs/`` references
  rewritten to ``#/components/schemas/``).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from pyrsistent import PClass, field, pmap_field

__all__ = [
    "Operation",
    "SchemaError",
    "definitions",
    "klein_path",
    "openapi_document",
    "operations",
    "validate_body",
]

SCHEMA_DIRECTORY = Path(__file__).parent / "schema"


class SchemaError(ValueError):
    """
    A document does not match its schema; the message names the field.

    :ivar errors: every violation, one message each (the original Flocker
        API's ``errors`` list).
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        """Remember the message and the list of violations."""
        super().__init__(message)
        self.errors = list(errors or [message])


class Operation(PClass):
    """
    One REST operation as ``endpoints.yml`` declares it.

    :ivar name: the operation id (the key in ``endpoints.yml``).
    :ivar method: ``GET``, ``POST`` or ``DELETE``.
    :ivar path: the OpenAPI path template, e.g. ``/v1/state/nodes/by_era/{era}``.
    :ivar summary: one line for the documentation.
    :ivar request: the name of the request body's definition, or ``None``.
    :ivar parameters: each path parameter's definition, by parameter name.
    :ivar headers: optional request headers the operation heeds (besides
        X-If-Configuration-Matches), name → what it does.
    :ivar response_headers: optional headers of its successful answers,
        name → what they say.
    :ivar responses: status code (a string) → definition name (or ``None``).
    :ivar write: it changes the configuration (honours X-If-Configuration-Matches).
    :ivar tagged: it reads the configuration (answers with X-Configuration-Tag).
    """

    name = field(type=str, mandatory=True)
    method = field(type=str, mandatory=True)
    path = field(type=str, mandatory=True)
    summary = field(type=str, mandatory=True)
    request = field(type=(str, type(None)), initial=None)
    parameters = pmap_field(str, str)
    headers = pmap_field(str, str)
    response_headers = pmap_field(str, str)
    responses = pmap_field(str, (str, type(None)))
    write = field(type=bool, initial=False)
    tagged = field(type=bool, initial=False)


def _load(name: str) -> Any:
    return yaml.safe_load((SCHEMA_DIRECTORY / name).read_text(encoding="utf-8"))


@cache
def definitions() -> dict[str, Any]:
    """Every definition in ``types.yml``, by name."""
    return dict(_load("types.yml")["$defs"])


@cache
def operations() -> dict[str, Operation]:
    """Every operation in ``endpoints.yml``, by name."""
    result = {}
    for name, spec in _load("endpoints.yml")["operations"].items():
        result[name] = Operation(
            name=name,
            method=spec["method"],
            path=spec["path"],
            summary=spec["summary"],
            request=spec.get("request"),
            parameters=spec.get("parameters", {}),
            headers=spec.get("headers", {}),
            response_headers=spec.get("response_headers", {}),
            responses={str(k): v for k, v in spec["responses"].items()},
            write=spec.get("write", False),
            tagged=spec.get("tagged", False),
        )
    return result


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 2.0 as an integer: request bodies are decoded so that
    # such numbers already are ints (see flocker.control._httpjson.read_body),
    # and what is left as a float has a fraction.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    r"""
    The ``pattern`` keyword with ECMA-262's ``$``, as JSON Schema defines it.

    Python's ``$`` also matches before a final newline, so ``"abc\n"``
    would match ``^[a-z]+$``; ECMA-262's (without the multiline flag) only
    matches at the end.  Every pattern of the schema that ends with ``$``
    is checked with ``\Z`` instead.
    """
    if not validator.is_type(instance, "string"):
        return
    anchored = pattern
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        anchored = pattern[:-1] + r"\Z"
    if re.search(anchored, instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12, with integers being ints and ECMA-262 ``$`` in patterns.
_Validator = validators.extend(
    Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@cache
def _validator(definition: str) -> Any:
    defs = definitions()
    if definition not in defs:
        raise KeyError(f"no schema definition {definition!r}")
    schema = {"$defs": defs, "$ref": f"#/$defs/{definition}"}
    Draft202012Validator.check_schema(schema)
    return _Validator(schema)


def _where(error: ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return "/".join(parts) if parts else "the request body"


def _describe(error: ValidationError) -> str:
    """A sentence naming the field and what is wrong with it."""
    # A oneOf/anyOf failure is clearer told through its closest sub-error.
    if error.context:
        deepest = best_match(error.context)
        if deepest is not None and len(deepest.absolute_path) >= len(
            error.absolute_path
        ):
            error = deepest
    where = _where(error)
    if error.validator == "additionalProperties":
        extra = (
            sorted(set(error.instance) - set(error.schema.get("properties", {})))
            if isinstance(error.instance, dict)
            else []
        )
        if extra:
            fields = ", ".join(
                ("/".join([*map(str, error.absolute_path), e])) for e in extra
            )
            return f"unknown field(s): {fields}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        if missing:
            prefix = "/".join(map(str, error.absolute_path))
            name = f"{prefix}/{missing}" if prefix else missing
            return f"missing required field: {name}"
    if error.validator == "uniqueItems":
        return f"{where}: an item is listed more than once"
    if error.validator == "maxItems" and isinstance(error.instance, list):
        return (
            f"{where}: {len(error.instance)} items listed, at most "
            f"{error.validator_value} allowed"
        )
    if error.validator == "pattern" and error.schema.get("$ref") is None:
        return f"{where}: {error.instance!r} is not in the expected format"
    return f"{where}: {error.message}"


def validate_body(definition: str, document: Any) -> None:
    """
    Check ``document`` against the named definition.

    :raise SchemaError: it does not match; the message names the field.
    """
    errors = list(_validator(definition).iter_errors(document))
    error = best_match(errors)
    if error is not None:
        raise SchemaError(_describe(error), [_describe(e) for e in errors])


def is_valid(definition: str, document: Any) -> bool:
    """Whether ``document`` matches the named definition (for tests of responses)."""
    valid: bool = _validator(definition).is_valid(document)
    return valid


def klein_path(path: str) -> str:
    """Turn an OpenAPI path template (``{id}``) into a Klein route (``<id>``)."""
    return re.sub(r"\{([a-z_]+)\}", r"<\1>", path)


def _rewrite_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _rewrite_refs(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(v) for v in value]
    return value


_TAG_HEADER = {
    "description": "Identifies this configuration (its generation and a "
    "digest of its content); send it back in X-If-Configuration-Matches to "
    "write only if nothing changed since.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+-[0-9a-f]{20}$"},
}


#: The answers every operation may give, whatever it is: a client
#: certificate the API does not serve (`flocker.control._httpaccess`), and a
#: body larger than the limit (checked before routing, so for every method).
_COMMON_RESPONSES = {
    "403": "The client certificate is not a user certificate of this cluster.",
    "413": "The request body is larger than the control service accepts.",
}

_ERROR_CONTENT = {
    "application/json": {"schema": {"$ref": "#/components/schemas/error"}}
}

#: Every write's precondition header.
_MATCHES_HEADER = {
    "name": "X-If-Configuration-Matches",
    "in": "header",
    "required": False,
    "description": "Refuse the change (412) unless the configuration still has "
    "this X-Configuration-Tag (any other value, well-formed or not, gets 412).",
    "schema": {"type": "string"},
}


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    """The path parameters, each with the schema ``endpoints.yml`` names."""
    names = re.findall(r"\{([a-z_]+)\}", op.path)
    if set(names) != set(op.parameters):
        raise ValueError(
            f"operation {op.name}: path parameters {sorted(names)} but schemas "
            f"for {sorted(op.parameters)}"
        )
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"$ref": f"#/components/schemas/{op.parameters[name]}"},
        }
        for name in names
    ]


def _operation_document(op: Operation) -> dict[str, Any]:
    document: dict[str, Any] = {"operationId": op.name, "summary": op.summary}
    parameters = _path_parameters(op)
    if op.write:
        parameters.append(_MATCHES_HEADER)
    parameters.extend(
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": description,
            "schema": {"type": "string"},
        }
        for name, description in sorted(op.headers.items())
    )
    if parameters:
        document["parameters"] = parameters
    if op.request is not None:
        document["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{op.request}"}
                }
            },
        }
    responses: dict[str, Any] = {}
    for code, definition in sorted(op.responses.items()):
        response: dict[str, Any] = {"description": _REASONS.get(code, code)}
        if definition is not None:
            response["content"] = {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{definition}"}
                }
            }
        if code.startswith("2"):
            headers: dict[str, Any] = {
                name: {"description": description, "schema": {"type": "string"}}
                for name, description in sorted(op.response_headers.items())
            }
            if op.tagged or op.write:
                headers["X-Configuration-Tag"] = _TAG_HEADER
            if headers:
                response["headers"] = headers
        responses[code] = response
    if op.write:
        responses["412"] = {
            "description": "The configuration changed since the given tag.",
            "content": _ERROR_CONTENT,
        }
    for code, description in _COMMON_RESPONSES.items():
        responses.setdefault(
            code, {"description": description, "content": _ERROR_CONTENT}
        )
    document["responses"] = dict(sorted(responses.items()))
    return document


_REASONS = {
    "200": "OK",
    "201": "Created",
    "202": "Accepted: the nodes carry it out.",
    "400": "The request is malformed or makes no sense.",
    "404": "No such thing.",
    "409": "The request conflicts with the configuration.",
    "503": "A node's agent that must do this is not connected.",
}


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing the REST API v1."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations().values():
        paths.setdefault(op.path, {})[op.method.lower()] = _operation_document(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flocker REST API",
            "version": version,
            "description": "The Flocker control service's REST API, version 1. "
            "Every request needs a client certificate from the cluster's CA. "
            "Errors are JSON objects with a description.",
        },
        "paths": paths,
        "components": {
            "schemas": _rewrite_refs(definitions()),
        },
    }
