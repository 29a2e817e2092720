"""Unit tests for ``load_config``: YAML files validated by a JSON schema."""

from pathlib import Path

import pytest

from flocker.common import ConfigurationError, load_config

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["control-service"],
    "properties": {
        "version": {"const": 1},
        "control-service": {
            "type": "object",
            "additionalProperties": False,
            "required": ["hostname"],
            "properties": {
                "hostname": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            },
        },
    },
}


def write(tmp_path: Path, text: str) -> str:
    """Write ``text`` to an agent.yml in ``tmp_path`` and return its path."""
    path = tmp_path / "agent.yml"
    path.write_text(text)
    return str(path)


def test_valid(tmp_path: Path) -> None:
    """A valid file is returned as a dict."""
    path = write(tmp_path, "control-service: {hostname: a, port: 4524}\n")
    assert load_config(path, SCHEMA) == {
        "control-service": {"hostname": "a", "port": 4524}
    }


@pytest.mark.parametrize(
    "text, key, message",
    [
        (
            "control-service: {hostname: a, port: x}",
            "control-service.port",
            "not of type",
        ),
        ("control-service: {hostname: a, port: 0}", "control-service.port", "minimum"),
        (
            "control-service: {hostname: a, colour: red}",
            "control-service.colour",
            "unknown key",
        ),
        (
            "control-service: {port: 1}",
            "control-service.hostname",
            "required key is missing",
        ),
        ("version: 1", "control-service", "required key is missing"),
    ],
)
def test_bad_key_named(tmp_path: Path, text: str, key: str, message: str) -> None:
    """A schema violation names the file, the dotted key and the problem."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path, SCHEMA)
    assert info.value.key == key
    assert str(info.value).startswith(f"{path}: {key}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_not_yaml(tmp_path: Path) -> None:
    """A file that is not YAML is reported with the line of the problem."""
    path = write(tmp_path, "control-service: {hostname: [\n")
    with pytest.raises(ConfigurationError, match=r"not valid YAML at line \d"):
        load_config(path, SCHEMA)


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigurationError naming it."""
    path = str(tmp_path / "nope.yml")
    with pytest.raises(ConfigurationError, match="nope.yml: No such file"):
        load_config(path, SCHEMA)


def test_empty_file(tmp_path: Path) -> None:
    """An empty file is an empty document, checked like any other."""
    with pytest.raises(ConfigurationError, match="required key is missing"):
        load_config(write(tmp_path, ""), SCHEMA)
