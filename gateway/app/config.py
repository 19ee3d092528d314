"""
Operator configuration: a TOML file loaded into frozen value objects and
validated before anything listens.

Every problem is reported as a L{ConfigError} that names the file, the key
and the problem on one line.  Unknown keys are errors, so a typo can't
silently leave a setting at its default.
"""

import dataclasses
import datetime
import ipaddress
import math
import os
import tomllib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.endpoints import serverFromString

from gateway.log import LEVELS as LOG_LEVELS
from gateway.xmpp.jid import AddressError, bare_domain

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    _Value = TypeVar("_Value", bound=DataclassInstance)

#: A network DNS answers may lead to (L{DNSConfig.allow_networks}).
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The configuration used when no file is given: one local domain,
#: C{localhost}, on loopback, with a certificate and component secret made
#: on first start in the state folder.
DEFAULT_CONFIG_TOML = """\
state_dir = "xmpp-gateway-state"

[s2s]
listen = ["tcp:5269:interface=127.0.0.1"]

[components]
listen = ["tcp:5347:interface=127.0.0.1"]

[domains."localhost"]
"""

#: The name used in messages for the embedded default configuration.
DEFAULT_CONFIG_NAME = "<embedded default configuration>"


class ConfigError(Exception):
    """
    The configuration is not usable.

    @ivar path: the file it came from.
    @ivar key: the dotted key at fault (empty for the file as a whole).
    @ivar problem: what is wrong, for an operator.
    """

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(path, key, problem)
        self.path = path
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        if self.key:
            return f"{self.path}: {self.key}: {self.problem}"
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class DomainConfig:
    """
    A local domain carried onto the federation.

    @ivar certificate: PEM file with the certificate chain, or L{None} to
        have a self-signed certificate made in the state folder.
    @ivar key: PEM file with the private key (required with C{certificate}).
    @ivar component_secret: the XEP-0114 secret inline, if configured so.
    @ivar component_secret_file: a file holding the secret; when neither is
        given the gateway makes one in the state folder.
    """

    name: str
    certificate: str | None = None
    key: str | None = None
    component_secret: str | None = field(default=None, repr=False)
    component_secret_file: str | None = None


@dataclass(frozen=True)
class S2SConfig:
    """
    @ivar queue_limit: stanzas waiting for one route's stream.
    @ivar queue_limit_total: stanzas waiting for all routes together.
    @ivar max_stanza_size: bytes one first-level element may take.
    @ivar max_depth: how deeply elements may nest in a stanza.
    @ivar max_connections: inbound s2s connections at once.
    @ivar max_connections_per_address: inbound connections from one source
        (an IPv4 address, or an IPv6 /64: one host's addresses).
    @ivar max_unauthenticated: inbound streams not yet authenticated.
    @ivar max_unauthenticated_per_address: of those, from one source: the
        rest stays for everyone else.
    @ivar queue_limit_bytes: bytes waiting for one route's stream.
    @ivar queue_limit_total_bytes: bytes waiting for all routes together.
    @ivar max_unacked_bytes: bytes sent on one outbound stream that the peer
        has not yet acknowledged (XEP-0198) before new stanzas for it are
        refused.
    @ivar max_stalled_bytes: bytes written to one outbound stream while it
        does not read (its send buffer full) before new stanzas for it are
        refused.
    @ivar max_verifications: dialback verifications under way at once.
    @ivar max_verifications_per_stream: on one stream.
    @ivar read_rate: bytes a second read from one s2s stream, on average
        (bursts of twice that, or of one stanza of C{max_stanza_size}, go
        at once); 0 for no limit.
    """

    listen: tuple[str, ...] = ("tcp:5269:interface=127.0.0.1",)
    listen_direct_tls: tuple[str, ...] = ()
    queue_limit: int = 1000
    queue_limit_total: int = 20000
    max_stanza_size: int = 524288
    max_depth: int = 64
    max_connections: int = 2000
    max_connections_per_address: int = 500
    max_unauthenticated: int = 200
    max_unauthenticated_per_address: int = 50
    max_unacked_bytes: int = 2 * 1024 * 1024
    queue_limit_bytes: int = 2 * 1024 * 1024
    queue_limit_total_bytes: int = 64 * 1024 * 1024
    max_stalled_bytes: int = 2 * 1024 * 1024
    max_verifications: int = 200
    max_verifications_per_stream: int = 10
    read_rate: int = 512 * 1024


@dataclass(frozen=True)
class ComponentsConfig:
    listen: tuple[str, ...] = ("tcp:5347:interface=127.0.0.1",)


@dataclass(frozen=True)
class DNSConfig:
    """
    @ivar servers: C{(host, port)} pairs of the resolvers to ask; empty
        means the system's (C{/etc/resolv.conf}).
    @ivar trust_ad: believe these resolvers' AD bit: they validate DNSSEC
        and the path to them can't be tampered with (loopback).
    @ivar allow_networks: networks outside the public address space
        (loopback, private, link-local, reserved, ...) that DNS answers may
        still send the gateway to, as L{ipaddress} networks; by default none,
        so that a peer can't point the gateway at the operator's own network.
    """

    servers: tuple[tuple[str, int], ...] = ()
    timeout: float = 5.0
    trust_ad: bool = False
    allow_networks: tuple[Network, ...] = ()


@dataclass(frozen=True)
class TimeoutsConfig:
    """
    @ivar idle: seconds an authenticated stream may carry nothing before it
        is closed (gracefully: it reopens when needed).
    @ivar stalled: seconds an outbound stream may go without reading what
        we write (its send buffer full), or without acknowledging what it
        was asked to (XEP-0198), before it is closed.
    """

    connect: float = 10.0
    authentication: float = 30.0
    idle: float = 600.0
    stalled: float = 60.0


@dataclass(frozen=True)
class AdminConfig:
    """
    The admin interface (status page, JSON API, metrics).

    @ivar listen: its listeners; loopback by default, none to turn it off.
    @ivar token_file: the bearer token every request must carry; made in
        the state folder when not given.
    """

    listen: tuple[str, ...] = ("tcp:5280:interface=127.0.0.1",)
    token_file: str | None = None


@dataclass(frozen=True)
class LogConfig:
    """
    The log.

    @ivar level: the lowest level of the gateway's messages written:
        C{"debug"}, C{"info"}, C{"warn"} or C{"error"}.
    """

    level: str = "info"


@dataclass(frozen=True)
class RecordsConfig:
    """
    How long authentication records are kept.

    @ivar max_age_days: records older than this many days are forgotten.
    @ivar max_records: at most this many are kept, the newest.
    """

    max_age_days: float = 90.0
    max_records: int = 1_000_000


@dataclass(frozen=True)
class POSHConfig:
    """
    POSH (RFC 7711): checking peers' files, and publishing ours.

    @ivar listen: HTTPS listeners that serve
        C{/.well-known/posh/xmpp-server.json} for the local domains.
    @ivar timeout: seconds to fetch a peer's POSH file.
    @ivar max_size: the largest POSH file read, in bytes.
    @ivar max_cache: the most seconds a POSH result is kept, whatever its
        C{expires} says.
    @ivar negative_cache: seconds a missing or failed POSH lookup is kept.
    @ivar expires: the C{expires} (seconds) of the files we publish.
    """

    listen: tuple[str, ...] = ()
    timeout: float = 10.0
    max_size: int = 65536
    max_cache: float = 86400.0
    negative_cache: float = 300.0
    expires: int = 86400


@dataclass(frozen=True)
class DomainPolicy:
    """
    The trust policy for a peer domain.

    @ivar require_tls: refuse to exchange stanzas without TLS.
    @ivar verifiers: the verifiers to run, in order; the first that
        verifies the peer authenticates the stream.
    @ivar allow_unauthenticated: RFC 7590 section 3.4 "better than
        nothing": accept an encrypted peer that no verifier verified, and
        record it as unauthenticated (method C{none}).
    @ivar allow_cn_id: let PKIX fall back to the subject CN (RFC 9525 does
        not).
    @ivar decisive: verifiers whose failure refuses the peer at once.
    @ivar pins: C{(kind, hex)} pairs, C{kind} C{"sha256"} (the whole
        certificate) or C{"spki-sha256"} (its public key); when any are
        set, the peer's certificate must match one, before any verifier.
    @ivar verifier_timeout: seconds each verifier may take.
    @ivar require_dane: the domain must have secure TLSA records: DANE's
        "nothing to say" becomes a decisive failure.
    @ivar on_certificate_change: C{"warn"} or C{"refuse"} when a peer
        presents another certificate than the one last accepted.
    @ivar require_certificate_outbound: on streams we open, refuse a peer
        that only dialback (which says nothing more than that DNS led to
        it) or nothing would accept: a certificate-based method must verify
        it.
    """

    require_tls: bool = True
    verifiers: tuple[str, ...] = ("pkix", "dialback")
    allow_unauthenticated: bool = False
    allow_cn_id: bool = False
    decisive: tuple[str, ...] = ()
    pins: tuple[tuple[str, str], ...] = ()
    verifier_timeout: float = 10.0
    require_dane: bool = False
    on_certificate_change: str = "warn"
    require_certificate_outbound: bool = False


@dataclass(frozen=True)
class PolicyConfig:
    """
    @ivar domains: C{(pattern, DomainPolicy)} pairs; a pattern is a domain
        or C{*.domain} for every domain below it.
    @ivar trust_store: a PEM file of trusted CA certificates for PKIX, or
        L{None} for the system's.
    """

    default: DomainPolicy = DomainPolicy()
    domains: tuple[tuple[str, DomainPolicy], ...] = ()
    trust_store: str | None = None

    def for_domain(self, domain: str) -> DomainPolicy:
        """
        Return the L{DomainPolicy} that applies to peer C{domain}: an exact
        match first, else the longest C{*.suffix} pattern it falls under,
        else the default.  Patterns are canonical (L{gateway.xmpp.jid}), and so is
        C{domain} before it is looked up, whichever way it is spelt.
        """
        try:
            domain = bare_domain(domain)
        except AddressError:
            return self.default
        best, best_length = self.default, 0
        for pattern, policy in self.domains:
            if pattern == domain:
                return policy
            if pattern.startswith("*.") and domain.endswith(pattern[1:]) and len(pattern) > best_length:
                best, best_length = policy, len(pattern)
        return best

    @property
    def any_plaintext_allowed(self) -> bool:
        return not self.default.require_tls or any(
            not policy.require_tls for _, policy in self.domains
        )


@dataclass(frozen=True)
class GatewayConfig:
    source: str
    state_dir: str
    domains: tuple[DomainConfig, ...]
    s2s: S2SConfig = S2SConfig()
    components: ComponentsConfig = ComponentsConfig()
    dns: DNSConfig = DNSConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    policy: PolicyConfig = PolicyConfig()
    posh: POSHConfig = POSHConfig()
    admin: AdminConfig = AdminConfig()
    records: RecordsConfig = RecordsConfig()
    log: LogConfig = LogConfig()

    @property
    def domain_names(self) -> frozenset[str]:
        return frozenset(domain.name for domain in self.domains)

    def domain(self, name: str) -> DomainConfig:
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise KeyError(name)


class _Reader:
    """
    Walks one TOML table, taking keys off it; what is left at the end is
    an unknown key.
    """

    def __init__(self, path: str, prefix: str, table: object) -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(table, dict):
            raise ConfigError(path, prefix, f"must be a table, not {_kind(table)}")
        self.table: dict[str, Any] = dict(table)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def take(self, name: str, kinds: tuple[type, ...], default: Any) -> Any:
        """
        The value of key C{name}, which must be of one of C{kinds} (TOML's
        own types), else C{default}.
        """
        if name not in self.table:
            return default
        value = self.table.pop(name)
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            expected = " or ".join(_kind(kind()) for kind in kinds)
            raise self.error(name, f"must be {expected}, not {_kind(value)}")
        return value

    def number(self, name: str, default: float, minimum: float = 0, integer: bool = False) -> Any:
        value = self.take(name, (int,) if integer else (int, float), default)
        if not math.isfinite(value):
            raise self.error(name, f"must be a finite number, not {value}")
        if value <= minimum:
            raise self.error(name, f"must be greater than {minimum}, not {value}")
        return value

    def array(self, name: str, default: tuple[Any, ...], read: Callable[[Any], Any]) -> tuple[Any, ...]:
        """
        C{read} of each entry of the array C{name}, else C{default}; C{read}
        raises L{ValueError} with the problem.
        """
        entries = self.take(name, (list,), None)
        try:
            return default if entries is None else tuple(read(entry) for entry in entries)
        except ValueError as e:
            raise self.error(name, str(e)) from None

    def table_of(self, name: str, label: str | None = None) -> "_Reader":
        """
        The sub-table C{name}; C{label} is how its key is written in messages
        (quoted, for domain names).
        """
        return _Reader(self.path, self.key(label or name), self.table.pop(name, {}))

    def endpoints(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.take(name, (str, list), None)
        if value is not None:  # one string: an array of one
            self.table[name] = [value] if isinstance(value, str) else value
        return self.array(name, default, _endpoint)

    def path_value(self, name: str, base: str, must_exist: bool = True) -> str | None:
        value = self.take(name, (str,), None)
        if value is None:
            return None
        if not value:
            raise self.error(name, "must not be empty")
        resolved = os.path.join(base, os.path.expanduser(value))
        if must_exist and not os.path.isfile(resolved):
            if os.path.isdir(resolved):
                raise self.error(name, f"{resolved!r} is a folder, not a file")
            raise self.error(name, f"file {resolved!r} does not exist")
        return resolved

    def fields(self, defaults: "_Value", **given: object) -> "_Value":
        """
        C{defaults} with the keys C{given} set, and every other field of it
        read by its type: a boolean, a string, or a number greater than 0;
        any other key in the table is an error.
        """
        values = dict(given)
        # spec.type is the class itself while this module does without
        # "from __future__ import annotations".
        for spec in dataclasses.fields(defaults):
            if spec.name not in given:
                default = getattr(defaults, spec.name)
                if spec.type in (bool, str):
                    values[spec.name] = self.take(spec.name, (spec.type,), default)
                else:
                    values[spec.name] = self.number(spec.name, default, integer=spec.type is int)
        self.finish()
        return dataclasses.replace(defaults, **values)

    def finish(self) -> None:
        for name in self.table:
            raise self.error(name, "unknown key")


def _kind(value: object) -> str:
    return {
        dict: "a table",
        list: "an array",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
    }.get(type(value), "a date or time" if isinstance(value, (datetime.date, datetime.time)) else type(value).__name__)


def load_config(path: str, known_verifiers: Collection[str] | None = None) -> GatewayConfig:
    """
    Load and validate the configuration file at C{path}.

    @param known_verifiers: as for L{parse_config}.

    @raise ConfigError: when the file can't be read or is not valid.
    """
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "is not UTF-8 text") from None
    base = os.path.dirname(os.path.abspath(path))
    return parse_config(text, path, base, known_verifiers)


def default_config(base: str | None = None, known_verifiers: Collection[str] | None = None) -> GatewayConfig:
    """
    The embedded default configuration, with relative paths under C{base}
    (the current folder when L{None}).
    """
    return parse_config(
        DEFAULT_CONFIG_TOML, DEFAULT_CONFIG_NAME, base or os.getcwd(), known_verifiers
    )


def builtin_verifiers() -> frozenset[str]:
    """
    The names of the gateway's own verifiers (no plugin discovery: that
    is start-up's job, L{gateway.app.tap}).
    """
    from gateway.verifiers.dane import DANEVerifierFactory
    from gateway.verifiers.dialback import DialbackVerifierFactory
    from gateway.verifiers.pinned import PinnedVerifierFactory
    from gateway.verifiers.pkix import PKIXVerifierFactory
    from gateway.verifiers.posh import POSHVerifierFactory

    return frozenset(
        factory.name
        for factory in (
            DANEVerifierFactory, DialbackVerifierFactory, PinnedVerifierFactory,
            PKIXVerifierFactory, POSHVerifierFactory,
        )
    )


def parse_config(
    text: str, path: str, base: str, known_verifiers: Collection[str] | None = None
) -> GatewayConfig:
    """
    Parse configuration C{text}, reporting problems against C{path} and
    resolving relative paths against folder C{base}.

    @param known_verifiers: the verifier names policies may use; by default
        the gateway's own (L{builtin_verifiers}).  Start-up passes those of
        every installed plugin: parsing discovers nothing.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"is not valid TOML: {e}") from None
    root = _Reader(path, "", document)
    state_dir = root.take("state_dir", (str,), "xmpp-gateway-state")
    if not state_dir:
        raise root.error("state_dir", "must not be empty")
    config = GatewayConfig(
        source=path,
        state_dir=os.path.abspath(os.path.join(base, os.path.expanduser(state_dir))),
        domains=_domains(root.table_of("domains"), base),
        s2s=_s2s(root.table_of("s2s")),
        components=_components(root.table_of("components")),
        dns=_dns(root.table_of("dns")),
        timeouts=root.table_of("timeouts").fields(TimeoutsConfig()),
        posh=_posh(root.table_of("posh")),
        records=root.table_of("records").fields(RecordsConfig()),
        admin=_admin(root.table_of("admin"), base),
        log=_log(root.table_of("log")),
        policy=_policy(
            root.table_of("policy"), base,
            builtin_verifiers() if known_verifiers is None else known_verifiers,
        ),
    )
    root.finish()
    return config


def _domain_name(reader: _Reader, name: str, domain: str | None = None) -> str:
    """
    The canonical form (L{gateway.xmpp.jid.canonical_domain}) of C{domain}, by
    default the key C{name} itself; errors name the key C{name}.
    """
    try:
        return bare_domain(name if domain is None else domain)
    except AddressError as e:
        raise ConfigError(reader.path, reader.key(f'"{name}"'), str(e)) from None


def _canonical_keys(
    reader: _Reader, canonical_name: Callable[[_Reader, str], str]
) -> list[tuple[str, str]]:
    """
    The keys of C{reader}'s table with what each names in canonical form,
    in order.  Two keys naming the same domain (C{"bücher.example"} and
    C{"xn--bcher-kva.example"}, C{"Example.org"} and C{"example.org."}) are
    an error naming both: which of their settings would apply is not for
    the order of a file to decide.
    """
    seen: dict[str, str] = {}
    for name in reader.table:
        canonical = canonical_name(reader, name)
        if canonical in seen:
            other = reader.key(f'"{seen[canonical]}"')
            raise reader.error(
                f'"{name}"', f"names the same domain ({canonical}) as {other}; keep one of them"
            )
        seen[canonical] = name
    return [(name, canonical) for canonical, name in seen.items()]


def _domains(reader: _Reader, base: str) -> tuple[DomainConfig, ...]:
    if not reader.table:
        raise ConfigError(reader.path, "domains", "at least one local domain is required")
    domains = []
    for name, canonical in _canonical_keys(reader, _domain_name):
        table = reader.table_of(name, f'"{name}"')
        certificate = table.path_value("certificate", base)
        key = table.path_value("key", base)
        if (certificate is None) != (key is None):
            missing = "key" if key is None else "certificate"
            raise table.error(missing, "is required when the other of certificate/key is set")
        secret = table.take("component_secret", (str,), None)
        secret_file = table.path_value("component_secret_file", base, must_exist=False)
        if secret is not None and secret_file is not None:
            raise table.error(
                "component_secret", "give component_secret or component_secret_file, not both"
            )
        if secret is not None and len(secret) < 8:
            raise table.error("component_secret", "is too short (at least 8 characters)")
        table.finish()
        domains.append(DomainConfig(canonical, certificate, key, secret, secret_file))
    return tuple(domains)


def _s2s(reader: _Reader) -> S2SConfig:
    return reader.fields(
        S2SConfig(),
        listen=reader.endpoints("listen", S2SConfig.listen),
        listen_direct_tls=reader.endpoints("listen_direct_tls", S2SConfig.listen_direct_tls),
        # RFC 6120 section 13.12: no deployed server's limit is below
        # 10000 bytes.
        max_stanza_size=reader.number(
            "max_stanza_size", S2SConfig.max_stanza_size, minimum=9999, integer=True
        ),
        read_rate=_read_rate(reader, S2SConfig.read_rate),
    )


def _read_rate(reader: _Reader, default: int) -> int:
    value: int = reader.take("read_rate", (int,), default)
    if value != 0 and value < 1024:
        raise reader.error(
            "read_rate", f"must be 0 (no limit) or at least 1024 bytes a second, not {value}"
        )
    return value


def _components(reader: _Reader) -> ComponentsConfig:
    return reader.fields(ComponentsConfig(), listen=reader.endpoints("listen", ComponentsConfig.listen))


def _posh(reader: _Reader) -> POSHConfig:
    return reader.fields(POSHConfig(), listen=reader.endpoints("listen", POSHConfig.listen))


def _admin(reader: _Reader, base: str) -> AdminConfig:
    return reader.fields(
        AdminConfig(),
        listen=reader.endpoints("listen", AdminConfig.listen),
        token_file=reader.path_value("token_file", base, must_exist=False),
    )


def _log(reader: _Reader) -> LogConfig:
    config: LogConfig = reader.fields(LogConfig())
    if config.level not in LOG_LEVELS:
        raise reader.error(
            "level", f"must be one of {', '.join(map(repr, LOG_LEVELS))}, not {config.level!r}"
        )
    return config


def _endpoint(description: object) -> str:
    if not isinstance(description, str):
        raise ValueError(f"must list endpoint strings, not {_kind(description)}")
    try:
        serverFromString(None, description)
    except Exception as e:
        raise ValueError(f"{description!r} is not a listening endpoint: {e}") from None
    return description


def _dns(reader: _Reader) -> DNSConfig:
    return reader.fields(
        DNSConfig(),
        servers=reader.array("servers", (), _dns_server),
        allow_networks=reader.array("allow_networks", (), _network),
    )


def _dns_server(entry: object) -> tuple[str, int]:
    """
    Parse C{"127.0.0.1"}, C{"127.0.0.1:5353"} or C{"[::1]:5353"}; the port
    is 53 unless given.
    """
    if not isinstance(entry, str):
        raise ValueError(f"must list strings, not {_kind(entry)}")
    host, port = entry, "53"
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket:
            raise ValueError(f"{entry!r} has no closing bracket")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{entry!r} is not an address[:port]")
            port = rest[1:]
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        port = ""
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{entry!r} is not an IP address with an optional port")
    return (host, int(port))


def _network(entry: object) -> Network:
    try:
        return ipaddress.ip_network(entry, strict=False)  # type: ignore[arg-type]  # any TOML value; refused below
    except (TypeError, ValueError):
        raise ValueError(f"{entry!r} is not a network (write 10.0.0.0/8, fd00::/8, ...)") from None


_PIN_KINDS = ("sha256", "spki-sha256")


def _pin(pin: object) -> tuple[str, str]:
    kind, _, value = pin.partition(":") if isinstance(pin, str) else ("", "", "")
    value = value.replace(":", "").lower()
    if kind not in _PIN_KINDS or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise ValueError(
            f"{pin!r} is not a pin: write sha256:<64 hex digits> (the certificate) "
            "or spki-sha256:<64 hex digits> (its public key)"
        )
    return (kind, value)


def _verifier_names(reader: _Reader, default: tuple[str, ...], known: Collection[str]) -> tuple[str, ...]:
    def known_name(name: object) -> str:
        if not isinstance(name, str):
            raise ValueError(f"must list verifier names, not {_kind(name)}")
        if name not in known:
            raise ValueError(f"unknown verifier {name!r} (known: {', '.join(sorted(known))})")
        return name

    verifiers = reader.array("verifiers", default, known_name)
    if len(set(verifiers)) != len(verifiers):
        raise reader.error("verifiers", "names a verifier twice")
    return verifiers


def _domain_policy(reader: _Reader, default: DomainPolicy, known_verifiers: Collection[str]) -> DomainPolicy:
    verifiers = _verifier_names(reader, default.verifiers, known_verifiers)

    def decisive_name(name: object) -> str:
        if name not in verifiers:
            raise ValueError(f"{name!r} is not in this policy's verifiers")
        return name

    policy = reader.fields(
        default,
        verifiers=verifiers,
        decisive=reader.array("decisive", default.decisive, decisive_name),
        pins=reader.array("pins", default.pins, _pin),
    )
    if policy.on_certificate_change not in ("warn", "refuse"):
        raise reader.error(
            "on_certificate_change",
            f'must be "warn" or "refuse", not {policy.on_certificate_change!r}',
        )
    if policy.require_dane and "dane" not in policy.verifiers:
        raise reader.error("require_dane", "needs \"dane\" in this policy's verifiers")
    if not policy.verifiers and not policy.allow_unauthenticated:
        raise reader.error(
            "verifiers", "is empty, so no peer could authenticate (or set allow_unauthenticated)"
        )
    if policy.allow_unauthenticated and not policy.require_tls:
        raise reader.error(
            "allow_unauthenticated",
            "needs require_tls = true: an unauthenticated peer is only better than "
            "nothing over TLS",
        )
    return policy


def _policy_pattern(reader: _Reader, name: str) -> str:
    if name.startswith("*."):
        return "*." + _domain_name(reader, name, name[2:])
    return _domain_name(reader, name)


def _policy(reader: _Reader, base: str, known_verifiers: Collection[str]) -> PolicyConfig:
    overrides = reader.table_of("domains")
    trust_store = reader.path_value("trust_store", base)
    default = _domain_policy(reader, DomainPolicy(), known_verifiers)
    domains = tuple(
        (pattern, _domain_policy(overrides.table_of(name, f'"{name}"'), default, known_verifiers))
        for name, pattern in _canonical_keys(overrides, _policy_pattern)
    )
    return PolicyConfig(default=default, domains=domains, trust_store=trust_store)
