"""
The documentation in ``docs/`` builds with Sphinx, warnings being errors,
and says what the code does: the REST API reference names every path and
operation of the OpenAPI document the control service serves, the
command-line reference shows every console script, and every command,
option and file that the installation guide's examples use exists.
"""

from __future__ import annotations

import html
import importlib.metadata
import importlib.util
import pickle
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flocker import __version__
from flocker.control._httpschema import openapi_document
from flocker.node._agentconfig import AGENT_SCHEMA, load_agent_config

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent

#: A Flocker command named in a code block (not a file such as
#: ``flocker-control.service`` or ``flocker-env-<name>``).
COMMAND = re.compile(r"(?<![\w/.-])(flocker(?:-[a-z]+)+)(?![\w.<-])")
#: A script of the repository's ``admin/`` directory.
ADMIN = re.compile(r"(?<![\w/.-])(admin/[\w.-]+)")


def _require_sphinx() -> None:
    if importlib.util.find_spec("sphinx") is None:
        pytest.fail(
            "Sphinx is not installed: install the development extras "
            "(pip install -e '.[dev]') to build and test the documentation"
        )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation built as HTML with ``sphinx -W`` into a new directory."""
    _require_sphinx()
    output = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, (
        f"sphinx -W failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return output


def _doctree(built: Path, name: str) -> Any:
    with (built / ".doctrees" / f"{name}.doctree").open("rb") as f:
        return pickle.load(f)  # noqa: S301 - our own build's output


def _literal_blocks(built: Path, name: str) -> Iterator[tuple[str, str]]:
    """(caption or "", text) of every code block of a page."""
    from docutils import nodes

    for block in _doctree(built, name).findall(nodes.literal_block):
        caption = ""
        parent = block.parent
        if isinstance(parent, nodes.container):
            captions = [c for c in parent.children if isinstance(c, nodes.caption)]
            caption = captions[0].astext() if captions else ""
        yield caption, block.astext()


def _lines(text: str) -> Iterator[str]:
    """The lines of a shell snippet, with backslash continuations joined."""
    yield from text.replace("\\\n", " ").splitlines()


def _help(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_sphinx_is_installed() -> None:
    """Sphinx, a development extra, is importable (the other tests need it)."""
    _require_sphinx()


#: Every page, as the table of contents in ``index.rst`` lists them.
PAGES = (
    "index",
    "concepts",
    "tutorial-staging",
    "tutorial-replicas",
    "tutorial-failure",
    "tutorial-upgrade",
    "running",
    "installing",
    "api",
    "cli",
    "flocker1-differences",
    "development",
)


def test_every_page_is_built(built: Path) -> None:
    """Every page of the table of contents is built into HTML."""
    for page in PAGES:
        assert (built / f"{page}.html").is_file(), page


def test_every_page_is_listed() -> None:
    """
    `PAGES` names every ``.rst`` file of ``docs/``, and the table of
    contents lists every page but the index (a new page cannot be left out
    of either).
    """
    assert {p.stem for p in DOCS.glob("*.rst")} == set(PAGES)
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    listed = re.findall(r"^   ([\w-]+)$", index, flags=re.MULTILINE)
    assert sorted(listed) == sorted(set(PAGES) - {"index"})


def test_lab_commands_in_the_pages_exist(built: Path) -> None:
    """
    Every ``admin/lab`` command line in a page's code blocks is one that
    ``admin/lab`` accepts (its sub-command and options exist).
    """
    from flocker.testtools.lab import build_parser

    parser = build_parser()
    seen = []
    for page in PAGES:
        for _, text in _literal_blocks(built, page):
            for line in _lines(text):
                if not line.lstrip().startswith("admin/lab "):
                    continue
                words = shlex.split(line, comments=True)
                seen.append(words)
                try:
                    parser.parse_args(words[1:])
                except SystemExit:
                    raise AssertionError(
                        f"{page}: admin/lab rejects {line!r}"
                    ) from None
    assert any(w[1] == "stop-node" for w in seen)


def test_rest_reference_names_every_path(built: Path) -> None:
    """The REST API page names every path, operation and schema of /v1/openapi.json."""
    page = html.unescape((built / "api.html").read_text(encoding="utf-8"))
    text = re.sub(r"<[^>]+>", "", page)
    document = openapi_document(__version__)
    assert document["paths"]
    for path, methods in document["paths"].items():
        assert path in text, path
        for method in methods:
            assert f"{method.upper()} {path}" in text, (method, path)
    for name in document["components"]["schemas"]:
        assert f'id="rest-schema-{name.replace("_", "-")}"' in page, name


def test_cli_reference_shows_every_console_script(built: Path) -> None:
    """Every console script has its ``--help`` (or a not-available note) on the CLI page."""
    scripts = {
        e.name: e.value
        for e in importlib.metadata.distribution("flocker").entry_points
        if e.group == "console_scripts"
    }
    assert scripts
    source = (DOCS / "cli.rst").read_text(encoding="utf-8")
    text = html.unescape(
        re.sub(r"<[^>]+>", "", (built / "cli.html").read_text("utf-8"))
    )
    for name, entry in scripts.items():
        assert f".. flocker-command:: {name}\n   :entry: {entry}\n" in source, name
        module = entry.partition(":")[0]
        if importlib.util.find_spec(module) is None:
            assert f"{name} is not available in this build" in text, name
        else:
            assert f"usage: {name}" in text, name


def test_installing_commands_and_options_exist(built: Path) -> None:
    """
    Each ``flocker-…`` command and ``admin/…`` script in the installation
    guide's code blocks exists, and each option given to a Flocker command
    appears in that command's (or sub-command's) ``--help``.
    """
    commands: set[str] = set()
    scripts: set[str] = set()
    invocations: list[list[str]] = []
    for _, text in _literal_blocks(built, "installing"):
        commands.update(COMMAND.findall(text))
        scripts.update(ADMIN.findall(text))
        for line in _lines(text):
            words = shlex.split(line, comments=True) if line.strip() else []
            if words and re.fullmatch(r"flocker(-[a-z]+)*", words[0]):
                invocations.append(words)
    assert {"flocker-ca", "flocker-control"} <= commands
    assert scripts
    for command in sorted(commands):
        assert (BIN / command).is_file(), f"no command {command} in {BIN}"
    for script in sorted(scripts):
        assert (ROOT / script).exists(), f"no {script} in the repository"
    assert invocations
    for words in invocations:
        helps = [_help(words[:1])]
        assert helps[0].returncode == 0, (words, helps[0].stderr)
        path = words[:1]
        for word in words[1:]:
            if word.startswith("-"):
                continue
            candidate = _help([*path, word])
            if candidate.returncode == 0 and candidate.stdout != helps[-1].stdout:
                path.append(word)
                helps.append(candidate)
        known = "\n".join(h.stdout for h in helps)
        for word in words[1:]:
            if word.startswith("--"):
                option = word.split("=", 1)[0]
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", known), (
                    f"{' '.join(path)} has no option {option}"
                )


def _keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, value in schema.get("properties", {}).items():
        keys.add(prefix + name)
        keys |= _keys(value, f"{prefix}{name}.")
    return keys


def test_agent_yml_example_is_complete_and_valid(built: Path, tmp_path: Path) -> None:
    """The guide's ``agent.yml`` loads without error and shows every key there is."""
    examples = [
        text
        for caption, text in _literal_blocks(built, "installing")
        if caption == "/etc/flocker/agent.yml"
    ]
    assert len(examples) == 1
    path = tmp_path / "agent.yml"
    path.write_text(examples[0], encoding="utf-8")
    config = load_agent_config(str(path))
    assert config.backend == "zfs"
    document = yaml.safe_load(examples[0])
    shown = _keys({"properties": {k: _shape(v) for k, v in document.items()}})
    # root is for other backends; hosts replaces hostname for several control
    # instances (the highly available control plane's section shows it).
    expected = _keys(AGENT_SCHEMA) - {"dataset.root", "control-service.hosts"}
    # registries is keyed by registry names, each with a user name and password.
    registries = {k for k in shown if k.startswith("registries.")}
    assert shown - registries == expected
    assert all(set(entry) == {"username", "password"} for entry in document["registries"].values())
    assert config.registries


def _shape(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"properties": {k: _shape(v) for k, v in value.items()}}
    return {}
