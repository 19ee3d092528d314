"""
Publishing POSH (RFC 7711) for the local domains.

Two ways:

  - the gateway serves C{/.well-known/posh/xmpp-server.json} itself on the
    C{[posh] listen} HTTPS endpoints (L{make_posh_site}; the TLS is the
    gateway's, with the certificate chosen by SNI), answering for the
    domain the request's C{Host} names with the fingerprints of that
    domain's certificate;
  - for a domain whose web site is elsewhere, the command

        python -m gateway.posh.publisher CERTIFICATE.pem [MORE.pem ...] [--expires N]

    prints the file to put there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.web import resource, server

from gateway.posh.client import WELL_KNOWN_PATH, posh_document
from gateway.xmpp.jid import AddressError, canonical_domain

#: The default C{expires} of the command, as C{[posh] expires}'s.
DEFAULT_EXPIRES = 86400


class PublishedDomain(Protocol):
    """
    What L{make_posh_site} reads of a local domain (a
    L{gateway.app.state.LocalIdentity}).
    """

    @property
    def domain(self) -> str: ...

    @property
    def certificate_file(self) -> str: ...


def certificate_der(path: str) -> bytes:
    """
    The first certificate of the PEM file C{path}, in DER.

    @raise ValueError: when there is none.
    @raise OSError: when the file can't be read.
    """
    with open(path, "rb") as f:
        certificates = x509.load_pem_x509_certificates(f.read())
    return certificates[0].public_bytes(serialization.Encoding.DER)


def _host_key(name: str) -> str:
    try:
        return canonical_domain(name)
    except AddressError:
        return name.lower()


class POSHResource(resource.Resource):
    """
    Answers C{GET} (and C{HEAD}) of the well-known POSH path with the
    document of the domain named by C{Host}; 404 for any other path or
    host.

    @param documents: A-label domain → the document's bytes.
    @param expires: for C{Cache-Control}.
    """

    isLeaf = True

    def __init__(self, documents: Mapping[str, bytes], expires: int) -> None:
        super().__init__()
        self.documents = dict(documents)
        self.expires = expires

    def render_GET(self, request: server.Request) -> bytes:
        document = None
        if request.path == WELL_KNOWN_PATH.encode("ascii"):
            host = request.getRequestHostname().decode("ascii", "replace")
            document = self.documents.get(_host_key(host))
        if document is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Not found\n"
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", f"max-age={self.expires}".encode("ascii"))
        return document

    render_HEAD = render_GET


def make_posh_site(identities: Iterable[PublishedDomain], expires: int) -> server.Site:
    """
    The HTTPS site publishing the POSH files of the local domains: each
    domain's document lists the fingerprints of its certificate (read once,
    here).

    @param identities: L{gateway.app.state.LocalIdentity} values.
    @param expires: the documents' C{expires}, in seconds.
    @rtype: L{server.Site}
    """
    documents: dict[str, bytes] = {}
    for identity in identities:
        documents[_host_key(identity.domain)] = posh_document(
            certificate_der(identity.certificate_file), expires
        )
    site = server.Site(POSHResource(documents, expires))
    site.displayTracebacks = False
    site.noisy = False
    return site


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """
    Print the POSH file for the certificates named on the command line.
    """
    out = sys.stdout if out is None else out
    parser = argparse.ArgumentParser(
        prog="python -m gateway.posh.publisher",
        description="Print the POSH file (RFC 7711) listing the fingerprints of the given "
        "XMPP certificates, to serve at "
        f"https://<domain>{WELL_KNOWN_PATH}.",
    )
    parser.add_argument(
        "certificates", nargs="+", metavar="CERTIFICATE.pem",
        help="the certificate the domain's XMPP service presents (the first of each file); "
        "give two during a change of certificates",
    )
    parser.add_argument(
        "--expires", type=int, default=DEFAULT_EXPIRES, metavar="N",
        help=f"seconds peers may cache the file (default {DEFAULT_EXPIRES})",
    )
    arguments = parser.parse_args(argv)
    if arguments.expires < 0:
        parser.error("--expires must not be negative")
    ders = []
    for path in arguments.certificates:
        try:
            ders.append(certificate_der(path))
        except OSError as e:
            parser.error(f"{path}: cannot read: {e.strerror}")
        except ValueError as e:
            parser.error(f"{path}: no PEM certificate: {e}")
    out.write(posh_document(ders[0], arguments.expires, ders[1:]).decode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
