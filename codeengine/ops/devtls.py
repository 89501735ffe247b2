"""Dev TLS and ACL material of the local Redis Cluster: a CA, certificates and passwords.

Made once, at the first start of a secure :class:`codeengine.ops.devcluster.DevCluster`, into
the ignored ``var/redis/`` folder (private keys and passwords owner-only), and reused after,
so the dev cluster, ``make run``'s services and the test session all trust the same CA. A
production cluster's material comes from the operator's PKI instead; the services only read
the files named in the ``[cluster]`` settings.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MATERIAL_DIR", "USERS", "ClusterMaterial", "ensure_cluster_material"]

import datetime
import fcntl
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from codeengine.keyfiles import write_private

DEFAULT_MATERIAL_DIR = Path("var/redis")
"""Where the settings' defaults (``cluster.ca_file``, ...) look for it too."""
SERVER_NAME = "localhost"
"""The name on the nodes' certificate, beside the loopback addresses."""
CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 825
PASSWORD_BYTES = 32
USERS = ("admin", "codeengine", "records", "replica")
"""The ACL users: the project's tooling, the services, and replicas following a master."""


@dataclass(frozen=True, slots=True)
class ClusterMaterial:
    """Paths of the dev cluster's TLS and ACL files (absolute)."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    def password_file(self, user: str) -> Path:
        """The file of one ACL user's password."""
        return self.directory / f"{user}.password"

    def password(self, user: str) -> str:
        """One ACL user's password."""
        return self.password_file(user).read_text().strip()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    common_name: str,
    usages: list[x509.ObjectIdentifier],
    names: list[x509.GeneralName],
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _make_certificates(material: ClusterMaterial) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("codeengine dev Redis CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
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
        .sign(ca_key, hashes.SHA256())
    )
    # The nodes present their certificate to each other too (cluster bus, replication).
    server_key, server = _issue(
        ca_key,
        ca_name,
        SERVER_NAME,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        [
            x509.DNSName(SERVER_NAME),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
        now,
    )
    client_key, client = _issue(
        ca_key, ca_name, "codeengine client", [ExtendedKeyUsageOID.CLIENT_AUTH], [], now
    )
    pem = serialization.Encoding.PEM
    write_private(material.directory / "ca.key", _pem_key(ca_key))
    write_private(material.server_key, _pem_key(server_key))
    write_private(material.client_key, _pem_key(client_key))
    material.server_cert.write_bytes(server.public_bytes(pem))
    material.client_cert.write_bytes(client.public_bytes(pem))
    # Last: its presence says the set is complete.
    material.ca_file.write_bytes(ca.public_bytes(pem))


def ensure_cluster_material(directory: Path = DEFAULT_MATERIAL_DIR) -> ClusterMaterial:
    """Create whatever is missing of the CA, certificates and passwords; reuse the rest.

    A lock file keeps two processes starting clusters at once (two test sessions) from
    making two CAs whose files would mix.
    """
    material = ClusterMaterial(directory.resolve())
    material.directory.mkdir(parents=True, exist_ok=True)
    material.directory.chmod(0o700)
    with (material.directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not material.ca_file.exists():
            _make_certificates(material)
        for user in USERS:
            path = material.password_file(user)
            if not path.exists():
                write_private(path, secrets.token_urlsafe(PASSWORD_BYTES).encode())
    return material
