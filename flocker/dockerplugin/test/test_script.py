"""
Tests of ``flocker-docker-plugin``'s command line, socket handling and process.

The option checks and socket preparation are unit tests on files in a
temporary directory; one functional test runs the plugin as a real process
and talks to its unix socket.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from flocker.ca import (
    create_api_certificate,
    create_node_certificate,
    initialize,
    load_authority,
)
from flocker.dockerplugin import CONTENT_TYPE
from flocker.dockerplugin.script import (
    StartupError,
    check_options,
    main,
    prepare_socket,
)

NODE = UUID("aaaaaaaa-0000-4000-8000-00000000000a")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with cluster.crt, plugin.crt/.key and node.crt/.key."""
    directory = tmp_path_factory.mktemp("certificates")
    initialize(directory, "plugin-tests")
    authority = load_authority(directory, with_key=True)
    create_api_certificate(authority, "plugin", directory)
    create_api_certificate(authority, "alice", directory)
    create_node_certificate(authority, directory, NODE)
    for suffix in ("crt", "key"):
        os.rename(directory / f"{NODE}.{suffix}", directory / f"node.{suffix}")
    return directory


def _options(certificates: Path, *extra: str) -> list[str]:
    return [
        "--control-host",
        "10.0.0.1",
        "--certificates-directory",
        str(certificates),
        *extra,
    ]


def _refused(argv: list[str]) -> str:
    """The one-line reason ``check_options`` refuses ``argv``."""
    with pytest.raises(StartupError) as caught:
        check_options(argv)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults(certificates: Path) -> None:
    """Defaults: port 4523, user plugin, node from node.crt, /run/docker/plugins/flocker.sock."""
    options = check_options(_options(certificates))
    assert (
        options.control,
        options.user,
        options.node_uuid,
        options.socket_path,
        options.mount_timeout,
        options.log_dir,
    ) == (
        (("10.0.0.1", 4523),),
        "plugin",
        NODE,
        "/run/docker/plugins/flocker.sock",
        100.0,
        None,
    )


def test_everything_given(certificates: Path, tmp_path: Path) -> None:
    """Every option is honoured."""
    other = uuid4()
    options = check_options(
        _options(
            certificates,
            "--control-port", "4600",
            "--user", "alice",
            "--node-uuid", str(other),
            "--plugin-name", "flocker-n2",
            "--socket-directory", str(tmp_path),
            "--log-dir", str(tmp_path / "logs"),
            "--mount-timeout", "30",
        )
    )  # fmt: skip
    assert (
        options.control,
        options.user,
        options.node_uuid,
        options.socket_path,
        options.log_dir,
        options.mount_timeout,
    ) == ((("10.0.0.1", 4600),), "alice", other, f"{tmp_path}/flocker-n2.sock", f"{tmp_path}/logs", 30.0)


def test_several_control_hosts(certificates: Path) -> None:
    """
    --control-host repeats, once per control service instance, as HOST or
    HOST:PORT; --control-port is the port of those given without one.
    """
    options = check_options(
        _options(
            certificates,
            "--control-host", "10.0.0.2:4700",
            "--control-host", "[fd00::3]:4800",
            "--control-port", "4600",
        )
    )  # fmt: skip
    assert options.control == (
        ("10.0.0.1", 4600),
        ("10.0.0.2", 4700),
        ("fd00::3", 4800),
    )


@pytest.mark.parametrize("host", ["10.0.0.2:0", "10.0.0.2:http", ":4523"])
def test_bad_control_host(certificates: Path, host: str) -> None:
    """A --control-host that is not HOST[:PORT] is refused, naming it."""
    message = _refused(_options(certificates, "--control-host", host))
    assert message.startswith("--control-host: ") and host in message


def test_bad_node_uuid(certificates: Path) -> None:
    """A --node-uuid that is not a UUID is refused."""
    assert _refused(_options(certificates, "--node-uuid", "node1")) == (
        "--node-uuid: 'node1' is not a UUID"
    )


def test_no_node_certificate(certificates: Path, tmp_path: Path) -> None:
    """Without --node-uuid, a directory with no node.crt is refused."""
    for name in ("cluster.crt", "plugin.crt", "plugin.key"):
        shutil.copy(certificates / name, tmp_path)
    assert _refused(_options(tmp_path)).startswith(
        "no --node-uuid given and cannot read node.crt"
    )
    assert check_options(_options(tmp_path, "--node-uuid", str(NODE))).node_uuid == NODE


def test_not_a_node_certificate(certificates: Path, tmp_path: Path) -> None:
    """A node.crt that is a user's certificate is refused."""
    for name in ("cluster.crt", "plugin.crt", "plugin.key"):
        shutil.copy(certificates / name, tmp_path)
    shutil.copy(certificates / "alice.crt", tmp_path / "node.crt")
    shutil.copy(certificates / "alice.key", tmp_path / "node.key")
    assert "is not a node certificate" in _refused(_options(tmp_path))


def test_missing_user_certificate(certificates: Path) -> None:
    """A user with no certificate in the directory is refused, naming the file."""
    message = _refused(_options(certificates, "--user", "bob"))
    assert message.startswith("cannot use the certificates")
    assert "bob" in message


def test_bad_values(certificates: Path, tmp_path: Path) -> None:
    """Bad ports, time-outs, plugin names and too-long socket paths are refused."""
    assert "is not a port" in _refused(_options(certificates, "--control-port", "0"))
    assert "is not a port" in _refused(
        _options(certificates, "--control-port", "70000")
    )
    assert _refused(_options(certificates, "--mount-timeout", "0")) == (
        "--mount-timeout must be positive"
    )
    assert "is not a plugin name" in _refused(
        _options(certificates, "--plugin-name", "a/b")
    )
    assert "is not a plugin name" in _refused(
        _options(certificates, "--plugin-name", "")
    )
    assert "is too long" in _refused(
        _options(certificates, "--socket-directory", str(tmp_path / ("x" * 100)))
    )


def test_unknown_option_is_one_line(
    certificates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown option exits with status 2 and one line naming it."""
    with pytest.raises(SystemExit) as caught:
        check_options(_options(certificates, "--colour", "red"))
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("flocker-docker-plugin: unrecognized arguments: --colour")


def test_main_refuses_in_one_line(certificates: Path) -> None:
    """``main`` exits with a one-line message for unusable options."""
    with pytest.raises(SystemExit) as caught:
        main(_options(certificates, "--user", "bob"))
    assert str(caught.value).startswith(
        "flocker-docker-plugin: cannot use the certificates"
    )


def test_prepare_socket_makes_directory(tmp_path: Path) -> None:
    """The socket's directory is made."""
    prepare_socket(str(tmp_path / "plugins" / "p.sock"))
    assert (tmp_path / "plugins").is_dir()


def test_prepare_socket_removes_stale(tmp_path: Path) -> None:
    """A socket file nobody listens on (left by a crash) is removed."""
    path = str(tmp_path / "p.sock")
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(path)
    prepare_socket(path)
    assert not os.path.exists(path)


def test_prepare_socket_refuses_live(tmp_path: Path) -> None:
    """A socket another process listens on is left alone and refused."""
    path = str(tmp_path / "p.sock")
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen(1)
        with pytest.raises(StartupError, match="another plugin already listens"):
            prepare_socket(path)
    assert os.path.exists(path)


def post(path: str, url: str, body: bytes) -> tuple[str, dict[str, str], bytes]:
    """POST ``body`` over a unix socket; status line, headers, body."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(30)
        connection.connect(path)
        connection.sendall(
            f"POST {url} HTTP/1.0\r\nHost: plugin\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n\r\n".encode()
            + body
        )
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return status, headers, content


@pytest.mark.functional
def test_process_serves_socket(certificates: Path, tmp_path: Path) -> None:
    """
    The script listens on its socket, answers Docker's requests (an
    unreachable control service is a readable Err), and removes the socket
    when stopped with SIGTERM.
    """
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        process = subprocess.Popen(
            [
                sys.executable, "-m", "flocker.dockerplugin.script",
                "--control-host", f"127.0.0.1:{port}",
                "--certificates-directory", str(certificates),
                "--socket-directory", str(tmp_path),
                "--plugin-name", "test",
                "--log-dir", str(tmp_path / "logs"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        path = str(tmp_path / "test.sock")
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(path):
                assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the plugin never listened"
                time.sleep(0.05)
            status, headers, content = post(path, "/Plugin.Activate", b"")
            assert status.split()[1] == "200"
            assert headers["content-type"] == CONTENT_TYPE.decode()
            assert json.loads(content) == {"Implements": ["VolumeDriver"]}
            status, _, content = post(path, "/VolumeDriver.List", b"{}")
            assert status.split()[1] == "200"
            assert (
                "cannot reach the Flocker control service" in json.loads(content)["Err"]
            )
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
    assert not os.path.exists(path)
    log = (tmp_path / "logs" / "flocker-docker-plugin.log").read_text()
    assert "flocker:dockerplugin:list" in log
