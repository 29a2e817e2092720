"""
Tests for the ``flocker-deploy`` command line (`flocker.deploy.script`):
reading the files, finding the control service, and the exit status and
one-line message for every failure before the cluster is contacted.
"""

import json
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from flocker.ca import create_api_certificate, initialize, load_authority
from flocker.deploy import ConfigurationError
from flocker.deploy.script import (
    EXIT_BAD_INPUT,
    EXIT_USAGE,
    _client,
    _connection,
    _parser,
    _tls,
    main,
    read_files,
)

APPLICATION = """
version: 1
applications:
  web: {image: nginx, ports: [{internal: 80, external: 8080}]}
"""
DEPLOYMENT = "version: 1\nnodes: {10.0.0.1: [web]}\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    """A valid application and deployment file; their paths."""
    application = tmp_path / "application.yml"
    deployment = tmp_path / "deployment.yml"
    application.write_text(APPLICATION)
    deployment.write_text(DEPLOYMENT)
    return str(deployment), str(application)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A cluster CA and a user certificate; their directory."""
    directory = tmp_path / "ca"
    directory.mkdir()
    initialize(directory, "test")
    authority = load_authority(directory, with_key=True)
    create_api_certificate(authority, "user", directory)
    return directory


def exit_of(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[str | int | None, str]:
    """Run ``main(argv)`` expecting it to exit before contacting the cluster: (status, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


def test_files_read(files: tuple[str, str]) -> None:
    """Both files are read, parsed and checked."""
    read = read_files(*files)
    assert list(read.applications) == ["web"]
    assert dict(read.placement.nodes) == {"web": "10.0.0.1"}


def test_compose_file_read(files: tuple[str, str], tmp_path: Path) -> None:
    """An application file without ``applications`` is read as a compose file."""
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  web: {image: nginx, ports: ['8080:80']}\n")
    assert read_files(files[0], str(compose)).applications["web"].image == "nginx"


def test_missing_file(files: tuple[str, str], tmp_path: Path) -> None:
    """A missing file is named with the reason."""
    with pytest.raises(ConfigurationError) as info:
        read_files(files[0], str(tmp_path / "nope.yml"))
    assert str(info.value) == f"{tmp_path / 'nope.yml'}: cannot read: No such file or directory"


def test_binary_file(files: tuple[str, str], tmp_path: Path) -> None:
    """A file that is not UTF-8 text is refused."""
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigurationError) as info:
        read_files(str(binary), files[1])
    assert str(info.value) == f"{binary}: cannot read: not UTF-8 text"


def test_bad_yaml(files: tuple[str, str], tmp_path: Path) -> None:
    """A YAML syntax error is named with its position."""
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 1\nnodes: {a: [web\n")
    with pytest.raises(ConfigurationError) as info:
        read_files(str(bad), files[1])
    assert str(info.value).startswith(f"{bad}: not valid YAML: ")


def test_bad_file_exits_1_on_one_line(files: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad file exits with status 1 and one line on stderr naming the key."""
    application = tmp_path / "application.yml"
    application.write_text(APPLICATION.replace("ports:", "portz:"))
    status, err = exit_of(
        [*files, "--control-service", "h", "--cacert", "a", "--cert", "b", "--key", "c"],
        capsys,
    )
    assert status == EXIT_BAD_INPUT
    assert err == (
        f"flocker-deploy: {application}: applications.web.portz: unknown key "
        "(nothing changed)\n"
    )


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        (
            "application.yml",
            APPLICATION.replace(
                "}]}", "}], volume: {mountpoint: /data}, replicas: 3}"
            ),
            "applications.web.replicas: 3 instances of 'web', which has a volume: "
            "an application with volumes runs once",
        ),
        (
            "docker-compose.yml",
            "services:\n  web: {image: nginx, scale: 65}\n",
            "services.web.scale: 65 is not between 1 and 64",
        ),
    ],
)
def test_bad_replicas_exit_1_on_one_line(
    files: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    says: str,
) -> None:
    """
    Several instances of an application with a volume, or too many
    instances, exit with status 1 and one line naming the application,
    before the cluster is contacted.
    """
    application = tmp_path / name
    application.write_text(text)
    status, err = exit_of(
        [files[0], str(application), "--control-service", "h", "--cacert", "a",
         "--cert", "b", "--key", "c"],
        capsys,
    )  # fmt: skip
    assert status == EXIT_BAD_INPUT
    assert err.startswith(f"flocker-deploy: {application}: {says}")
    assert err.endswith(" (nothing changed)\n") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        (
            "application.yml",
            APPLICATION.replace("}]}", "}], health: {http: {port: 8080, path: /}}}"),
            "applications.web.health.http.port: port 8080 is not one the application "
            "publishes (its internal ports: 80)",
        ),
        (
            "docker-compose.yml",
            "services:\n  web:\n    image: nginx\n    ports: ['8080:80']\n"
            "    healthcheck: {test: [CMD, pg_isready]}\n",
            "services.web.healthcheck.test: ['CMD', 'pg_isready'] does not map to a "
            'Flocker health check; these map: ["CMD", "curl", "-f", '
            '"http://localhost:PORT/PATH"]',
        ),
    ],
)
def test_bad_health_check_exits_1_on_one_line(
    files: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    says: str,
) -> None:
    """
    A health check on an unpublished port, or a compose test that does not
    map, exits with status 1 and one line naming the application.
    """
    application = tmp_path / name
    application.write_text(text)
    status, err = exit_of(
        [files[0], str(application), "--control-service", "h", "--cacert", "a",
         "--cert", "b", "--key", "c"],
        capsys,
    )  # fmt: skip
    assert status == EXIT_BAD_INPUT
    assert err.startswith(f"flocker-deploy: {application}: {says}")
    assert err.endswith(" (nothing changed)\n") and err.count("\n") == 1


def test_no_control_service_is_a_usage_error(files: tuple[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --cluster, FLOCKER_CLUSTER or --control-service the command exits 2."""
    monkeypatch.delenv("FLOCKER_CLUSTER", raising=False)
    status, err = exit_of(list(files), capsys)
    assert status == EXIT_USAGE
    assert err.splitlines()[-1] == (
        "flocker-deploy: missing --control-service, --cacert, --cert, --key "
        "(or --cluster FILE, or FLOCKER_CLUSTER)"
    )


def test_missing_argument_is_a_usage_error(files: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file argument exits 2."""
    status, _ = exit_of([files[0]], capsys)
    assert status == EXIT_USAGE


def test_bad_port_is_a_usage_error(files: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A port out of range exits 2."""
    status, err = exit_of(
        [*files, "--control-service", "h", "--port", "0", "--cacert", "a",
         "--cert", "b", "--key", "c"],
        capsys,
    )
    assert status == EXIT_USAGE
    assert err.splitlines()[-1] == "flocker-deploy: --port 0 is not a TCP port"


def cluster_file(tmp_path: Path, certificates: Path) -> Path:
    """A cluster.json as the local cluster writes it, with relative paths."""
    path = tmp_path / "cluster.json"
    path.write_text(
        json.dumps(
            {
                "control": {"api_url": "https://127.0.0.1:4600"},
                "certificates": {
                    "ca": "ca/cluster.crt",
                    "user_cert": "ca/user.crt",
                    "user_key": "ca/user.key",
                },
            }
        )
    )
    return path


def test_cluster_file(tmp_path: Path, certificates: Path, files: tuple[str, str]) -> None:
    """A cluster file gives the API's address and the certificates, relative to the file."""
    path = cluster_file(tmp_path, certificates)
    connection = _connection(_parser().parse_args([*files, "--cluster", str(path)]))
    assert (connection.host, connection.port) == ("127.0.0.1", 4600)
    assert connection.cacert == str(certificates / "cluster.crt")
    assert connection.key == str(certificates / "user.key")
    _tls(connection)  # the files load


def test_environment_names_the_cluster_file(tmp_path: Path, certificates: Path, files: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """FLOCKER_CLUSTER names the cluster file; options override it."""
    monkeypatch.setenv("FLOCKER_CLUSTER", str(cluster_file(tmp_path, certificates)))
    connection = _connection(_parser().parse_args([*files, "--port", "4700"]))
    assert (connection.host, connection.port) == ("127.0.0.1", 4700)


def test_cluster_file_lists_instances(tmp_path: Path, certificates: Path, files: tuple[str, str]) -> None:
    """
    A cluster file's control.api_urls gives every control service instance;
    --port (or --control-service) keeps only the one it names.
    """
    path = cluster_file(tmp_path, certificates)
    document = json.loads(path.read_text())
    document["control"] = {
        "api_urls": ["https://127.0.0.1:4600", "https://[fd00::2]:4601"]
    }
    path.write_text(json.dumps(document))
    connection = _connection(_parser().parse_args([*files, "--cluster", str(path)]))
    assert (connection.host, connection.port, connection.others) == (
        "127.0.0.1",
        4600,
        (("fd00::2", 4601),),
    )
    client = _client(MemoryReactorClock(), connection, _tls(connection))
    assert client.base_urls == ("https://127.0.0.1:4600", "https://[fd00::2]:4601")
    alone = _connection(
        _parser().parse_args([*files, "--cluster", str(path), "--port", "4700"])
    )
    assert (alone.host, alone.port, alone.others) == ("127.0.0.1", 4700, ())


def test_not_a_cluster_file(tmp_path: Path, files: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A cluster file without the API's address exits 1, naming it."""
    path = tmp_path / "cluster.json"
    path.write_text('{"control": {}}')
    status, err = exit_of([*files, "--cluster", str(path)], capsys)
    assert status == EXIT_BAD_INPUT
    assert err.startswith(f"flocker-deploy: {path}: not a cluster file: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "option, replacement, message",
    [
        ("--cacert", "user.key", "not a PEM certificate"),
        ("--cert", "cluster.key", "not a PEM certificate"),
        ("--key", "user.crt", "not an unencrypted PEM private key"),
        ("--key", "cluster.key", "not the key of"),
        ("--cacert", "missing.crt", "cannot read: No such file or directory"),
    ],
)
def test_bad_certificate_files(files: tuple[str, str], certificates: Path, capsys: pytest.CaptureFixture[str], option: str, replacement: str, message: str) -> None:
    """Unusable certificate files exit 1, naming the file."""
    options = {
        "--cacert": "cluster.crt",
        "--cert": "user.crt",
        "--key": "user.key",
        option: replacement,
    }
    argv = [*files, "--control-service", "127.0.0.1"]
    for name, filename in options.items():
        argv += [name, str(certificates / filename)]
    status, err = exit_of(argv, capsys)
    assert status == EXIT_BAD_INPUT
    assert message in err and err.count("\n") == 1
