"""A throw-away certificate authority for TLS tests.

``make_ca`` writes a CA and a server certificate for the given host names;
``issue_server_cert`` issues more certificates from the same CA, such as an
expired one (``expired=True``) or one for a host the client does not ask for
(``make_wrong_host_cert``), so that TLS failures can be tested.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
VALIDITY = timedelta(days=30)


@dataclass(frozen=True)
class CAFiles:
    """PEM files: the CA's certificate and key, and one server certificate."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def make_ca(
    directory: Path | str,
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    *,
    expired: bool = False,
) -> CAFiles:
    """Write a test CA and a server certificate for ``hostnames`` into ``directory``.

    Host names that parse as IP addresses become IP SANs, the others DNS SANs.
    ``expired`` makes the server certificate (not the CA) one that has expired.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qfstack test CA")])
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    ca_cert = _write_cert(folder / "ca.pem", certificate)
    ca_key = _write_key(folder / "ca-key.pem", key)

    partial = CAFiles(ca_cert, ca_key, ca_cert, ca_key)
    server_cert, server_key = issue_server_cert(
        partial, folder, hostnames, name="server", expired=expired
    )
    return CAFiles(ca_cert, ca_key, server_cert, server_key)


def issue_server_cert(
    ca: CAFiles,
    directory: Path | str,
    hostnames: Sequence[str],
    *,
    name: str = "server",
    expired: bool = False,
) -> tuple[Path, Path]:
    """Issue a server certificate from ``ca``; return (certificate, key) paths."""
    if not hostnames:
        raise ValueError("a server certificate needs at least one host name")
    folder = Path(directory)
    ca_certificate = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.ca_key.read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca.ca_key} is not an EC key made by make_ca")

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    if expired:
        start, end = now - 2 * VALIDITY, now - VALIDITY
    else:
        start, end = now - timedelta(minutes=5), now + VALIDITY
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    ca_subject_key = ca_certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(_sans(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_subject_key
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _write_cert(folder / f"{name}.pem", certificate),
        _write_key(folder / f"{name}-key.pem", key),
    )


def make_wrong_host_cert(
    ca: CAFiles, directory: Path | str, hostname: str = "wrong-host.invalid"
) -> tuple[Path, Path]:
    """A valid certificate from ``ca`` that names only ``hostname``."""
    return issue_server_cert(ca, directory, [hostname], name="wrong-host")


def _sans(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for hostname in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
        except ValueError:
            names.append(x509.DNSName(hostname))
    return names


def _write_cert(path: Path, certificate: x509.Certificate) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # Readable by the (non-root) user a container may run as; test keys only.
    path.chmod(0o644)
    return path
