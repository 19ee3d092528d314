"""
The state folder: what the gateway makes for itself on first start and
keeps across restarts.

  - C{dialback.secret}: the XEP-0185 dialback secret;
  - C{certificates/<domain>.pem} and C{.key}: a self-signed certificate for
    each local domain that has none configured;
  - C{components/<domain>.secret}: the XEP-0114 secret for each local
    domain that has none configured.

Secrets and keys are written with mode 0600 and never logged; their paths
are.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.log import Logger
from gateway.s2s.dialback import generate_secret

if TYPE_CHECKING:
    from gateway.app.config import GatewayConfig

log = Logger()


class StateError(Exception):
    """
    The state folder or a file in it can't be made or read.
    """


@dataclass(frozen=True)
class LocalIdentity:
    """
    What the gateway needs to speak for one local domain.
    """

    domain: str
    certificate_file: str
    key_file: str
    component_secret: str = field(repr=False)


@dataclass(frozen=True)
class GatewayState:
    state_dir: str
    dialback_secret: str = field(repr=False)
    identities: tuple[LocalIdentity, ...]
    admin_token: str | None = field(default=None, repr=False)

    def identity(self, domain: str) -> LocalIdentity:
        for identity in self.identities:
            if identity.domain == domain:
                return identity
        raise KeyError(domain)


def _write_private(path: str, data: bytes) -> None:
    """
    Create C{path} with mode 0600 and write C{data} (bytes) to it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _read_secret(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        secret = f.read().strip()
    if not secret:
        raise StateError(f"{path}: the secret file is empty")
    return secret


def _secret_file(path: str, what: str) -> str:
    """
    Read the secret in C{path}, making a new random one first if the file
    does not exist.
    """
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        _write_private(path, (generate_secret() + "\n").encode("ascii"))
        log.info("Generated {what} in {path}", what=what, path=path)
    else:
        log.info("Using {what} in {path}", what=what, path=path)
    return _read_secret(path)


def make_self_signed(
    domain: str, now: datetime.datetime | None = None, days: int = 365
) -> tuple[bytes, bytes]:
    """
    Make a self-signed certificate for C{domain} (DNS-ID and CN) with a new
    P-256 key.

    @return: C{(certificate PEM, key PEM)} as bytes.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _self_signed_files(state_dir: str, domain: str) -> tuple[str, str]:
    folder = os.path.join(state_dir, "certificates")
    certificate_file = os.path.join(folder, f"{domain}.pem")
    key_file = os.path.join(folder, f"{domain}.key")
    if not (os.path.exists(certificate_file) and os.path.exists(key_file)):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        certificate_pem, key_pem = make_self_signed(domain)
        for path in (certificate_file, key_file):
            if os.path.exists(path):
                os.unlink(path)
        _write_private(key_file, key_pem)
        _write_private(certificate_file, certificate_pem)
        log.warn(
            "Made a self-signed certificate for {domain} in {path}: peers can "
            "authenticate this domain by dialback only; configure a certificate "
            "from a CA for PKIX",
            domain=domain,
            path=certificate_file,
        )
    return certificate_file, key_file


def prepare_state(config: GatewayConfig) -> GatewayState:
    """
    Make the state folder and everything the configuration leaves to it.

    @type config: L{gateway.app.config.GatewayConfig}
    @raise StateError: when something can't be written or read.
    @rtype: L{GatewayState}
    """
    state_dir = config.state_dir
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        dialback_secret = _secret_file(
            os.path.join(state_dir, "dialback.secret"), "the dialback secret"
        )
        admin_token = None
        if config.admin.listen:
            admin_token = _secret_file(
                config.admin.token_file or os.path.join(state_dir, "admin.token"),
                "the admin interface token",
            )
        identities: list[LocalIdentity] = []
        for domain in config.domains:
            if domain.certificate is None:
                certificate_file, key_file = _self_signed_files(state_dir, domain.name)
            else:
                # The configuration requires a key with a certificate.
                assert domain.key is not None
                certificate_file, key_file = domain.certificate, domain.key
            if domain.component_secret is not None:
                component_secret = domain.component_secret
            else:
                path = domain.component_secret_file or os.path.join(
                    state_dir, "components", f"{domain.name}.secret"
                )
                component_secret = _secret_file(
                    path, f"the component secret for {domain.name}"
                )
            identities.append(
                LocalIdentity(
                    domain=domain.name,
                    certificate_file=certificate_file,
                    key_file=key_file,
                    component_secret=component_secret,
                )
            )
    except OSError as e:
        raise StateError(f"{e.filename or state_dir}: {e.strerror}") from None
    return GatewayState(
        state_dir=state_dir,
        dialback_secret=dialback_secret,
        identities=tuple(identities),
        admin_token=admin_token,
    )
