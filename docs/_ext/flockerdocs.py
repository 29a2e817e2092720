"""
Sphinx directives that write Flocker's reference pages from the code itself.

``.. flocker-rest-api::``
   The REST API reference: every path and method of the OpenAPI document
   that ``GET /v1/openapi.json`` serves (built by
   ``flocker.control._httpschema.openapi_document`` from
   ``flocker/control/schema/*.yml``), with its parameters, request body and
   response codes, then every body schema.  An endpoint added to
   ``endpoints.yml`` appears here at the next build.

``.. flocker-command:: PROG``
   A command's ``--help``, and that of each of its sub-commands, with the
   option ``:entry: MODULE:FUNCTION`` naming its console-script entry point.
   The help is captured in a separate Python process (``command_help.py``),
   so the command never runs.  A command whose module does not exist yet is
   shown as a note saying it is not available in this build.

Both generate reStructuredText and parse it in place, so the generated
sections, tables and cross-references are ordinary Sphinx content.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

HELPER = Path(__file__).with_name("command_help.py")

#: Seconds a command may take to print its help.
HELP_TIMEOUT = 120

#: Section adornments for generated content, outermost first.  None is used
#: by the pages themselves, so generated titles always nest below the
#: section holding the directive.
_LEVELS = ("^", '"', "'")


# --------------------------------------------------------------------------
# Shared


def _title(text: str, level: int) -> list[str]:
    char = _LEVELS[level]
    return [text, char * max(len(text), 4), ""]


def _literal(text: str) -> str:
    """``text`` as an inline literal, with control characters made visible."""
    shown = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    if "``" in shown or shown.startswith(" ") or shown.endswith(" ") or not shown:
        return ":literal:`" + shown.replace("\\", "\\\\").replace("`", "\\`") + "`"
    return f"``{shown}``"


def _parse(directive: SphinxDirective, lines: list[str]) -> list[nodes.Node]:
    """Parse generated reST lines in place of ``directive``."""
    source = f"<{directive.name} in {directive.env.docname}>"
    content = StringList(lines, source=source)
    holder = nodes.section()
    holder.document = directive.state.document
    nested_parse_with_titles(directive.state, content, holder)
    return holder.children


# --------------------------------------------------------------------------
# REST API


def _label(schema: str) -> str:
    return f"rest-schema-{schema}"


def _schema_ref(reference: str) -> str:
    name = reference.rsplit("/", 1)[-1]
    return f":ref:`{name} <{_label(name)}>`"


def _describe_type(schema: dict[str, Any]) -> str:
    """One line of reST saying what values a schema allows."""
    if "$ref" in schema:
        return _schema_ref(schema["$ref"])
    if "const" in schema:
        return "the constant " + _literal(json.dumps(schema["const"]))
    if "enum" in schema:
        return "one of " + ", ".join(_literal(json.dumps(v)) for v in schema["enum"])
    for combiner, word in (("oneOf", "or"), ("anyOf", "or"), ("allOf", "and")):
        if combiner in schema:
            return f" {word} ".join(_describe_type(s) for s in schema[combiner])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        text = "array" if items is None else f"array of {_describe_type(items)}"
    elif kind == "object" and "properties" not in schema:
        values = schema.get("additionalProperties")
        text = (
            f"object mapping strings to {_describe_type(values)}"
            if isinstance(values, dict)
            else "object"
        )
    elif isinstance(kind, list):
        text = " or ".join(kind)
    else:
        text = kind or "any JSON value"
    limits = _limits(schema)
    return f"{text} ({limits})" if limits else text


def _limits(schema: dict[str, Any]) -> str:
    words = []
    for key, say in (
        ("minimum", "at least"),
        ("maximum", "at most"),
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
        ("maxProperties", "at most {} entries"),
    ):
        if key in schema:
            value = schema[key]
            if key in ("minLength", "minItems") and value == 1:
                words.append("non-empty")
            else:
                words.append(say.format(value) if "{}" in say else f"{say} {value}")
    if "pattern" in schema:
        words.append("matching " + _literal(schema["pattern"]))
    if "propertyNames" in schema:
        names = _limits(schema["propertyNames"])
        if names:
            words.append(f"keys {names}")
    return ", ".join(words)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _properties_table(schema: dict[str, Any]) -> list[str]:
    """A list-table of an object schema's properties."""
    properties = schema.get("properties", {})
    if not properties:
        return []
    required = set(schema.get("required", []))
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 20 10 70",
        "",
        "   * - field",
        "     - required",
        "     - value",
    ]
    for name, value in properties.items():
        description = value.get("description")
        text = _describe_type(value)
        if description:
            text = f"{text} — {_one_line(description)}"
        lines += [
            f"   * - {_literal(name)}",
            f"     - {'yes' if name in required else 'no'}",
            f"     - {text}",
        ]
    closed = schema.get("additionalProperties") is False
    lines += [""]
    if closed:
        lines += ["No other field is accepted.", ""]
    return lines


def _schema_lines(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f".. _{_label(name)}:", ""]
    lines += _title(name, 1)
    if "title" in schema:
        lines += [f"*{schema['title']}*", ""]
    if "description" in schema:
        lines += [_one_line(schema["description"]), ""]
    lines += ["Value: " + _describe_type(_without_description(schema)), ""]
    lines += _properties_table(schema)
    for index, option in enumerate(schema.get("oneOf", []), 1):
        if option.get("properties"):
            lines += [f"Form {index}:", ""]
            lines += _properties_table(option)
    return lines


def _without_description(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("description", "title")}


def _operation_lines(
    path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any]
) -> list[str]:
    lines = _title(f"{method.upper()} {path}", 1)
    lines += [operation.get("summary", ""), ""]
    lines += [f"Operation id: {_literal(operation['operationId'])}", ""]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["Parameters:", ""]
        for parameter in parameters:
            where = "path" if parameter["in"] == "path" else parameter["in"]
            text = f"* {_literal(parameter['name'])} ({where}"
            text += ", required)" if parameter.get("required") else ", optional)"
            if "description" in parameter:
                text += " — " + _one_line(parameter["description"])
            lines.append(text)
        lines.append("")
    body = operation.get("requestBody")
    if body is not None:
        schema = body["content"]["application/json"]["schema"]
        lines += [f"Request body (JSON): {_describe_type(schema)}", ""]
        lines += _properties_table(_resolve(schema, schemas))
    lines += ["Responses:", ""]
    for code, response in operation["responses"].items():
        description = _one_line(response["description"]).rstrip(".")
        if description == code and code.isdigit():
            description = _status_phrase(int(code))
        parts = [description]
        content = response.get("content", {}).get("application/json")
        if content is not None:
            parts.append(f"body: {_describe_type(content['schema'])}")
        for header in response.get("headers", {}):
            parts.append(f"header {_literal(header)}")
        lines.append(f"* **{code}** — " + "; ".join(parts) + ".")
    lines.append("")
    return lines


def _status_phrase(code: int) -> str:
    """The standard reason phrase of an HTTP status, or the bare code."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return str(code)


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` to the components' schema it names."""
    seen = 0
    while "$ref" in schema and seen < 16:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        seen += 1
    return schema


def rest_api_lines(document: dict[str, Any]) -> list[str]:
    """The reST of the whole REST API reference for an OpenAPI document."""
    info = document["info"]
    lines = [
        f"Generated from the OpenAPI {document['openapi']} document of "
        f"{info['title']} {info['version']}.",
        "",
    ]
    schemas = document["components"]["schemas"]
    lines += _title("Endpoints", 0)
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            lines += _operation_lines(path, method, operation, schemas)
    lines += _title("Schemas", 0)
    for name, schema in schemas.items():
        lines += _schema_lines(name, schema)
    return lines


def _always_reread(directive: SphinxDirective) -> None:
    """Read this page again at every build: what it shows comes from the code."""
    pages: set[str] = getattr(directive.env, "flocker_generated_pages", set())
    pages.add(directive.env.docname)
    directive.env.flocker_generated_pages = pages  # type: ignore[attr-defined]


class RestAPIDirective(SphinxDirective):
    """``.. flocker-rest-api::`` — the REST API reference, from the code."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        """Build the OpenAPI document the control service serves and render it."""
        from flocker import __version__

        _always_reread(self)
        from flocker.control._httpschema import SCHEMA_DIRECTORY, openapi_document

        for source in sorted(SCHEMA_DIRECTORY.glob("*.yml")):
            self.env.note_dependency(str(source))
        return _parse(self, rest_api_lines(openapi_document(__version__)))


# --------------------------------------------------------------------------
# Commands


def command_helps(prog: str, entry: str) -> dict[str, Any]:
    """
    Run ``command_help.py`` for a command.

    :raise RuntimeError: the helper failed (the module is broken, the entry
        point does not exist or never parses a command line).
    """
    environment = dict(os.environ, COLUMNS="79", PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [sys.executable, str(HELPER), prog, entry],
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT,
        env=environment,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"cannot get the help of {prog} ({entry}): exit status "
            f"{result.returncode}: {result.stderr.strip()[-2000:]}"
        )
    return json.loads(result.stdout)


def command_lines(prog: str, entry: str, helps: dict[str, Any]) -> list[str]:
    """The reST of one command's reference."""
    if not helps["available"]:
        return [
            ".. note::",
            "",
            f"   ``{prog}`` is not available in this build: its module "
            f"``{helps['missing']}`` does not exist yet.",
            "",
        ]
    lines = [f"Entry point: {_literal(entry)}", ""]
    for index, (path, text) in enumerate(helps["helps"]):
        if index:
            lines += _title(" ".join(path), min(len(path) - 2, len(_LEVELS) - 1))
        lines += ["::", ""]
        lines += [f"   {line}" if line else "" for line in text.rstrip().splitlines()]
        lines.append("")
    return lines


class CommandDirective(SphinxDirective):
    """``.. flocker-command:: PROG`` with ``:entry: MODULE:FUNCTION``."""

    required_arguments = 1
    has_content = False
    option_spec = {"entry": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        """Capture the command's help texts and render them."""
        prog = self.arguments[0]
        _always_reread(self)
        entry = self.options.get("entry")
        if not entry or ":" not in entry:
            raise self.error(f"{self.name}: give :entry: MODULE:FUNCTION for {prog}")
        try:
            helps = command_helps(prog, entry)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
            raise self.error(str(error)) from None
        return _parse(self, command_lines(prog, entry, helps))


def _outdated(
    app: Sphinx, env: Any, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    pages: set[str] = getattr(env, "flocker_generated_pages", set())
    return sorted(pages - added - changed - removed)


def _purge(app: Sphinx, env: Any, docname: str) -> None:
    getattr(env, "flocker_generated_pages", set()).discard(docname)


def _merge(app: Sphinx, env: Any, docnames: set[str], other: Any) -> None:
    pages: set[str] = getattr(env, "flocker_generated_pages", set())
    pages |= getattr(other, "flocker_generated_pages", set()) & set(docnames)
    env.flocker_generated_pages = pages


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives."""
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.add_directive("flocker-rest-api", RestAPIDirective)
    app.add_directive("flocker-command", CommandDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
