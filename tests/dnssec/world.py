"""
A real DNSSEC world on loopback: Knot DNS (3.2) serves and signs the test
zones, unbound (1.17) validates them, and the tests ask unbound.

    world = DNSSECWorld(self.mktemp())
    self.addCleanup(world.stop)
    world.zone("secure.test")                       # signed by knot: AD
    world.zone("insecure.test", signed=False)       # no signatures: no AD
    world.zone("bogus.test", bogus=True)            # wrong trust anchor: SERVFAIL
    world.zone("partly.test", signer="ldns")        # pre-signed, signatures breakable
    world.add("secure.test", "_5269._tcp.xmpp.secure.test.", "TLSA", "3 1 1 " + digest)
    world.add("partly.test", "_5269._tcp.xmpp", "TLSA", "3 1 1 " + digest)
    world.break_signature("partly.test", "_5269._tcp.xmpp", "TLSA")  # that RRset SERVFAILs
    await world.start()
    rcode, authenticated, answers = await world.query("xmpp.secure.test", "A")

Each declared zone is an island of trust: the parent C{test.} exists nowhere,
and unbound gets one C{trust-anchor:} (a DS) per signed zone.  Give a
validating client L{DNSSECWorld.resolver_address}; the authoritative server is
at L{DNSSECWorld.authoritative_address}.  Records can change after start:
C{add}/C{remove}/C{replace}/C{break_signature}, then C{await world.publish()},
which reloads the zones in knot and flushes them from unbound's cache.  Zones
themselves must be declared before C{start()}.

Quirks, from running these programs here (Debian 12, root):
  - Startup takes 0.15-0.3 s (four small zones, one of them signed by ldns):
    knot generates an ECDSA P-256 key and signs a zone in milliseconds; the
    rest is polling and the helper programs (kdig, knotc, keymgr).
    C{publish()} takes about 0.2 s; C{stop()} about 0.05 s.
  - Ports: root can bind port 53 on 127.0.0.20 and .21, and that worked; but
    the whole suite ran twice at once here (two trial runs), and the second
    knot died with "cannot bind address 127.0.0.20@53 TCP (address already
    in use)".  So each server takes a free port on its address by default,
    and picks another one if it loses that port before binding it; pass
    C{port_auth=53}/C{port_resolver=53} only for clients that can't be
    given a port (C{resolv.conf}).
  - knot refuses to sign ("failed to initialize signing context (not
    exists)") unless the C{database: storage} folder exists beforehand.  Its
    control socket, like unbound's, is a UNIX socket whose path must fit in
    108 bytes: trial's temporary folders are too deep, so both sockets live in
    a short C{/tmp/dnssec-world-*} folder that C{stop()} removes.
  - knot answers REFUSED for a zone until it has loaded and signed it, so
    "the SOA is answered with AA" means "the zone is signed and served".  The
    DS comes from C{keymgr -c knot.conf ZONE ds} (digest type 2 is used).
  - unbound answers NXDOMAIN (with AA, from its built-in RFC 6761 local zone)
    for every C{.test} name, even with a stub-zone, unless told otherwise.
    Here each declared zone is C{local-zone: "ZONE." transparent} rather than
    all of C{test.}, and everything else is C{local-zone: "." static}: a name
    outside the world is answered NXDOMAIN (no AD) at once instead of waiting
    on root servers that can't be reached, so the world is hermetic.
  - Insecure: an unsigned zone with no trust anchor above it is simply not
    validated (NOERROR/NXDOMAIN without AD); it also gets C{domain-insecure:},
    which keeps it insecure even if it were declared under a signed zone.
  - Bogus (whole zone): knot signs the zone normally, but unbound's trust
    anchor is a DS with the right key tag and algorithm and a wrong digest.
    unbound logs "DS hash mismatches key ... while building chain of trust"
    and answers SERVFAIL for every name in the zone.
  - Bogus (one RRset): knot's automatic signing re-signs anything it is given,
    so a zone with C{signer="ldns"} is signed by C{ldns-signzone} (its own
    key, NSEC, signatures valid from a day ago to 30 days ahead) and served
    by knot as-is (C{dnssec-signing: off}); the RRSIG of each broken RRset
    has one base64 character changed.  unbound logs "signature crypto
    failed" and answers SERVFAIL for that RRset only; the rest of the zone
    stays secure.
  - Authenticated denial: both signers use NSEC, so a nonexistent name in a
    signed zone is NXDOMAIN with AD.
  - After changing records, C{unbound-control flush_zone} was enough even
    for a name unbound had cached as nonexistent (aggressive NSEC is on by
    default); C{publish()} also runs C{flush_negative} and C{flush_bogus}.
  - kdig (3.2) has C{+json} (RFC 8427) output, which L{DNSSECWorld.query}
    parses.  C{query} sets DO and AD in its queries, like a DANE client: a
    resolver sets AD in a reply only when the query had one of them (RFC
    6840, section 5.7).
  - unbound's keytag signalling (RFC 8145) sends C{_ta-XXXX} queries to the
    zones; it is turned off to keep the logs readable.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from twisted.internet import reactor as default_reactor
from twisted.internet import task, threads
from twisted.logger import Logger

from tests.interop.peers import require_program

log = Logger()

# Programs the world runs, and the Debian package of each.
SERVER_PROGRAMS = {
    "knotd": "knot",
    "knotc": "knot",
    "keymgr": "knot",
    "kdig": "knot-dnsutils",
    "unbound": "unbound",
    "unbound-control": "unbound",
    "unbound-checkconf": "unbound",
}
LDNS_PROGRAMS = {
    "ldns-keygen": "ldnsutils",
    "ldns-signzone": "ldnsutils",
}

_RCODES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
    5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}


class DNSWorldError(Exception):
    """
    The DNSSEC world could not be set up or changed; the message carries the
    end of the servers' logs.
    """


class Record(NamedTuple):
    """
    One resource record, in presentation format.
    """

    owner: str
    ttl: int
    rrtype: str
    rdata: str


class QueryResult(NamedTuple):
    """
    What a resolver answered.

    @ivar rcode: C{"NOERROR"}, C{"NXDOMAIN"}, C{"SERVFAIL"}, ...
    @ivar authenticated: the AD bit (RFC 4035, section 3.2.3).
    @ivar answers: the answer section as L{Record}s, without RRSIGs (unless
        RRSIG was asked for).
    """

    rcode: str
    authenticated: bool
    answers: tuple


@dataclass
class _Zone:
    name: str
    signed: bool
    bogus: bool
    signer: str
    records: list = field(default_factory=list)
    broken: set = field(default_factory=set)
    serial: int = 1
    changed: bool = True


def absolute_name(owner, zone):
    """
    C{owner} as an absolute, lower-case name inside C{zone}: C{"@"} is the
    apex, C{"xmpp"} is C{"xmpp.ZONE."}, and C{"xmpp.ZONE"} or C{"xmpp.ZONE."}
    are taken as they are.

    @raise ValueError: the name is not in C{zone}.
    """
    owner = owner.strip().lower()
    apex = zone + "."
    if owner in ("@", "", apex):
        return apex
    if owner.endswith("."):
        name = owner
    elif owner == zone or owner.endswith("." + zone):
        name = owner + "."
    else:
        name = owner + "." + apex
    if name != apex and not name.endswith("." + apex):
        raise ValueError(f"{owner!r} is not in zone {zone!r}")
    return name


def free_port(address):
    """
    A port free for both UDP and TCP on C{address}.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise DNSWorldError(f"no port free for both UDP and TCP on {address}")


def mismatched_ds(ds_text, zone):
    """
    A DS like C{ds_text} (same key tag and algorithm, digest type 2) whose
    digest matches no key: as a trust anchor it makes the zone bogus.
    """
    owner, rrtype, tag, algorithm = ds_text.split()[:4]
    digest = hashlib.sha256(b"no key of " + zone.encode("ascii")).hexdigest()
    return f"{owner} {rrtype} {tag} {algorithm} 2 {digest}"


class DNSSECWorld:
    """
    Knot DNS authoritative for the declared zones, and a validating unbound
    with a stub-zone and (when signed) a trust anchor for each, both on
    loopback and both started and stopped by this object.

    @param folder: where configuration, zones, keys and logs go; created.
    @param address_auth: knot's loopback address.
    @param address_resolver: unbound's loopback address (also the source of
        its queries to knot).
    @param port_auth, port_resolver: their ports; C{0} (the default) picks
        a free one.  Port 53 works too (as root), for clients that can only
        be given an address (C{resolv.conf}); but then two test runs at once
        collide.
    @param timeout: the bound on each wait (a server starting, a zone
        reloading), in seconds.
    """

    def __init__(self, folder, address_auth="127.0.0.20", address_resolver="127.0.0.21",
                 port_auth=0, port_resolver=0, timeout=30.0, reactor=None):
        self.folder = os.path.abspath(folder)
        self.address_auth = address_auth
        self.address_resolver = address_resolver
        self._automatic_ports = {
            name for name, port in (("port_auth", port_auth), ("port_resolver", port_resolver))
            if not port
        }
        self.port_auth = port_auth or free_port(address_auth)
        self.port_resolver = port_resolver or free_port(address_resolver)
        self.timeout = timeout
        self.reactor = reactor or default_reactor
        self.trust_anchors = {}
        self.startup_seconds = None
        self._zones = {}
        self._knot = None
        self._unbound = None
        self._outputs = []
        self._socket_folder = None
        self._started = False

    # -- addresses and files ---------------------------------------------

    @property
    def resolver_address(self):
        """
        C{(ip, port)} of the validating resolver.
        """
        return (self.address_resolver, self.port_resolver)

    @property
    def authoritative_address(self):
        """
        C{(ip, port)} of the authoritative server.
        """
        return (self.address_auth, self.port_auth)

    @property
    def process_ids(self):
        """
        C{{"knotd": pid, "unbound": pid}} of the servers this world started
        and has not stopped yet.
        """
        running = {"knotd": self._knot, "unbound": self._unbound}
        return {name: p.pid for name, p in running.items() if p is not None}

    def _path(self, *parts):
        return os.path.join(self.folder, *parts)

    @property
    def knot_configuration(self):
        return self._path("knot.conf")

    @property
    def unbound_configuration(self):
        return self._path("unbound.conf")

    @property
    def trust_anchor_file(self):
        """
        A file of the DS records given to unbound as trust anchors, one a
        line (for clients that take a C{trustfile}, such as Prosody's
        libunbound).
        """
        return self._path("trust-anchors.ds")

    # -- declaring zones and records ---------------------------------------

    def zone(self, name, signed=True, bogus=False, signer="knot"):
        """
        Declare zone C{name}, served by knot.

        @param signed: sign it and give unbound a trust anchor for it (names
            in it validate as secure); unsigned zones are insecure.
        @param bogus: give unbound a trust anchor matching none of the zone's
            keys, so every name in it is bogus (SERVFAIL).
        @param signer: C{"knot"} (automatic signing) or C{"ldns"}
            (C{ldns-signzone}, needed for L{break_signature}).
        """
        name = name.strip().lower().rstrip(".")
        if self._started:
            raise DNSWorldError("declare zones before start()")
        if name in self._zones:
            raise ValueError(f"zone {name!r} is already declared")
        if signer not in ("knot", "ldns"):
            raise ValueError(f"signer must be 'knot' or 'ldns', not {signer!r}")
        if bogus and not signed:
            raise ValueError("a bogus zone must be signed")
        self._zones[name] = _Zone(name, signed, bogus, signer)
        return name

    def _zone(self, zone):
        try:
            return self._zones[zone.strip().lower().rstrip(".")]
        except KeyError:
            raise ValueError(f"zone {zone!r} is not declared") from None

    def add(self, zone, owner, rrtype, rdata_text, ttl=60):
        """
        Add a record to C{zone}, in presentation format, e.g.
        C{add("secure.test", "_5269._tcp.xmpp", "TLSA", "3 1 1 ab12...")}.
        Names in C{rdata_text} should be absolute (end with a dot).  After
        C{start()}, it is served once L{publish} has run.

        @return: the L{Record}.
        """
        entry = self._zone(zone)
        if "\n" in rdata_text or "\r" in rdata_text:
            raise ValueError("rdata must be on one line")
        record = Record(absolute_name(owner, entry.name), int(ttl), rrtype.strip().upper(),
                        rdata_text.strip())
        entry.records.append(record)
        entry.changed = True
        return record

    def remove(self, zone, owner, rrtype=None):
        """
        Remove the records of C{owner} in C{zone} (of type C{rrtype} only, if
        given).

        @return: how many were removed.
        """
        entry = self._zone(zone)
        owner = absolute_name(owner, entry.name)
        rrtype = rrtype and rrtype.strip().upper()
        kept = [r for r in entry.records
                if not (r.owner == owner and (rrtype is None or r.rrtype == rrtype))]
        removed = len(entry.records) - len(kept)
        entry.records = kept
        entry.changed = entry.changed or bool(removed)
        return removed

    def replace(self, zone, owner, rrtype, rdata_texts, ttl=60):
        """
        Replace the C{rrtype} RRset of C{owner} in C{zone} with
        C{rdata_texts} (one rdata string, or several).
        """
        if isinstance(rdata_texts, str):
            rdata_texts = [rdata_texts]
        self.remove(zone, owner, rrtype)
        self._zone(zone).changed = True
        return [self.add(zone, owner, rrtype, rdata, ttl) for rdata in rdata_texts]

    def break_signature(self, zone, owner, rrtype, broken=True):
        """
        Serve the RRSIG of C{owner}'s C{rrtype} RRset in C{zone} with a
        corrupted signature, so that a validating resolver answers SERVFAIL
        for that RRset only (or mend it, with C{broken=False}).  The zone
        must have been declared with C{signer="ldns"}.
        """
        entry = self._zone(zone)
        if not entry.signed or entry.signer != "ldns":
            raise ValueError(
                f"zone {entry.name!r} must be declared signed with signer='ldns' to break "
                "signatures (knot re-signs whatever it serves)"
            )
        key = (absolute_name(owner, entry.name), rrtype.strip().upper())
        if broken:
            entry.broken.add(key)
        else:
            entry.broken.discard(key)
        entry.changed = True

    # -- running programs --------------------------------------------------

    async def _run(self, arguments, timeout=10, check=True, cwd=None):
        """
        Run a program to completion in a thread, bounded by C{timeout}.
        """

        def run():
            try:
                return subprocess.run(
                    arguments, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired as e:
                raise DNSWorldError(
                    f"{arguments[0]} did not finish in {timeout}s: {arguments}"
                ) from e

        completed = await threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), run
        )
        if check and completed.returncode != 0:
            raise DNSWorldError(
                f"{' '.join(arguments)} exited with {completed.returncode}:\n"
                f"{completed.stdout}{completed.stderr}"
            )
        return completed

    async def _sleep(self, seconds):
        await task.deferLater(self.reactor, seconds, lambda: None)

    async def _poll(self, check, what, timeout=None):
        """
        Call C{check} (async, returning true when done) until it is done, or
        fail after C{timeout} seconds.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for process, name in ((self._knot, "knotd"), (self._unbound, "unbound")):
                if process is not None and process.poll() is not None:
                    raise DNSWorldError(
                        f"{name} exited with status {process.returncode} while waiting for "
                        f"{what}\n{self.log_tail()}"
                    )
            if await check():
                return
            if time.monotonic() > deadline:
                raise DNSWorldError(f"timed out waiting for {what}\n{self.log_tail()}")
            await self._sleep(0.05)

    def _spawn(self, name, arguments):
        output = open(self._path(f"{name}.out"), "w")
        self._outputs.append(output)
        return subprocess.Popen(
            arguments, cwd=self.folder, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines=30):
        """
        The end of the servers' logs, for error messages.
        """
        text = []
        for name in ("knotd.out", "knot.log", "unbound.out", "unbound.log"):
            try:
                with open(self._path(name), errors="replace") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                continue
            if tail:
                text.append(f"--- {name}\n" + "".join(tail))
        return "\n".join(text)

    def validation_failures(self):
        """
        The lines of unbound's log that report a validation failure (logged
        with C{val-log-level: 2}), e.g. to check that a SERVFAIL was bogus.
        """
        try:
            with open(self._path("unbound.log"), errors="replace") as f:
                return [line.rstrip("\n") for line in f if "validation failure" in line]
        except OSError:
            return []

    # -- queries -----------------------------------------------------------

    async def query(self, name, rrtype, server=None, tcp=False, timeout=2):
        """
        Ask C{server} (default: the validating resolver) for C{name}
        C{rrtype}, with kdig, DO and AD set.

        @return: a L{QueryResult} C{(rcode, authenticated, answers)}.
        @raise DNSWorldError: no answer.
        """
        host, port = server or self.resolver_address
        arguments = [
            shutil.which("kdig") or "kdig", f"@{host}", "-p", str(port), "+json", "+dnssec",
            "+adflag", f"+timeout={timeout}", "+retry=1", "-t", rrtype, name,
        ]
        if tcp:
            arguments.insert(4, "+tcp")
        completed = await self._run(arguments, timeout=4 * timeout + 5, check=False)
        try:
            message = json.loads(completed.stdout)
        except ValueError:
            raise DNSWorldError(
                f"no answer from {host}@{port} to {name} {rrtype}:\n"
                f"{completed.stdout}{completed.stderr}"
            ) from None
        answers = []
        for rr in message.get("answerRRs", ()):
            rrtype_name = rr.get("TYPEname", f"TYPE{rr['TYPE']}")
            if rrtype_name == "RRSIG" and rrtype.upper() != "RRSIG":
                continue
            rdata = rr.get("rdata" + rrtype_name)
            if rdata is None:
                rdata = f"\\# {rr.get('RDLENGTH', 0)} {rr.get('RDATAHEX', '')}".strip()
            answers.append(Record(rr["NAME"].lower(), rr["TTL"], rrtype_name, rdata))
        rcode = _RCODES.get(message["RCODE"], str(message["RCODE"]))
        return QueryResult(rcode, bool(message["AD"]), tuple(answers))

    async def _served_serial(self, zone):
        """
        The SOA serial knot serves for C{zone}, or None when it doesn't
        serve it (yet).
        """
        try:
            result = await self.query(zone, "SOA", server=self.authoritative_address, tcp=True,
                                      timeout=1)
        except DNSWorldError:
            return None
        for record in result.answers:
            if record.rrtype == "SOA":
                return int(record.rdata.split()[2])
        return None

    # -- zone files --------------------------------------------------------

    def _zone_text(self, entry):
        apex = entry.name + "."
        lines = [
            f"$ORIGIN {apex}",
            "$TTL 60",
            f"{apex} 60 IN SOA ns.{apex} hostmaster.{apex} {entry.serial} 3600 600 86400 60",
            f"{apex} 60 IN NS ns.{apex}",
            f"ns.{apex} 60 IN A {self.address_auth}",
        ]
        lines += [f"{r.owner} {r.ttl} IN {r.rrtype} {r.rdata}" for r in entry.records]
        return "\n".join(lines) + "\n"

    def _served_file(self, entry):
        """
        The file knot serves for C{entry}: the zone as declared, or as
        signed by ldns.
        """
        suffix = "signed" if entry.signed and entry.signer == "ldns" else "zone"
        return self._path("zones", f"{entry.name}.{suffix}")

    async def _write_zone(self, entry):
        source = self._path("zones", f"{entry.name}.zone")
        with open(source, "w") as f:
            f.write(self._zone_text(entry))
        if entry.signed and entry.signer == "ldns":
            await self._ldns_sign(entry, source)

    async def _ldns_key(self, entry):
        """
        The ldns key of C{entry} (made once): its path without extension.
        """
        folder = self._path("ldns", entry.name)
        os.makedirs(folder, exist_ok=True)
        names = sorted(n[:-len(".key")] for n in os.listdir(folder) if n.endswith(".key"))
        if not names:
            completed = await self._run(
                ["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", entry.name + "."], cwd=folder
            )
            names = [completed.stdout.strip()]
        return os.path.join(folder, names[0])

    async def _ldns_sign(self, entry, source):
        key = await self._ldns_key(entry)
        now = time.time()
        inception = time.strftime("%Y%m%d%H%M%S", time.gmtime(now - 86400))
        expiration = time.strftime("%Y%m%d%H%M%S", time.gmtime(now + 30 * 86400))
        signed = self._served_file(entry)
        await self._run([
            "ldns-signzone", "-o", entry.name + ".", "-i", inception, "-e", expiration,
            "-f", signed, source, key,
        ])
        if entry.broken:
            with open(signed) as f:
                lines = f.readlines()
            corrupted = set()
            for index, line in enumerate(lines):
                fields = line.split()
                if len(fields) > 5 and fields[3] == "RRSIG":
                    key_ = (fields[0].lower(), fields[4].upper())
                    if key_ in entry.broken:
                        signature = fields[-1]
                        middle = len(signature) // 2
                        swapped = "B" if signature[middle] == "A" else "A"
                        fields[-1] = signature[:middle] + swapped + signature[middle + 1:]
                        lines[index] = "\t".join(fields) + "\n"
                        corrupted.add(key_)
            missing = entry.broken - corrupted
            if missing:
                raise DNSWorldError(f"no RRSIG to break for {sorted(missing)} in {entry.name}")
            with open(signed, "w") as f:
                f.writelines(lines)

    # -- configuration -----------------------------------------------------

    def _knot_text(self):
        sockets = self._socket_folder
        lines = [
            "server:",
            f"    rundir: {self.folder}",
            f"    pidfile: {self._path('knot.pid')}",
            f"    listen: {self.address_auth}@{self.port_auth}",
            "    udp-workers: 1",
            "    tcp-workers: 1",
            "    background-workers: 1",
            "log:",
            f"  - target: {self._path('knot.log')}",
            "    any: info",
            "control:",
            f"    listen: {os.path.join(sockets, 'knot.sock')}",
            "database:",
            f"    storage: {self._path('knot-db')}",
            "policy:",
            # One key (CSK), a fast algorithm, and no waiting on propagation:
            # the zone is signed as soon as knot loads it.
            "  - id: world",
            "    algorithm: ecdsap256sha256",
            "    single-type-signing: on",
            "    dnskey-ttl: 60",
            "    propagation-delay: 0",
            "    rrsig-lifetime: 14d",
            "    rrsig-refresh: 7d",
            "    nsec3: off",
            "template:",
            "  - id: default",
            # The zone files are ours: never written back, always read whole.
            "    zonefile-sync: -1",
            "    zonefile-load: whole",
            "    journal-content: none",
        ]
        if self._zones:
            lines.append("zone:")
        for entry in self._zones.values():
            lines += [f"  - domain: {entry.name}", f"    file: {self._served_file(entry)}"]
            if entry.signed and entry.signer == "knot":
                lines += ["    dnssec-signing: on", "    dnssec-policy: world"]
        return "\n".join(lines) + "\n"

    def _unbound_text(self):
        server = [
            f'directory: "{self.folder}"',
            'chroot: ""',
            'username: ""',
            f'pidfile: "{self._path("unbound.pid")}"',
            f'logfile: "{self._path("unbound.log")}"',
            "use-syslog: no",
            "verbosity: 1",
            "val-log-level: 2",
            "log-servfail: yes",
            f"interface: {self.address_resolver}",
            f"port: {self.port_resolver}",
            "interface-automatic: no",
            f"outgoing-interface: {self.address_resolver}",
            "access-control: 127.0.0.0/8 allow",
            "do-ip4: yes",
            "do-ip6: no",
            "do-not-query-localhost: no",
            "num-threads: 1",
            "so-reuseport: no",
            "outgoing-range: 64",
            "num-queries-per-thread: 32",
            "msg-cache-size: 1m",
            "rrset-cache-size: 1m",
            "key-cache-size: 1m",
            "neg-cache-size: 1m",
            "prefetch: no",
            'module-config: "validator iterator"',
            "val-permissive-mode: no",
            "trust-anchor-signaling: no",
            "root-key-sentinel: no",
            "ede: yes",
            # Hermetic: nothing outside the world is looked up.
            'local-zone: "." static',
        ]
        for entry in self._zones.values():
            server.append(f'local-zone: "{entry.name}." transparent')
            if entry.name in self.trust_anchors:
                server.append(f'trust-anchor: "{self.trust_anchors[entry.name]}"')
            else:
                server.append(f'domain-insecure: "{entry.name}."')
        lines = ["server:"] + ["    " + line for line in server]
        lines += [
            "remote-control:",
            "    control-enable: yes",
            f'    control-interface: "{os.path.join(self._socket_folder, "unbound.ctl")}"',
            "    control-use-cert: no",
        ]
        for entry in self._zones.values():
            lines += [
                "stub-zone:",
                f'    name: "{entry.name}."',
                f"    stub-addr: {self.address_auth}@{self.port_auth}",
            ]
        return "\n".join(lines) + "\n"

    async def _trust_anchor(self, entry):
        """
        The DS record (text) unbound trusts for C{entry}.
        """
        if entry.signer == "ldns":
            key = await self._ldns_key(entry)
            with open(key + ".ds") as f:
                owner, _class, rrtype, *rdata = f.read().split()
            ds = " ".join([owner.lower(), rrtype, *rdata])
        else:
            completed = await self._run(
                ["keymgr", "-c", self.knot_configuration, entry.name, "ds"]
            )
            # "secure.test. DS 64080 13 2 46e2...": one line per digest type.
            candidates = [line.split() for line in completed.stdout.splitlines()]
            sha256 = [f for f in candidates if len(f) == 6 and f[1] == "DS" and f[4] == "2"]
            if not sha256:
                raise DNSWorldError(f"keymgr gave no DS for {entry.name}:\n{completed.stdout}")
            ds = " ".join(sha256[0])
        if entry.bogus:
            ds = mismatched_ds(ds, entry.name)
        return ds

    # -- lifecycle ---------------------------------------------------------

    async def start(self):
        """
        Write the zones and configurations, start knot, wait until it serves
        every zone (signed), make the trust anchors, start unbound, and wait
        until it answers.
        """
        if self._started:
            raise DNSWorldError("already started")
        for program, package in SERVER_PROGRAMS.items():
            require_program(program, package)
        if any(e.signed and e.signer == "ldns" for e in self._zones.values()):
            for program, package in LDNS_PROGRAMS.items():
                require_program(program, package)
        began = time.monotonic()
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            self._started = False
            raise
        self.startup_seconds = time.monotonic() - began
        log.info(
            "DNSSEC world up in {seconds:.2f}s: knot {auth}, unbound {resolver}, zones {zones}",
            seconds=self.startup_seconds, auth=self.authoritative_address,
            resolver=self.resolver_address, zones=sorted(self._zones),
        )

    async def _start(self):
        for sub in ("zones", "knot-db", "ldns"):
            os.makedirs(self._path(sub), exist_ok=True)
        # UNIX socket paths must fit in 108 bytes; trial's folders are deep.
        self._socket_folder = tempfile.mkdtemp(prefix="dnssec-world-")
        for entry in self._zones.values():
            await self._write_zone(entry)
        with open(self.knot_configuration, "w") as f:
            f.write(self._knot_text())
        knotc = ["knotc", "-c", self.knot_configuration, "-t", "5"]
        await self._run(knotc + ["conf-check"])
        if self._zones:
            await self._run(knotc + ["zone-check"])

        async def configure_knot():
            with open(self.knot_configuration, "w") as f:
                f.write(self._knot_text())
            return [shutil.which("knotd"), "-c", self.knot_configuration]

        async def knot_controllable():
            return (await self._run(knotc + ["status"], check=False)).returncode == 0

        await self._launch("knotd", "knot.log", configure_knot, knot_controllable,
                           "knot's control socket", "port_auth", self.address_auth)
        for entry in self._zones.values():
            await self._wait_served(entry)

        for entry in self._zones.values():
            if entry.signed:
                self.trust_anchors[entry.name] = await self._trust_anchor(entry)
        with open(self.trust_anchor_file, "w") as f:
            f.writelines(ds + "\n" for ds in self.trust_anchors.values())

        async def configure_unbound():
            with open(self.unbound_configuration, "w") as f:
                f.write(self._unbound_text())
            await self._run(["unbound-checkconf", self.unbound_configuration])
            return [shutil.which("unbound"), "-d", "-c", self.unbound_configuration]

        async def unbound_answers():
            control = await self._run(self._unbound_control("status"), check=False)
            if control.returncode != 0:
                return False
            try:
                # Answered from unbound's own localhost zone: touches no
                # test zone and no cache.
                result = await self.query("localhost.", "A", timeout=1)
            except DNSWorldError:
                return False
            return result.rcode == "NOERROR"

        await self._launch("unbound", "unbound.log", configure_unbound, unbound_answers,
                           "unbound to answer", "port_resolver", self.address_resolver)
        for entry in self._zones.values():
            entry.changed = False

    async def _launch(self, name, log_name, configure, ready, what, port_attribute, address):
        """
        Start server C{name}: write its configuration (C{configure()} returns
        the command line), spawn it, and wait until C{ready()}.  If its port
        was chosen here and something else bound it meanwhile (another test
        run), choose another port and try again, up to three times.
        """
        slot = {"knotd": "_knot", "unbound": "_unbound"}[name]
        log_path = self._path(log_name)
        for attempt in range(3):
            arguments = await configure()
            offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
            process = self._spawn(name, arguments)
            setattr(self, slot, process)
            try:
                await self._poll(ready, what)
                return
            except DNSWorldError:
                if (port_attribute not in self._automatic_ports or attempt == 2
                        or not self._bind_failed(name, log_path, offset)):
                    raise
            await self._stop_process(process)
            setattr(self, slot, None)
            setattr(self, port_attribute, free_port(address))
            log.info("{name}: port taken, retrying on port {port}", name=name,
                     port=getattr(self, port_attribute))

    def _bind_failed(self, name, log_path, offset):
        # unbound reports a failed bind on stderr, before opening its log.
        text = ""
        for path, start in ((log_path, offset), (self._path(f"{name}.out"), 0)):
            try:
                with open(path, errors="replace") as f:
                    f.seek(start)
                    text += f.read()
            except OSError:
                pass
        return "address already in use" in text.lower()

    async def _wait_served(self, entry):
        async def served():
            serial = await self._served_serial(entry.name)
            return serial is not None and serial >= entry.serial

        await self._poll(served, f"knot to serve {entry.name} serial {entry.serial}")

    def _unbound_control(self, *command):
        return ["unbound-control", "-c", self.unbound_configuration, *command]

    async def publish(self):
        """
        Serve the records changed since C{start()} (or the last C{publish()}):
        rewrite those zones, reload them in knot (which re-signs them), wait
        until knot serves the new serials, and flush them from unbound's
        cache.  Does nothing before C{start()}.
        """
        if not self._started:
            return
        changed = [entry for entry in self._zones.values() if entry.changed]
        knotc = ["knotc", "-c", self.knot_configuration, "-t", "10"]
        for entry in changed:
            served = await self._served_serial(entry.name) or 0
            entry.serial = max(entry.serial, served) + 1
            await self._write_zone(entry)
            await self._run(knotc + ["zone-check", entry.name])
            await self._run(knotc + ["-b", "zone-reload", entry.name], timeout=20)
            await self._wait_served(entry)
            entry.changed = False
        for entry in changed:
            await self._run(self._unbound_control("flush_zone", entry.name + "."))
        if changed:
            await self._run(self._unbound_control("flush_negative"))
            await self._run(self._unbound_control("flush_bogus"))

    async def stop(self):
        """
        Stop unbound and knot (SIGTERM, then SIGKILL after a bounded wait),
        and remove the socket folder.  Safe to call more than once, and after
        a failed start.
        """
        errors = []
        for name in ("_unbound", "_knot"):
            process = getattr(self, name)
            if process is None:
                continue
            try:
                await self._stop_process(process)
            except DNSWorldError as e:
                errors.append(str(e))
            else:
                setattr(self, name, None)
        self._started = False
        for output in self._outputs:
            output.close()
        self._outputs = []
        if self._socket_folder is not None:
            shutil.rmtree(self._socket_folder, ignore_errors=True)
            self._socket_folder = None
        if errors:
            raise DNSWorldError("\n".join(errors))

    async def _stop_process(self, process, term_timeout=10.0, kill_timeout=5.0):
        async def exited(timeout):
            deadline = time.monotonic() + timeout
            while process.poll() is None:
                if time.monotonic() > deadline:
                    return False
                await self._sleep(0.02)
            return True

        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        if await exited(term_timeout):
            return
        process.kill()
        if not await exited(kill_timeout):
            raise DNSWorldError(f"PID {process.pid} ({process.args[0]}) survived SIGKILL")
