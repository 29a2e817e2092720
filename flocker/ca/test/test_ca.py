"""Unit tests for certificate generation and loading in flocker.ca._ca."""

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flocker.ca import (
    CertificateAuthority,
    CertificateError,
    create_api_certificate,
    create_control_certificate,
    create_node_certificate,
    initialize,
    load_authority,
    load_credential,
)
from flocker.ca._ca import generate_key, validate_hostname


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    """A freshly initialized CA in ``tmp_path``, loaded with its key."""
    initialize(tmp_path, "my-cluster")
    return load_authority(tmp_path, with_key=True)


def _name(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> str | bytes:
    """The single value of ``oid`` in a certificate's subject."""
    (attribute,) = certificate.subject.get_attributes_for_oid(oid)
    return attribute.value


def _usages(certificate: x509.Certificate) -> set[x509.ObjectIdentifier]:
    """The certificate's extended key usages."""
    return set(
        certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )


def test_initialize_writes_ca(tmp_path: Path) -> None:
    """initialize writes cluster.crt/.key: a self-signed CA naming the cluster and its UUID."""
    cluster_uuid = uuid4()
    issued = initialize(tmp_path, "my-cluster", cluster_uuid)
    assert issued.certificate_path == tmp_path / "cluster.crt"
    assert issued.key_path == tmp_path / "cluster.key"
    authority = load_authority(tmp_path, with_key=True)
    assert authority.cluster_name == "my-cluster"
    assert authority.cluster_uuid == cluster_uuid
    certificate = authority.certificate
    assert certificate.issuer == certificate.subject
    certificate.verify_directly_issued_by(certificate)
    assert certificate.extensions.get_extension_for_class(
        x509.BasicConstraints
    ).value.ca


def test_initialize_random_uuid(tmp_path: Path) -> None:
    """Each initialize makes a cluster with a new random UUID."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    initialize(tmp_path / "a", "c")
    initialize(tmp_path / "b", "c")
    assert (
        load_authority(tmp_path / "a").cluster_uuid
        != load_authority(tmp_path / "b").cluster_uuid
    )


def test_key_file_private(tmp_path: Path, authority: CertificateAuthority) -> None:
    """Key files are readable by their owner only; certificates by everyone."""
    issued = create_api_certificate(authority, "alice", tmp_path)
    assert stat.S_IMODE((tmp_path / "cluster.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(issued.certificate_path.stat().st_mode) == 0o644


def test_control_certificate_dns(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """A control certificate for a DNS name has CN control-service and a DNS subjectAltName."""
    issued = create_control_certificate(authority, "Control.Example.com", tmp_path)
    assert issued.certificate_path == tmp_path / "control-Control.Example.com.crt"
    assert issued.key_path == tmp_path / "control-Control.Example.com.key"
    certificate = load_credential(tmp_path, "control-Control.Example.com").certificate
    certificate.verify_directly_issued_by(authority.certificate)
    assert _name(certificate, NameOID.COMMON_NAME) == "control-service"
    assert _name(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME) == str(
        authority.cluster_uuid
    )
    san = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert san.get_values_for_type(x509.DNSName) == ["control.example.com"]
    assert _usages(certificate) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }


@pytest.mark.parametrize("address", ["127.0.0.11", "10.77.0.1", "::1", "fd00::5"])
def test_control_certificate_ip(
    tmp_path: Path, authority: CertificateAuthority, address: str
) -> None:
    """A control certificate for an IP address names it as an IPAddress subjectAltName only."""
    create_control_certificate(authority, address, tmp_path)
    certificate = load_credential(tmp_path, f"control-{address}").certificate
    san = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(address)]
    assert san.get_values_for_type(x509.DNSName) == []


@pytest.mark.parametrize(
    "hostname",
    [
        "",
        "bad host",
        "-leading.example",
        "trailing-.example",
        "a..b",
        "x/y",
        "../etc",
        "a" * 64 + ".example",
        "1.2.3",
        "999.1.1.1",
        "host_name",
        "ex\u00e4mple.com",
    ],
)
def test_control_certificate_bad_hostname(
    tmp_path: Path, authority: CertificateAuthority, hostname: str
) -> None:
    """A bad hostname is refused with CertificateError and writes nothing."""
    before = set(tmp_path.iterdir())
    with pytest.raises(CertificateError, match="Invalid hostname"):
        create_control_certificate(authority, hostname, tmp_path)
    assert set(tmp_path.iterdir()) == before


def test_validate_hostname_trailing_dot() -> None:
    """A fully qualified name with a trailing dot is accepted without the dot."""
    assert validate_hostname("example.com.") == x509.DNSName("example.com")


def test_node_certificate(tmp_path: Path, authority: CertificateAuthority) -> None:
    """A node certificate is <uuid>.crt/.key with CN node-<uuid>, client and server usage."""
    issued = create_node_certificate(authority, tmp_path)
    assert isinstance(issued.node_uuid, UUID)
    assert issued.certificate_path == tmp_path / f"{issued.node_uuid}.crt"
    certificate = load_credential(tmp_path, str(issued.node_uuid)).certificate
    certificate.verify_directly_issued_by(authority.certificate)
    assert _name(certificate, NameOID.COMMON_NAME) == f"node-{issued.node_uuid}"
    assert issued.common_name == f"node-{issued.node_uuid}"
    assert _usages(certificate) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }


def test_node_certificate_chosen_uuid(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """A node certificate can be made for a chosen UUID."""
    node_uuid = uuid4()
    issued = create_node_certificate(authority, tmp_path, node_uuid)
    assert issued.node_uuid == node_uuid
    assert (tmp_path / f"{node_uuid}.crt").exists()


def test_node_certificates_distinct(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """Two node certificates get different UUIDs."""
    first = create_node_certificate(authority, tmp_path)
    second = create_node_certificate(authority, tmp_path)
    assert first.node_uuid != second.node_uuid


def test_api_certificate(tmp_path: Path, authority: CertificateAuthority) -> None:
    """An API certificate is <username>.crt/.key with CN user-<username>, client usage only."""
    issued = create_api_certificate(authority, "alice", tmp_path)
    assert issued.certificate_path == tmp_path / "alice.crt"
    certificate = load_credential(tmp_path, "alice").certificate
    certificate.verify_directly_issued_by(authority.certificate)
    assert _name(certificate, NameOID.COMMON_NAME) == "user-alice"
    assert _usages(certificate) == {ExtendedKeyUsageOID.CLIENT_AUTH}


@pytest.mark.parametrize(
    "username",
    [
        "",
        "../alice",
        "a/b",
        ".hidden",
        "-x",
        "with space",
        "a" * 64,
        "cluster",
        "node",
        "control-service",
        "\u00e9mile",
    ],
)
def test_api_certificate_bad_username(
    tmp_path: Path, authority: CertificateAuthority, username: str
) -> None:
    """A bad or reserved username is refused with CertificateError and writes nothing."""
    before = set(tmp_path.iterdir())
    with pytest.raises(CertificateError, match="Invalid username"):
        create_api_certificate(authority, username, tmp_path)
    assert set(tmp_path.iterdir()) == before


@pytest.mark.parametrize("name", ["", "a" * 65, "bad\nname", "a/b"])
def test_bad_cluster_name(tmp_path: Path, name: str) -> None:
    """A bad cluster name is refused and writes nothing."""
    with pytest.raises(CertificateError, match="Invalid cluster name"):
        initialize(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_ca(tmp_path: Path) -> None:
    """initialize refuses to overwrite an existing CA and leaves it intact."""
    initialize(tmp_path, "one")
    before = (tmp_path / "cluster.crt").read_bytes()
    with pytest.raises(CertificateError, match="already exists"):
        initialize(tmp_path, "two")
    assert (tmp_path / "cluster.crt").read_bytes() == before


def test_no_overwrite_key_only(tmp_path: Path, authority: CertificateAuthority) -> None:
    """An existing key file alone is enough to refuse; no certificate is written."""
    (tmp_path / "alice.key").write_bytes(b"precious")
    with pytest.raises(CertificateError, match="alice.key already exists"):
        create_api_certificate(authority, "alice", tmp_path)
    assert not (tmp_path / "alice.crt").exists()
    assert (tmp_path / "alice.key").read_bytes() == b"precious"


def test_no_overwrite_node(tmp_path: Path, authority: CertificateAuthority) -> None:
    """Creating a node certificate twice for one UUID is refused."""
    node_uuid = uuid4()
    create_node_certificate(authority, tmp_path, node_uuid)
    with pytest.raises(CertificateError, match="already exists"):
        create_node_certificate(authority, tmp_path, node_uuid)


def test_missing_output_directory(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """A missing output directory is reported."""
    with pytest.raises(CertificateError, match="does not exist"):
        create_api_certificate(authority, "alice", tmp_path / "missing")


def test_load_authority_missing(tmp_path: Path) -> None:
    """Loading a CA from a directory without cluster.crt says how to make one."""
    with pytest.raises(CertificateError, match="No cluster CA found.*initialize"):
        load_authority(tmp_path)


def test_load_authority_missing_key(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """Loading the CA with its key fails clearly when cluster.key is absent."""
    (tmp_path / "cluster.key").unlink()
    load_authority(tmp_path)
    with pytest.raises(CertificateError, match="cluster.key does not exist"):
        load_authority(tmp_path, with_key=True)


def test_load_authority_garbage(tmp_path: Path) -> None:
    """A cluster.crt that is not PEM is reported as such."""
    (tmp_path / "cluster.crt").write_bytes(b"not a certificate")
    with pytest.raises(CertificateError, match="not a PEM certificate"):
        load_authority(tmp_path)


def test_load_authority_without_uuid(tmp_path: Path) -> None:
    """A CA certificate that carries no cluster UUID is refused."""
    key = generate_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cluster.crt").write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(CertificateError, match="no cluster UUID"):
        load_authority(tmp_path)


def test_load_credential_wrong_key(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """A key that does not belong to the certificate is refused."""
    create_api_certificate(authority, "alice", tmp_path)
    create_api_certificate(authority, "bob", tmp_path)
    (tmp_path / "alice.key").write_bytes((tmp_path / "bob.key").read_bytes())
    with pytest.raises(CertificateError, match="is not the key of"):
        load_credential(tmp_path, "alice")


def test_load_credential_garbage_key(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    """A key file that is not a PEM key is reported."""
    create_api_certificate(authority, "alice", tmp_path)
    (tmp_path / "alice.key").write_bytes(b"garbage")
    with pytest.raises(CertificateError, match="not an unencrypted PEM private key"):
        load_credential(tmp_path, "alice")


def test_issue_without_ca_key(tmp_path: Path, authority: CertificateAuthority) -> None:
    """Issuing with a CA loaded without its key fails clearly."""
    with pytest.raises(CertificateError, match="private key was not loaded"):
        create_api_certificate(load_authority(tmp_path), "alice", tmp_path)
