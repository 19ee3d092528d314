"""
Certificates for tests, made by the tests: a CA, and end-entity
certificates for XMPP domains, so nothing in the repository expires.
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")

_UTF8STRING = 0x0C
_IA5STRING = 0x16


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def generate_key(kind="ec"):
    """
    A new private key: C{"ec"} (P-256, the default everywhere here),
    C{"rsa"} (2048 bits) or C{"ed25519"}.
    """
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def _signature_hash(key):
    # Ed25519 signs the message itself, without a separate hash.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def der_string(tag, text):
    """
    DER-encode C{text} as a string of ASN.1 type C{tag} (C{0x0C}
    UTF8String, C{0x16} IA5String), as an otherName value.
    """
    content = text.encode("utf-8")
    if len(content) < 0x80:
        length = bytes([len(content)])
    else:
        size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(size)]) + size
    return bytes([tag]) + length + content


def xmpp_addr(jid):
    """
    An id-on-xmppAddr otherName for C{jid} (RFC 6120 section 13.7.1.4).
    """
    return x509.OtherName(ID_ON_XMPPADDR, der_string(_UTF8STRING, jid))


def srv_name(name):
    """
    An id-on-dnsSRV otherName (an SRV-ID) for C{name}, such as
    C{_xmpp-server.example.org} (RFC 4985).
    """
    return x509.OtherName(ID_ON_DNSSRV, der_string(_IA5STRING, name))


def key_usage(*asserted):
    """
    A KeyUsage extension asserting the named bits (C{"digital_signature"},
    C{"key_cert_sign"}, ...) and no others.
    """
    names = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )
    unknown = set(asserted) - set(names)
    if unknown:
        raise ValueError(f"unknown key usage bits {sorted(unknown)}")
    return x509.KeyUsage(**{name: name in asserted for name in names})


class CertificateAuthority:
    """
    A test CA that issues certificates for XMPP domains.

    @param issuer: another L{CertificateAuthority} that signs this one (an
        intermediate CA); L{None} for a self-signed root.
    @param eku: extended key usages for the CA certificate itself (none by
        default, like most roots).
    @param key: the CA's private key (see L{generate_key}); a new P-256
        key by default.
    @param ca: whether its certificate asserts basicConstraints cA (a
        signer that is not a CA, for tests that must refuse it).
    """

    def __init__(self, name="Test CA", issuer=None, not_before=None, not_after=None, eku=(),
                 key=None, ca=True):
        self.key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.issuer = issuer
        signer = issuer if issuer is not None else self
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(signer.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(days=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
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
        )
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        self.certificate = builder.sign(signer.key, _signature_hash(signer.key))

    def intermediate(self, name="Test Intermediate CA", **kwargs):
        """
        A CA whose certificate this CA signs.
        """
        return CertificateAuthority(name, issuer=self, **kwargs)

    @property
    def der(self):
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self):
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, dns_names, common_name=None, eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
              not_before=None, not_after=None, extensions=(), sans=(), self_signed=False,
              key=None):
        """
        Issue a certificate for C{dns_names}.

        @param sans: more subjectAltName entries (L{x509.GeneralName}s, such
            as L{xmpp_addr} and L{srv_name}) after the DNS names.  With
            neither, the certificate has no subjectAltName at all.
        @param self_signed: sign it with its own key, issuer = subject,
            instead of by this CA.
        @param key: the certificate's private key (to renew a certificate
            with the same key); a new P-256 key by default.
        @return: C{(certificate, key)}.
        """
        key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        now = _now()
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name or (dns_names or ["x"])[0])]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if self_signed else self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(hours=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    key.public_key() if self_signed else self.key.public_key()
                ),
                critical=False,
            )
        )
        if dns_names or sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names] + list(sans)),
                critical=False,
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        signer = key if self_signed else self.key
        return builder.sign(signer, _signature_hash(signer)), key

    def intermediates(self, length):
        """
        C{length} intermediate CAs in a row under this one, the last one
        issuing.
        """
        cas = [self]
        for position in range(length):
            cas.append(cas[-1].intermediate(f"Intermediate {position + 1}"))
        return cas[1:]

    def write_identity(self, folder, domain, other_names=(), **kwargs):
        """
        Issue a certificate for C{domain} (and C{other_names}) and write it
        (with the CA certificate after it) and its key into C{folder}.

        @return: C{(certificate file, key file)}.
        """
        os.makedirs(folder, exist_ok=True)
        certificate, key = self.issue([domain, *other_names], **kwargs)
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
