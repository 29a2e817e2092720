"""
The cluster certificate authority and the certificates it issues.

Every Flocker connection is mutually authenticated TLS: each party shows a
certificate signed by the cluster's own root CA, and the kind of certificate
(and the name inside it) says who the party is.

Files written by ``flocker-ca`` and where each daemon expects them
-------------------------------------------------------------------
``flocker-ca`` writes into its ``--outputpath`` (default: the current
directory); the operator then copies the files to each machine, renaming some
of them, exactly as with the original Flocker:

* ``cluster.crt`` / ``cluster.key`` -- the cluster root CA (``initialize``).
  ``cluster.crt`` goes to **every** machine (``/etc/flocker/cluster.crt``);
  ``cluster.key`` stays with the operator and is only read back by
  ``flocker-ca`` (``--inputpath``) to sign the other certificates.
* ``control-<hostname>.crt`` / ``.key`` (``create-control-certificate``) --
  ``flocker-control`` expects them as ``/etc/flocker/control-service.crt`` and
  ``/etc/flocker/control-service.key``.
* ``<node-uuid>.crt`` / ``.key`` (``create-node-certificate``) -- the agents
  (``flocker-dataset-agent``, ``flocker-container-agent``) expect them as
  ``/etc/flocker/node.crt`` and ``/etc/flocker/node.key``.
* ``<username>.crt`` / ``.key`` (``create-api-certificate``) -- used by API
  clients (``flocker`` CLI, treq client) next to ``cluster.crt``; the Docker
  plugin conventionally uses a user called ``plugin``
  (``/etc/flocker/plugin.crt`` / ``plugin.key``).

What the certificates say
-------------------------
* The CA's subject is ``CN=<cluster name>, OU=<cluster UUID>``.
* Every issued certificate carries ``OU=<cluster UUID>`` and a common name
  saying who it is: ``control-service`` (plus a subjectAltName with the
  control host's DNS name or IP address, so clients verify it like any HTTPS
  server), ``node-<node UUID>``, or ``user-<username>``.

Keys are ECDSA on curve P-256: a key is generated in well under a millisecond
(RSA 2048 takes tens to hundreds), so tests can make whole clusters freely,
while the security is comparable to RSA 3072 and every TLS 1.2/1.3
implementation Flocker talks to (OpenSSL, curl, Go, browsers) supports it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyrsistent import PClass, field

#: File names of the cluster CA's certificate and key.
AUTHORITY_CERTIFICATE_FILENAME = "cluster.crt"
AUTHORITY_KEY_FILENAME = "cluster.key"

#: The common name of the control service's certificate.
CONTROL_COMMON_NAME = "control-service"
#: Prefixes of the common names of node and user certificates.
NODE_PREFIX = "node-"
USER_PREFIX = "user-"

#: How long certificates are valid: 20 years, like the original Flocker's.
VALIDITY = timedelta(days=365 * 20)
#: Certificates are back-dated by this much to tolerate small clock skew.
BACKDATE = timedelta(days=1)

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
#: Usernames whose file names would clash with other Flocker files.
_RESERVED_USERNAMES = frozenset({"cluster", "node", "control-service"})


class CertificateError(Exception):
    """
    A certificate could not be created or loaded.

    ``str()`` is a one-line explanation fit for a human.
    """


class Credential(PClass):
    """
    A certificate and its private key.

    :ivar certificate: The ``cryptography`` certificate.
    :ivar private_key: The ``cryptography`` private key (``None`` when only
        the certificate was loaded, e.g. the cluster CA on a node).
    """

    certificate = field(type=x509.Certificate, mandatory=True)
    private_key: Any = field(mandatory=True, initial=None)

    def certificate_pem(self) -> bytes:
        """Return the certificate in PEM form."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def private_key_pem(self) -> bytes:
        """Return the private key in unencrypted PKCS#8 PEM form."""
        if self.private_key is None:
            raise CertificateError("No private key was loaded for this certificate.")
        key: PrivateKeyTypes = self.private_key
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


class CertificateAuthority(Credential):
    """The cluster's root certificate authority (certificate, maybe key)."""

    @property
    def cluster_name(self) -> str:
        """The cluster's name, the CA's common name."""
        return _attribute(self.certificate.subject, NameOID.COMMON_NAME) or ""

    @property
    def cluster_uuid(self) -> UUID:
        """The cluster's UUID, the CA's organizational unit."""
        value = _attribute(self.certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        try:
            return UUID(value or "")
        except ValueError:
            raise CertificateError(
                "The cluster certificate carries no cluster UUID."
            ) from None


class IssuedCertificate(PClass):
    """
    Where ``flocker-ca`` wrote a certificate and its key.

    :ivar certificate_path: The ``.crt`` file.
    :ivar key_path: The ``.key`` file.
    :ivar common_name: The certificate's common name.
    :ivar node_uuid: The node's UUID for node certificates, else ``None``.
    """

    certificate_path = field(type=Path, mandatory=True)
    key_path = field(type=Path, mandatory=True)
    common_name = field(type=str, mandatory=True)
    node_uuid = field(type=(UUID, type(None)), initial=None)


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    """Return the first value of ``oid`` in ``name``, or ``None``."""
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8")


def generate_key() -> ec.EllipticCurvePrivateKey:
    """Generate a new ECDSA P-256 private key (see the module docstring)."""
    return ec.generate_private_key(ec.SECP256R1())


def validate_hostname(hostname: str) -> x509.GeneralName:
    """
    Check a control service host name or IP address.

    :return: The subjectAltName entry naming it: an ``IPAddress`` for an IP
        address (clients verify IP addresses against those only), otherwise a
        ``DNSName``.
    :raise CertificateError: If it is neither.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    name = hostname[:-1] if hostname.endswith(".") else hostname
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise CertificateError(
            f"Invalid hostname {hostname!r}: expected a DNS name or an IP address."
        )
    return x509.DNSName(name.lower())


def validate_username(username: str) -> None:
    """
    Check an API user's name.

    Letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit,
    at most 63 characters.

    :raise CertificateError: If it is not acceptable.
    """
    if not _USERNAME.match(username) or username in _RESERVED_USERNAMES:
        raise CertificateError(
            f"Invalid username {username!r}: use 1-63 letters, digits, '_', '.' "
            "or '-', starting with a letter or digit (not 'cluster', 'node' or "
            "'control-service')."
        )


def validate_cluster_name(name: str) -> None:
    """
    Check a cluster's name: 1-64 printable characters, no ``/``.

    :raise CertificateError: If it is not acceptable.
    """
    if not name or len(name) > 64 or not name.isprintable() or "/" in name:
        raise CertificateError(
            f"Invalid cluster name {name!r}: use 1-64 printable characters."
        )


def _write_new_files(
    directory: Path, basename: str, credential: Credential
) -> IssuedCertificate:
    """
    Write ``<basename>.crt`` and ``<basename>.key`` into ``directory``.

    Refuses to overwrite either; the key is readable by its owner only.
    """
    if not directory.is_dir():
        raise CertificateError(f"Output directory {directory} does not exist.")
    certificate_path = directory / f"{basename}.crt"
    key_path = directory / f"{basename}.key"
    for path in (certificate_path, key_path):
        if path.exists():
            raise CertificateError(f"{path} already exists; not overwriting it.")
    written = []
    try:
        for path, data, mode in (
            (key_path, credential.private_key_pem(), 0o600),
            (certificate_path, credential.certificate_pem(), 0o644),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except FileExistsError as e:
        for path in written:
            path.unlink()
        raise CertificateError(
            f"{e.filename} already exists; not overwriting it."
        ) from None
    except OSError as e:
        for path in written:
            path.unlink(missing_ok=True)
        raise CertificateError(f"Cannot write {e.filename}: {e.strerror}.") from None
    return IssuedCertificate(
        certificate_path=certificate_path,
        key_path=key_path,
        common_name=_attribute(credential.certificate.subject, NameOID.COMMON_NAME)
        or "",
    )


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    """Set a certificate's validity period (back-dated, 20 years)."""
    now = datetime.now(UTC)
    return builder.not_valid_before(now - BACKDATE).not_valid_after(now + VALIDITY)


def make_authority(
    cluster_name: str, cluster_uuid: UUID | None = None
) -> CertificateAuthority:
    """
    Create a new cluster root CA in memory.

    :param cluster_name: The cluster's human name (the CA's common name).
    :param cluster_uuid: The cluster's UUID; a new random one by default.
    """
    validate_cluster_name(cluster_name)
    if cluster_uuid is None:
        cluster_uuid = uuid4()
    key = generate_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cluster_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, str(cluster_uuid)),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )
    certificate = _validity(builder).sign(key, hashes.SHA256())
    return CertificateAuthority(certificate=certificate, private_key=key)


def issue_certificate(
    authority: CertificateAuthority,
    common_name: str,
    *,
    server: bool,
    client: bool,
    alt_names: tuple[x509.GeneralName, ...] = (),
) -> Credential:
    """
    Issue a certificate signed by ``authority`` in memory.

    :param common_name: The subject's common name; the subject also carries the
        cluster's UUID as its organizational unit.
    :param server: Whether it may be used by TLS servers.
    :param client: Whether it may be used by TLS clients.
    :param alt_names: subjectAltName entries.
    """
    if authority.private_key is None:
        raise CertificateError("The cluster CA's private key was not loaded.")
    key = generate_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(
                NameOID.ORGANIZATIONAL_UNIT_NAME, str(authority.cluster_uuid)
            ),
        ]
    )
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                authority.private_key.public_key()
            ),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(alt_names)), critical=False
        )
    certificate = _validity(builder).sign(authority.private_key, hashes.SHA256())
    return Credential(certificate=certificate, private_key=key)


def _read(path: Path, what: str) -> bytes:
    """Read a file, turning a failure into a one-line ``CertificateError``."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{what} {path} does not exist.") from None
    except OSError as e:
        raise CertificateError(f"Cannot read {what} {path}: {e.strerror}.") from None


def _load_certificate(path: Path) -> x509.Certificate:
    """Load a PEM certificate file."""
    try:
        return x509.load_pem_x509_certificate(_read(path, "Certificate file"))
    except ValueError:
        raise CertificateError(f"{path} is not a PEM certificate.") from None


def _load_key(path: Path) -> PrivateKeyTypes:
    """Load an unencrypted PEM private key file."""
    try:
        return serialization.load_pem_private_key(_read(path, "Key file"), None)
    except (ValueError, TypeError):
        raise CertificateError(
            f"{path} is not an unencrypted PEM private key."
        ) from None


def load_credential(directory: Path | str, basename: str) -> Credential:
    """
    Load ``<basename>.crt`` and ``<basename>.key`` from ``directory``.

    For example ``load_credential("/etc/flocker", "node")``.

    :raise CertificateError: If either is missing or unreadable, or the key
        does not belong to the certificate.
    """
    directory = Path(directory)
    certificate = _load_certificate(directory / f"{basename}.crt")
    key = _load_key(directory / f"{basename}.key")
    if key.public_key() != certificate.public_key():
        raise CertificateError(
            f"{directory / (basename + '.key')} is not the key of "
            f"{directory / (basename + '.crt')}."
        )
    return Credential(certificate=certificate, private_key=key)


def load_authority(
    directory: Path | str, *, with_key: bool = False
) -> CertificateAuthority:
    """
    Load the cluster CA from ``directory``.

    Reads ``cluster.crt``, and ``cluster.key`` if ``with_key``.

    :raise CertificateError: If the files are missing or unreadable, or the
        certificate is not a Flocker cluster CA.
    """
    directory = Path(directory)
    path = directory / AUTHORITY_CERTIFICATE_FILENAME
    if not path.exists():
        raise CertificateError(
            f"No cluster CA found: {path} does not exist (run 'flocker-ca initialize' "
            "first or pass --inputpath)."
        )
    if with_key:
        credential = load_credential(directory, "cluster")
        authority = CertificateAuthority(
            certificate=credential.certificate, private_key=credential.private_key
        )
    else:
        authority = CertificateAuthority(certificate=_load_certificate(path))
    authority.cluster_uuid  # noqa: B018 - raises CertificateError if missing
    return authority


def initialize(
    directory: Path | str, cluster_name: str, cluster_uuid: UUID | None = None
) -> IssuedCertificate:
    """
    Create a cluster root CA as ``cluster.crt`` / ``cluster.key``.

    This is ``flocker-ca initialize``; files go into ``directory``.
    """
    return _write_new_files(
        Path(directory), "cluster", make_authority(cluster_name, cluster_uuid)
    )


def create_control_certificate(
    authority: CertificateAuthority, hostname: str, directory: Path | str
) -> IssuedCertificate:
    """
    Issue the control service's certificate.

    Written as ``control-<hostname>.crt`` / ``.key`` in ``directory``; it names
    ``hostname`` (a DNS name or an IP address) in its subjectAltName and serves
    as both TLS server and client.
    """
    alt_name = validate_hostname(hostname)
    credential = issue_certificate(
        authority, CONTROL_COMMON_NAME, server=True, client=True, alt_names=(alt_name,)
    )
    return _write_new_files(Path(directory), f"control-{hostname}", credential)


def create_node_certificate(
    authority: CertificateAuthority,
    directory: Path | str,
    node_uuid: UUID | None = None,
) -> IssuedCertificate:
    """
    Issue a node's certificate (CN ``node-<uuid>``).

    Written as ``<uuid>.crt`` / ``<uuid>.key`` in ``directory``, for a new
    random node UUID by default. Nodes both connect (to the control service, to other nodes' transfer
    ports) and listen (for transfers), so it is a client and server
    certificate.
    """
    if node_uuid is None:
        node_uuid = uuid4()
    credential = issue_certificate(
        authority, f"{NODE_PREFIX}{node_uuid}", server=True, client=True
    )
    return _write_new_files(Path(directory), str(node_uuid), credential).set(
        node_uuid=node_uuid
    )


def create_api_certificate(
    authority: CertificateAuthority, username: str, directory: Path | str
) -> IssuedCertificate:
    """
    Issue an API user's client certificate (CN ``user-<username>``).

    Written as ``<username>.crt`` / ``<username>.key`` in ``directory``.
    """
    validate_username(username)
    credential = issue_certificate(
        authority, f"{USER_PREFIX}{username}", server=False, client=True
    )
    return _write_new_files(Path(directory), username, credential)
