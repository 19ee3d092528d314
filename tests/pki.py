"""
Certificates for tests, made by the tests: a CA, and end-entity
certificates for XMPP domains, so nothing in the repository expires.
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CertificateAuthority:
    """
    A test CA that issues certificates for XMPP domains.
    """

    def __init__(self, name="Test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self):
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, dns_names, common_name=None, eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
              not_before=None, not_after=None, extensions=()):
        """
        Issue a certificate for C{dns_names}.

        @return: C{(certificate, key)}.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name or (dns_names or ["x"])[0])]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(hours=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self.key, hashes.SHA256()), key

    def write_identity(self, folder, domain, **kwargs):
        """
        Issue a certificate for C{domain} and write it (with the CA
        certificate after it) and its key into C{folder}.

        @return: C{(certificate file, key file)}.
        """
        os.makedirs(folder, exist_ok=True)
        certificate, key = self.issue([domain], **kwargs)
        certificate_file = os.path.join(folder, f"{domain}.pem")
        key_file = os.path.join(folder, f"{domain}.key")
        with open(certificate_file, "wb") as f:
            f.write(certificate.public_bytes(serialization.Encoding.PEM))
            f.write(self.pem)
        with open(key_file, "wb") as f:
            f.write(_pem_key(key))
        return certificate_file, key_file

    def write_ca(self, folder):
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "ca.pem")
        with open(path, "wb") as f:
            f.write(self.pem)
        return path
