"""Loading YAML configuration files (``agent.yml``…) validated by a JSON schema.

A bad file never reaches a daemon's wiring: :func:`load_config` raises
:class:`ConfigurationError` whose one-line message names the file, the
offending key as a dotted path and what is wrong with it.
"""

from __future__ import annotations

from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match


class ConfigurationError(Exception):
    """A configuration file is missing, unreadable, not YAML, or invalid.

    :ivar path: The file.
    :ivar key: The dotted path of the offending key, or ``None`` when the
        problem is the whole file.
    """

    def __init__(self, path: str, message: str, key: str | None = None) -> None:
        """Record where the problem is and what it is."""
        self.path = path
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        """``<path>: <key>: <message>`` on one line."""
        where = f"{self.path}: {self.key}" if self.key else self.path
        return f"{where}: {self.message}"


def key_path(error: ValidationError) -> str | None:
    """The dotted path of the key a validation error is about."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        # The unknown key is named only in the message; point at it.
        extra = set(error.instance) - set(error.schema.get("properties", {}))
        path.append(sorted(extra)[0] if extra else "?")
    elif error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        path.append(missing[0] if missing else "?")
    return ".".join(str(part) for part in path) or None


def describe_error(error: ValidationError) -> tuple[str | None, str]:
    """A key path and a short message for one schema validation error."""
    key = key_path(error)
    if error.validator == "additionalProperties":
        return key, "unknown key"
    if error.validator == "required":
        return key, "required key is missing"
    return key, error.message


def validate(document: Any, schema: dict[str, Any], path: str) -> None:
    """
    Check ``document`` against ``schema``.

    :raise ConfigurationError: naming the most relevant bad key.
    """
    validator = Draft202012Validator(schema)
    error = best_match(validator.iter_errors(document))
    if error is not None:
        key, message = describe_error(error)
        raise ConfigurationError(path, message, key)


def load_config(path: str, schema: dict[str, Any]) -> dict[str, Any]:
    """
    Read the YAML file at ``path`` and validate it against ``schema``.

    :return: The parsed document (a dict).
    :raise ConfigurationError: if the file cannot be read, is not YAML,
        or does not match the schema.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            document: dict[str, Any] | None = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigurationError(path, error.strerror or str(error)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(path, f"not valid YAML{where}") from None
    if document is None:
        document = {}
    validate(document, schema, path)
    return document
