"""
What the gateway's memory is made of, below its own code: the resident
size each import adds at start, and what OpenSSL alone keeps for one
established TLS connection.

    .venv/bin/python bench/memory_floor.py [--connections N]

Imports: a fresh interpreter imports, in order, what the gateway's start
needs (Twisted's reactor, then the libraries the gateway uses, then the
gateway), and the resident size (anonymous and file-backed) is printed
after each.

TLS: N connections between two of the gateway's own TLS profiles
(L{gateway.tls.profile.TLSProfile}: its options, its buffer release, its
request for the peer's certificate) complete a TLS 1.3 handshake and
exchange one record each way over memory BIOs, without sockets, Twisted or
XML streams; one side of each is kept, and the growth of the anonymous
resident size per kept connection is printed: the server side with the
peer's certificate requested (as the gateway does) and without, the client
side, and the server side with the hybrid key exchange.  Each figure comes
from a fresh interpreter.
"""

import argparse
import gc
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: What the gateway's start imports, in the order that shows each cost.
IMPORTS = [
    ("Twisted's reactor (with asyncio, ssl, pyOpenSSL, cryptography)",
     "twisted.internet.reactor"),
    ("wokkel (XEP-0114 components)", "wokkel.component"),
    ("IDNA tables (RFC 7622 domains)", "idna.uts46data"),
    ("dnspython (DNS wire format)", "dns.message"),
    ("prometheus_client (metrics)", "prometheus_client"),
    ("sqlite3 (the record store)", "sqlite3"),
    ("service_identity", "service_identity"),
    ("the gateway's modules", "gateway.app.tap"),
]

_IMPORT_PROBE = """
import importlib, json, sys
def rss():
    d = {}
    for line in open('/proc/self/status'):
        key = line.split(':')[0]
        if key in ('VmRSS', 'RssAnon', 'RssFile'):
            d[key] = int(line.split()[1]) / 1024
    return d
out = [('a bare interpreter', rss())]
for label, module in json.loads(sys.argv[1]):
    importlib.import_module(module)
    out.append((label, rss()))
print(json.dumps(out))
"""


def import_costs():
    import json

    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, json.dumps(IMPORTS)],
        capture_output=True, text=True, env=env, check=True,
    )
    return json.loads(done.stdout)


def _anonymous_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status")


def tls_cost(side, peer_certificate, group, connections):
    """
    Anonymous KiB per kept connection on C{side} (C{"server"} or
    C{"client"}), the client offering only the key exchange C{group}, in
    this process, which must not have made any before.
    """
    sys.path.insert(0, REPO)
    from OpenSSL import SSL

    from gateway.tls.profile import TLSProfile
    from tests.pki import CertificateAuthority

    folder = tempfile.mkdtemp(prefix="memory-floor-")
    ca = CertificateAuthority("Memory floor CA")

    class Identity:
        def __init__(self, domain):
            self.domain = domain
            self.certificate_file, self.key_file = ca.write_identity(folder, domain)

    a, b = TLSProfile([Identity("a.test")]), TLSProfile([Identity("b.test")])
    if not peer_certificate:
        for context in b._server_contexts.values():
            context.set_verify(SSL.VERIFY_NONE)
    # pyOpenSSL has no call for the groups; OpenSSL's own does it.
    from OpenSSL._util import lib

    for context in a._client_contexts.values():
        if lib.SSL_CTX_set1_curves_list(context._context, group.encode("ascii")) != 1:
            raise SystemExit(f"this OpenSSL does not know the group {group}")

    def pair():
        server = b.server_creator("b.test").serverConnectionForTLS(None)
        server.set_accept_state()
        client = a.client_creator("a.test", "b.test").clientConnectionForTLS(None)
        client.set_connect_state()
        for _ in range(10):
            for one, other in ((client, server), (server, client)):
                try:
                    one.do_handshake()
                except SSL.WantReadError:
                    pass
                try:
                    other.bio_write(one.bio_read(2**16))
                except SSL.WantReadError:
                    pass
        client.send(b"<a/>")
        server.bio_write(client.bio_read(2**16))
        server.recv(16)
        server.send(b"<b/>")
        client.bio_write(server.bio_read(2**16))
        client.recv(16)
        return server, client

    pair()
    gc.collect()
    before = _anonymous_kib()
    kept = []
    for _ in range(connections):
        server, client = pair()
        kept.append(server if side == "server" else client)
    gc.collect()
    return (_anonymous_kib() - before) / connections, kept[0].get_group_name()


def tls_costs(connections):
    """
    L{tls_cost} of each side, with and without the peer's certificate,
    each in a fresh interpreter (memory freed by one measurement would be
    reused by the next and hide its cost).
    """
    rows = []
    for side, peer_certificate, group in (
        ("server", True, "x25519"),
        ("server", False, "x25519"),
        ("client", True, "x25519"),
        ("server", True, "X25519MLKEM768"),
    ):
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--one", side,
             "yes" if peer_certificate else "no", group, "--connections", str(connections)],
            capture_output=True, text=True, check=True,
        )
        per, negotiated = done.stdout.split()
        rows.append((side, peer_certificate, float(per), negotiated))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000,
                        help="TLS connections kept per measurement (default 1000)")
    parser.add_argument("--one", nargs=3, metavar=("SIDE", "PEER_CERTIFICATE", "GROUP"),
                        help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.connections < 1:
        parser.error("--connections must be at least 1")
    if options.one:
        side, peer_certificate, group = options.one
        per, negotiated = tls_cost(side, peer_certificate == "yes", group, options.connections)
        print(f"{per:.2f} {negotiated}")
        return
    print("resident size at start, import by import (MiB: all / anonymous / file-backed):")
    previous = None
    for label, sizes in import_costs():
        growth = "" if previous is None else f"  (+{sizes['VmRSS'] - previous:.1f})"
        print(f"  {label:<64} {sizes['VmRSS']:6.1f} / {sizes['RssAnon']:5.1f} / "
              f"{sizes['RssFile']:5.1f}{growth}")
        previous = sizes["VmRSS"]
    from OpenSSL import SSL

    print(f"\nOpenSSL through pyOpenSSL, per established TLS 1.3 connection"
          f" ({SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()}; {options.connections} kept):")
    for side, peer_certificate, per, group in tls_costs(options.connections):
        if side == "server":
            asked = "peer's certificate requested" if peer_certificate else "no peer certificate"
        else:
            asked = "own certificate sent" if peer_certificate else "no certificate sent"
        print(f"  {side:<6} {group:<15} {asked:<30} {per:6.1f} KiB")


if __name__ == "__main__":
    main()
