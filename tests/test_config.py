"""
Tests for L{gateway.app.config}: the TOML configuration file, its defaults,
and the one-line errors that name the file, the key and the problem.
"""

import dataclasses
import io
import os
import sys
import tomllib

from twisted.trial import unittest

from gateway.app import tap
from gateway.app.config import (
    DEFAULT_CONFIG_NAME,
    DEFAULT_CONFIG_TOML,
    ComponentsConfig,
    ConfigError,
    DNSConfig,
    DomainConfig,
    DomainPolicy,
    GatewayConfig,
    PolicyConfig,
    S2SConfig,
    TimeoutsConfig,
    default_config,
    load_config,
    parse_config,
)

EXAMPLE_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "docs",
    "examples",
    "gateway.toml",
)

#: The smallest valid configuration: one local domain, all else default.
MINIMAL = '[domains."example.org"]\n'


def write_config(testcase, text, files=(), name="gateway.toml"):
    """
    Write C{text} as a configuration file in a new folder, with empty
    placeholder files C{files} beside it.

    @return: C{(folder, path)}, both absolute.
    """
    folder = os.path.abspath(testcase.mktemp())
    os.makedirs(folder)
    for relative in files:
        target = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write("placeholder\n")
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(text.encode("utf-8") if isinstance(text, str) else text)
    return folder, path


# ---------------------------------------------------------------------------
# Valid configurations


class DefaultConfigTests(unittest.TestCase):
    """
    The embedded default configuration used when no file is given.
    """

    def test_values(self):
        """
        One local domain, C{localhost}, with s2s and components on
        loopback, a state folder under the base folder, and every other
        setting at its default.
        """
        base = os.path.abspath(self.mktemp())
        config = default_config(base)
        self.assertEqual(
            config,
            GatewayConfig(
                source=DEFAULT_CONFIG_NAME,
                state_dir=os.path.join(base, "xmpp-gateway-state"),
                domains=(DomainConfig(name="localhost"),),
                s2s=S2SConfig(
                    listen=("tcp:5269:interface=127.0.0.1",),
                    listen_direct_tls=(),
                    queue_limit=1000,
                    max_stanza_size=524288,
                ),
                components=ComponentsConfig(listen=("tcp:5347:interface=127.0.0.1",)),
                dns=DNSConfig(servers=(), timeout=5.0),
                timeouts=TimeoutsConfig(connect=10.0, authentication=30.0),
                policy=PolicyConfig(default=DomainPolicy(require_tls=True), domains=()),
            ),
        )

    def test_no_certificate_or_secret(self):
        """
        The default domain leaves its certificate, key and component
        secret to the state folder.
        """
        domain = default_config(os.path.abspath(self.mktemp())).domain("localhost")
        self.assertIsNone(domain.certificate)
        self.assertIsNone(domain.key)
        self.assertIsNone(domain.component_secret)
        self.assertIsNone(domain.component_secret_file)

    def test_current_folder(self):
        """
        Without a base folder the state folder is under the current one.
        """
        self.assertEqual(
            default_config().state_dir, os.path.abspath("xmpp-gateway-state")
        )

    def test_embedded_text(self):
        """
        L{default_config} is L{DEFAULT_CONFIG_TOML} parsed.
        """
        base = os.path.abspath(self.mktemp())
        self.assertEqual(
            default_config(base), parse_config(DEFAULT_CONFIG_TOML, DEFAULT_CONFIG_NAME, base)
        )

    def test_policy(self):
        """
        By default TLS is required of every peer.
        """
        policy = default_config(os.path.abspath(self.mktemp())).policy
        self.assertTrue(policy.for_domain("example.net").require_tls)
        self.assertFalse(policy.any_plaintext_allowed)


class MinimalConfigTests(unittest.TestCase):
    """
    A file naming only a domain takes every other setting from the
    defaults.
    """

    def test_defaults(self):
        folder, path = write_config(self, MINIMAL)
        self.assertEqual(
            load_config(path),
            GatewayConfig(
                source=path,
                state_dir=os.path.join(folder, "xmpp-gateway-state"),
                domains=(DomainConfig(name="example.org"),),
            ),
        )

    def test_dataclass_defaults(self):
        """
        The documented defaults are the value objects' defaults.
        """
        self.assertEqual(
            S2SConfig(),
            S2SConfig(
                listen=("tcp:5269:interface=127.0.0.1",),
                listen_direct_tls=(),
                queue_limit=1000,
                max_stanza_size=524288,
            ),
        )
        self.assertEqual(ComponentsConfig().listen, ("tcp:5347:interface=127.0.0.1",))
        self.assertEqual(DNSConfig(), DNSConfig(servers=(), timeout=5.0))
        self.assertEqual(TimeoutsConfig(), TimeoutsConfig(connect=10.0, authentication=30.0))
        self.assertEqual(DomainPolicy(), DomainPolicy(require_tls=True))

    def test_frozen(self):
        """
        The loaded configuration can't be changed.
        """
        _, path = write_config(self, MINIMAL)
        config = load_config(path)
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, config, "state_dir", "/")
        self.assertRaises(
            dataclasses.FrozenInstanceError, setattr, config.s2s, "queue_limit", 1
        )

    def test_relative_config_path(self):
        """
        A configuration named by a relative path is reported under that
        path, and its relative paths resolve against its folder.
        """
        folder = self.mktemp()
        os.makedirs(folder)
        path = os.path.join(folder, "gateway.toml")
        with open(path, "w") as f:
            f.write('state_dir = "state"\n' + MINIMAL)
        config = load_config(path)
        self.assertEqual(config.source, path)
        self.assertEqual(config.state_dir, os.path.join(os.path.abspath(folder), "state"))


FULL_CONFIG = """\
state_dir = "/var/lib/xmpp-gateway"

[s2s]
listen = "tcp:5269:interface=192.0.2.1"
listen_direct_tls = ["tcp:5270:interface=192.0.2.1", 'tcp6:5270:interface=\\:\\:1']
queue_limit = 50
max_stanza_size = 10000

[components]
listen = ["tcp:5347:interface=127.0.0.1", "unix:/run/xmpp-gateway/components.sock"]

[domains."example.org"]
certificate = "tls/example.org.pem"
key = "tls/example.org.key"
component_secret_file = "secrets/example.org.secret"

[domains."chat.example.org"]
component_secret = "correct horse battery staple"

[dns]
servers = ["127.0.0.1", "127.0.0.1:5353", "[::1]:5353", "::1", "[::1]"]
timeout = 2.5

[timeouts]
connect = 5
authentication = 20.5

[policy]
require_tls = true

[policy.domains."legacy.example"]
require_tls = false

[policy.domains."other.example"]
"""


class FullConfigTests(unittest.TestCase):
    """
    A file setting every key.
    """

    def setUp(self):
        self.folder, self.path = write_config(
            self, FULL_CONFIG, files=("tls/example.org.pem", "tls/example.org.key")
        )
        self.config = load_config(self.path)

    def test_everything(self):
        folder = self.folder
        self.assertEqual(
            self.config,
            GatewayConfig(
                source=self.path,
                state_dir="/var/lib/xmpp-gateway",
                domains=(
                    DomainConfig(
                        name="example.org",
                        certificate=os.path.join(folder, "tls", "example.org.pem"),
                        key=os.path.join(folder, "tls", "example.org.key"),
                        component_secret=None,
                        component_secret_file=os.path.join(
                            folder, "secrets", "example.org.secret"
                        ),
                    ),
                    DomainConfig(
                        name="chat.example.org",
                        component_secret="correct horse battery staple",
                    ),
                ),
                s2s=S2SConfig(
                    listen=("tcp:5269:interface=192.0.2.1",),
                    listen_direct_tls=(
                        "tcp:5270:interface=192.0.2.1",
                        "tcp6:5270:interface=\\:\\:1",
                    ),
                    queue_limit=50,
                    max_stanza_size=10000,
                ),
                components=ComponentsConfig(
                    listen=(
                        "tcp:5347:interface=127.0.0.1",
                        "unix:/run/xmpp-gateway/components.sock",
                    )
                ),
                dns=DNSConfig(
                    servers=(
                        ("127.0.0.1", 53),
                        ("127.0.0.1", 5353),
                        ("::1", 5353),
                        ("::1", 53),
                        ("::1", 53),
                    ),
                    timeout=2.5,
                ),
                timeouts=TimeoutsConfig(connect=5, authentication=20.5),
                policy=PolicyConfig(
                    default=DomainPolicy(require_tls=True),
                    domains=(
                        ("legacy.example", DomainPolicy(require_tls=False)),
                        ("other.example", DomainPolicy(require_tls=True)),
                    ),
                ),
            ),
        )

    def test_domain_lookup(self):
        self.assertEqual(
            self.config.domain_names, frozenset({"example.org", "chat.example.org"})
        )
        self.assertEqual(self.config.domain("chat.example.org").name, "chat.example.org")
        self.assertRaises(KeyError, self.config.domain, "example.net")

    def test_policy_lookup(self):
        policy = self.config.policy
        self.assertFalse(policy.for_domain("legacy.example").require_tls)
        self.assertTrue(policy.for_domain("other.example").require_tls)
        self.assertTrue(policy.for_domain("example.net").require_tls)
        self.assertTrue(policy.any_plaintext_allowed)

    def test_secret_not_in_repr(self):
        """
        An inline component secret never appears in the configuration's
        repr, which may be logged.
        """
        self.assertNotIn("correct horse", repr(self.config))


class PathTests(unittest.TestCase):
    """
    Relative paths resolve against the configuration file's folder, not
    the current folder.
    """

    def test_relative(self):
        folder, path = write_config(
            self,
            'state_dir = "state"\n'
            '[domains."example.org"]\n'
            'certificate = "example.org.pem"\n'
            'key = "../keys/example.org.key"\n'
            'component_secret_file = "example.org.secret"\n',
            files=("example.org.pem", "../keys/example.org.key"),
        )
        config = load_config(path)
        domain = config.domain("example.org")
        self.assertEqual(config.state_dir, os.path.join(folder, "state"))
        self.assertEqual(domain.certificate, os.path.join(folder, "example.org.pem"))
        self.assertEqual(domain.key, os.path.join(folder, "../keys/example.org.key"))
        self.assertTrue(os.path.isfile(domain.key))
        self.assertEqual(
            domain.component_secret_file, os.path.join(folder, "example.org.secret")
        )

    def test_absolute(self):
        elsewhere = os.path.abspath(self.mktemp())
        os.makedirs(elsewhere)
        for name in ("cert.pem", "cert.key"):
            with open(os.path.join(elsewhere, name), "w") as f:
                f.write("placeholder\n")
        _, path = write_config(
            self,
            f'state_dir = "{elsewhere}/state"\n'
            '[domains."example.org"]\n'
            f'certificate = "{elsewhere}/cert.pem"\n'
            f'key = "{elsewhere}/cert.key"\n'
            f'component_secret_file = "{elsewhere}/secret"\n',
        )
        config = load_config(path)
        domain = config.domain("example.org")
        self.assertEqual(config.state_dir, os.path.join(elsewhere, "state"))
        self.assertEqual(domain.certificate, os.path.join(elsewhere, "cert.pem"))
        self.assertEqual(domain.key, os.path.join(elsewhere, "cert.key"))
        self.assertEqual(domain.component_secret_file, os.path.join(elsewhere, "secret"))

    def test_home(self):
        """
        C{~} stands for the home folder.
        """
        home = os.path.abspath(self.mktemp())
        self.patch(os, "environ", dict(os.environ, HOME=home))
        _, path = write_config(self, 'state_dir = "~/gateway-state"\n' + MINIMAL)
        self.assertEqual(load_config(path).state_dir, os.path.join(home, "gateway-state"))

    def test_component_secret_file_need_not_exist(self):
        """
        A component secret file that doesn't exist yet is accepted: the
        gateway writes a new secret there on first start.
        """
        folder, path = write_config(
            self, MINIMAL + 'component_secret_file = "later/example.org.secret"\n'
        )
        self.assertEqual(
            load_config(path).domain("example.org").component_secret_file,
            os.path.join(folder, "later", "example.org.secret"),
        )


#: Good values, as TOML, and what they load as: (key, TOML value, attribute
#: path, expected).
GOOD_VALUES = [
    ("dns.servers", '["192.0.2.53"]', ("dns", "servers"), (("192.0.2.53", 53),)),
    ("dns.servers", '["192.0.2.53:5353"]', ("dns", "servers"), (("192.0.2.53", 5353),)),
    ("dns.servers", '["[::1]:5353"]', ("dns", "servers"), (("::1", 5353),)),
    ("dns.servers", '["[2001:db8::53]"]', ("dns", "servers"), (("2001:db8::53", 53),)),
    ("dns.servers", '["2001:db8::53"]', ("dns", "servers"), (("2001:db8::53", 53),)),
    ("dns.servers", '["127.0.0.1:65535"]', ("dns", "servers"), (("127.0.0.1", 65535),)),
    ("dns.servers", "[]", ("dns", "servers"), ()),
    ("dns.timeout", "1", ("dns", "timeout"), 1),
    ("dns.timeout", "0.25", ("dns", "timeout"), 0.25),
    ("timeouts.connect", "0.001", ("timeouts", "connect"), 0.001),
    ("timeouts.authentication", "600", ("timeouts", "authentication"), 600),
    ("s2s.queue_limit", "1", ("s2s", "queue_limit"), 1),
    ("s2s.max_stanza_size", "10000", ("s2s", "max_stanza_size"), 10000),
    ("s2s.read_rate", "0", ("s2s", "read_rate"), 0),
    ("s2s.read_rate", "65536", ("s2s", "read_rate"), 65536),
    ("s2s.listen", "[]", ("s2s", "listen"), ()),
    ("s2s.listen", '"tcp:5269"', ("s2s", "listen"), ("tcp:5269",)),
    (
        "s2s.listen",
        "'tcp6:5269:interface=\\:\\:1'",
        ("s2s", "listen"),
        ("tcp6:5269:interface=\\:\\:1",),
    ),
    (
        "s2s.listen",
        '"tcp6:5269:interface=\\\\:\\\\:1"',
        ("s2s", "listen"),
        ("tcp6:5269:interface=\\:\\:1",),
    ),
    (
        "s2s.listen_direct_tls",
        '["tcp:5270:interface=0.0.0.0", "tcp6:5270"]',
        ("s2s", "listen_direct_tls"),
        ("tcp:5270:interface=0.0.0.0", "tcp6:5270"),
    ),
    (
        "components.listen",
        '"unix:/run/xmpp-gateway/components.sock:mode=600"',
        ("components", "listen"),
        ("unix:/run/xmpp-gateway/components.sock:mode=600",),
    ),
    ("policy.require_tls", "false", ("policy", "default", "require_tls"), False),
    ("log.level", '"warn"', ("log", "level"), "warn"),
    ("log.level", '"debug"', ("log", "level"), "debug"),
    ("log.level", '"error"', ("log", "level"), "error"),
]


def _toml_for(key, value):
    """
    A valid file with C{key} (a dotted key under one table) set to C{value}.
    """
    table, name = key.split(".")
    return f"{MINIMAL}[{table}]\n{name} = {value}\n"


class GoodValueTests(unittest.TestCase):
    """
    Each value in L{GOOD_VALUES} loads as expected.
    """


def _good_value_test(key, value, attributes, expected):
    def test(self):
        _, path = write_config(self, _toml_for(key, value))
        loaded = load_config(path)
        for attribute in attributes:
            loaded = getattr(loaded, attribute)
        self.assertEqual(loaded, expected)

    test.__doc__ = f"{key} = {value} loads as {expected!r}."
    return test


for _index, (_key, _value, _attributes, _expected) in enumerate(GOOD_VALUES):
    setattr(
        GoodValueTests,
        f"test_{_index:02d}_{_key.replace('.', '_')}",
        _good_value_test(_key, _value, _attributes, _expected),
    )


class PolicyOverrideTests(unittest.TestCase):
    """
    C{[policy.domains."NAME"]} overrides the default for one peer.
    """

    def test_override_inherits_default(self):
        """
        An override that doesn't set C{require_tls} takes the default's.
        """
        _, path = write_config(
            self,
            MINIMAL + "[policy]\nrequire_tls = false\n"
            '[policy.domains."strict.example"]\nrequire_tls = true\n'
            '[policy.domains."relaxed.example"]\n',
        )
        policy = load_config(path).policy
        self.assertEqual(
            policy,
            PolicyConfig(
                default=DomainPolicy(require_tls=False),
                domains=(
                    ("strict.example", DomainPolicy(require_tls=True)),
                    ("relaxed.example", DomainPolicy(require_tls=False)),
                ),
            ),
        )
        self.assertTrue(policy.for_domain("strict.example").require_tls)
        self.assertFalse(policy.for_domain("elsewhere.example").require_tls)

    def test_one_exception(self):
        """
        One domain allowed plaintext is enough for plaintext to be
        possible at all.
        """
        _, path = write_config(
            self, MINIMAL + '[policy.domains."legacy.example"]\nrequire_tls = false\n'
        )
        policy = load_config(path).policy
        self.assertFalse(policy.for_domain("legacy.example").require_tls)
        self.assertTrue(policy.for_domain("example.net").require_tls)
        self.assertTrue(policy.any_plaintext_allowed)


class ExampleConfigTests(unittest.TestCase):
    """
    The example in C{docs/examples/gateway.toml} loads as it stands.
    """

    def test_loads(self):
        config = load_config(EXAMPLE_CONFIG)
        self.assertIn("example.org", config.domain_names)
        self.assertTrue(config.s2s.listen)
        self.assertTrue(config.s2s.listen_direct_tls)
        self.assertIn(("127.0.0.1", 53), config.dns.servers)
        self.assertTrue(config.policy.default.require_tls)
        legacy = [name for name, policy in config.policy.domains if not policy.require_tls]
        self.assertTrue(legacy, "the example has no legacy domain without TLS")


# ---------------------------------------------------------------------------
# Errors


@dataclasses.dataclass(frozen=True)
class ErrorCase:
    """
    A configuration that must be refused.

    @ivar text: the file's content (L{str}, or L{bytes} to write as is).
    @ivar key: the dotted key the error must name.
    @ivar problem: the problem it must report; C{{folder}} stands for the
        configuration file's folder.  L{None} for any problem.
    @ivar files: placeholder files to create beside the configuration.
    """

    name: str
    text: object
    key: str
    problem: str | None
    files: tuple = ()


D = MINIMAL  # shorthand in the table below

ERROR_CASES = [
    # Unknown keys, everywhere.
    ErrorCase("unknown_top_level", "bogus = 1\n" + D, "bogus", "unknown key"),
    ErrorCase(
        "unknown_top_level_table", D + "[s2ss]\nlisten = []\n", "s2ss", "unknown key"
    ),
    ErrorCase(
        "unknown_s2s_key",
        D + '[s2s]\nlisen = ["tcp:5269"]\n',
        "s2s.lisen",
        "unknown key",
    ),
    ErrorCase(
        "unknown_components_key",
        D + '[components]\nlisten_tls = "tcp:5348"\n',
        "components.listen_tls",
        "unknown key",
    ),
    ErrorCase("unknown_dns_key", D + "[dns]\nserver = []\n", "dns.server", "unknown key"),
    ErrorCase("unknown_log_key", D + '[log]\nlevels = "warn"\n', "log.levels", "unknown key"),
    ErrorCase(
        "log_level_unknown",
        D + '[log]\nlevel = "warning"\n',
        "log.level",
        "must be one of 'debug', 'info', 'warn', 'error', not 'warning'",
    ),
    ErrorCase(
        "log_level_not_string", D + "[log]\nlevel = 2\n", "log.level", "must be a string, not an integer"
    ),
    ErrorCase(
        "unknown_timeouts_key",
        D + "[timeouts]\nidel = 60\n",
        "timeouts.idel",
        "unknown key",
    ),
    ErrorCase(
        "unknown_policy_key",
        D + "[policy]\nrequire_tsl = true\n",
        "policy.require_tsl",
        "unknown key",
    ),
    ErrorCase(
        "unknown_domain_key",
        D + 'certificat = "example.org.pem"\n',
        'domains."example.org".certificat',
        "unknown key",
    ),
    ErrorCase(
        "unknown_policy_domain_key",
        D + '[policy.domains."legacy.example"]\nrequire_tls = false\ndialback = true\n',
        'policy.domains."legacy.example".dialback',
        "unknown key",
    ),
    # Tables that aren't.
    ErrorCase("s2s_not_table", "s2s = 5269\n" + D, "s2s", "must be a table, not an integer"),
    ErrorCase(
        "domains_not_table", 'domains = "example.org"\n', "domains", "must be a table, not a string"
    ),
    ErrorCase(
        "domain_not_table",
        '[domains]\n"example.org" = true\n',
        'domains."example.org"',
        "must be a table, not a boolean",
    ),
    ErrorCase(
        "policy_domains_not_table",
        D + "[policy]\ndomains = []\n",
        "policy.domains",
        "must be a table, not an array",
    ),
    ErrorCase(
        "policy_domain_not_table",
        D + '[policy.domains]\n"legacy.example" = false\n',
        'policy.domains."legacy.example"',
        "must be a table, not a boolean",
    ),
    # state_dir.
    ErrorCase("state_dir_integer", "state_dir = 5\n" + D, "state_dir", "must be a string, not an integer"),
    ErrorCase("state_dir_boolean", "state_dir = true\n" + D, "state_dir", "must be a string, not a boolean"),
    ErrorCase("state_dir_empty", 'state_dir = ""\n' + D, "state_dir", "must not be empty"),
    # Endpoints.
    ErrorCase(
        "listen_integer",
        D + "[s2s]\nlisten = 5269\n",
        "s2s.listen",
        "must be a string or an array, not an integer",
    ),
    ErrorCase(
        "listen_array_of_integers",
        D + "[s2s]\nlisten = [5269]\n",
        "s2s.listen",
        "must list endpoint strings, not an integer",
    ),
    ErrorCase(
        "listen_unknown_endpoint_type",
        D + '[s2s]\nlisten = ["bogus:5269"]\n',
        "s2s.listen",
        "'bogus:5269' is not a listening endpoint: Unknown endpoint type: 'bogus'",
    ),
    ErrorCase(
        "listen_bad_port",
        D + '[s2s]\nlisten = "tcp:xmpp"\n',
        "s2s.listen",
        "'tcp:xmpp' is not a listening endpoint: "
        "invalid literal for int() with base 10: 'xmpp'",
    ),
    ErrorCase(
        "listen_direct_tls_bad",
        D + '[s2s]\nlisten_direct_tls = ["tcp:5270", "tcp:port"]\n',
        "s2s.listen_direct_tls",
        "'tcp:port' is not a listening endpoint: "
        "invalid literal for int() with base 10: 'port'",
    ),
    ErrorCase(
        "components_listen_bad",
        D + '[components]\nlisten = "nope:5347"\n',
        "components.listen",
        "'nope:5347' is not a listening endpoint: Unknown endpoint type: 'nope'",
    ),
    # Numbers.
    ErrorCase(
        "queue_limit_boolean",
        D + "[s2s]\nqueue_limit = true\n",
        "s2s.queue_limit",
        "must be an integer, not a boolean",
    ),
    ErrorCase(
        "queue_limit_float",
        D + "[s2s]\nqueue_limit = 1.5\n",
        "s2s.queue_limit",
        "must be an integer, not a number",
    ),
    ErrorCase(
        "queue_limit_string",
        D + '[s2s]\nqueue_limit = "100"\n',
        "s2s.queue_limit",
        "must be an integer, not a string",
    ),
    ErrorCase(
        "queue_limit_zero",
        D + "[s2s]\nqueue_limit = 0\n",
        "s2s.queue_limit",
        "must be greater than 0, not 0",
    ),
    ErrorCase(
        "queue_limit_negative",
        D + "[s2s]\nqueue_limit = -5\n",
        "s2s.queue_limit",
        "must be greater than 0, not -5",
    ),
    ErrorCase(
        "max_stanza_size_small",
        D + "[s2s]\nmax_stanza_size = 9999\n",
        "s2s.max_stanza_size",
        "must be greater than 9999, not 9999",
    ),
    ErrorCase(
        "read_rate_small",
        D + "[s2s]\nread_rate = 100\n",
        "s2s.read_rate",
        "must be 0 (no limit) or at least 1024 bytes a second, not 100",
    ),
    ErrorCase(
        "read_rate_negative",
        D + "[s2s]\nread_rate = -1\n",
        "s2s.read_rate",
        "must be 0 (no limit) or at least 1024 bytes a second, not -1",
    ),
    ErrorCase(
        "read_rate_string",
        D + '[s2s]\nread_rate = "1MB"\n',
        "s2s.read_rate",
        "must be an integer, not a string",
    ),
    ErrorCase(
        "max_stanza_size_boolean",
        D + "[s2s]\nmax_stanza_size = false\n",
        "s2s.max_stanza_size",
        "must be an integer, not a boolean",
    ),
    ErrorCase(
        "dns_timeout_zero",
        D + "[dns]\ntimeout = 0\n",
        "dns.timeout",
        "must be greater than 0, not 0",
    ),
    ErrorCase(
        "dns_timeout_boolean",
        D + "[dns]\ntimeout = true\n",
        "dns.timeout",
        "must be an integer or a number, not a boolean",
    ),
    ErrorCase(
        "dns_timeout_string",
        D + '[dns]\ntimeout = "5s"\n',
        "dns.timeout",
        "must be an integer or a number, not a string",
    ),
    ErrorCase(
        "connect_timeout_zero",
        D + "[timeouts]\nconnect = 0.0\n",
        "timeouts.connect",
        "must be greater than 0, not 0.0",
    ),
    ErrorCase(
        "connect_timeout_negative",
        D + "[timeouts]\nconnect = -1.5\n",
        "timeouts.connect",
        "must be greater than 0, not -1.5",
    ),
    ErrorCase(
        "authentication_timeout_negative",
        D + "[timeouts]\nauthentication = -30\n",
        "timeouts.authentication",
        "must be greater than 0, not -30",
    ),
    ErrorCase(
        "authentication_timeout_boolean",
        D + "[timeouts]\nauthentication = false\n",
        "timeouts.authentication",
        "must be an integer or a number, not a boolean",
    ),
    # Domains.
    ErrorCase("no_domains", 'state_dir = "state"\n', "domains", "at least one local domain is required"),
    ErrorCase("empty_domains", "[domains]\n", "domains", "at least one local domain is required"),
    ErrorCase(
        "domain_twice",
        '[domains."example.org"]\n[domains."Example.ORG."]\n',
        'domains."Example.ORG."',
        'names the same domain (example.org) as domains."example.org"; keep one of them',
    ),
    ErrorCase(
        "domain_twice_a_label",
        '[domains."xn--bcher-kva.example"]\n[domains."B\u00fccher.example"]\n',
        'domains."B\u00fccher.example"',
        'names the same domain (xn--bcher-kva.example) as domains."xn--bcher-kva.example";'
        " keep one of them",
    ),
    ErrorCase(
        "domain_not_idna2008",
        '[domains."\u2603.example"]\n',
        'domains."\u2603.example"',
        "'\u2603.example' is not a valid domain: Codepoint U+2603 at position 1 of '\u2603' not allowed",
    ),
    ErrorCase(
        "domain_with_localpart",
        '[domains."user@example.org"]\n',
        'domains."user@example.org"',
        "'user@example.org' is not a bare domain",
    ),
    ErrorCase(
        "domain_with_resource",
        '[domains."example.org/gateway"]\n',
        'domains."example.org/gateway"',
        "'example.org/gateway' is not a bare domain",
    ),
    ErrorCase("domain_empty", '[domains.""]\n', 'domains.""', "empty domain"),
    ErrorCase(
        "certificate_without_key",
        D + 'certificate = "example.org.pem"\n',
        'domains."example.org".key',
        "is required when the other of certificate/key is set",
        files=("example.org.pem",),
    ),
    ErrorCase(
        "key_without_certificate",
        D + 'key = "example.org.key"\n',
        'domains."example.org".certificate',
        "is required when the other of certificate/key is set",
        files=("example.org.key",),
    ),
    ErrorCase(
        "certificate_missing",
        D + 'certificate = "missing.pem"\nkey = "example.org.key"\n',
        'domains."example.org".certificate',
        "file '{folder}/missing.pem' does not exist",
        files=("example.org.key",),
    ),
    ErrorCase(
        "key_missing",
        D + 'certificate = "example.org.pem"\nkey = "missing.key"\n',
        'domains."example.org".key',
        "file '{folder}/missing.key' does not exist",
        files=("example.org.pem",),
    ),
    ErrorCase(
        "certificate_empty",
        D + 'certificate = ""\n',
        'domains."example.org".certificate',
        "must not be empty",
    ),
    ErrorCase(
        "certificate_not_string",
        D + "certificate = 1\n",
        'domains."example.org".certificate',
        "must be a string, not an integer",
    ),
    ErrorCase(
        "component_secret_and_file",
        D + 'component_secret = "0123456789abcdef"\ncomponent_secret_file = "secret"\n',
        'domains."example.org".component_secret',
        "give component_secret or component_secret_file, not both",
    ),
    ErrorCase(
        "component_secret_short",
        D + 'component_secret = "1234567"\n',
        'domains."example.org".component_secret',
        "is too short (at least 8 characters)",
    ),
    ErrorCase(
        "component_secret_empty",
        D + 'component_secret = ""\n',
        'domains."example.org".component_secret',
        "is too short (at least 8 characters)",
    ),
    ErrorCase(
        "component_secret_integer",
        D + "component_secret = 12345678\n",
        'domains."example.org".component_secret',
        "must be a string, not an integer",
    ),
    ErrorCase(
        "component_secret_file_empty",
        D + 'component_secret_file = ""\n',
        'domains."example.org".component_secret_file',
        "must not be empty",
    ),
    # DNS servers.
    ErrorCase(
        "dns_servers_string",
        D + '[dns]\nservers = "127.0.0.1"\n',
        "dns.servers",
        "must be an array, not a string",
    ),
    ErrorCase(
        "dns_servers_integer_entry",
        D + "[dns]\nservers = [53]\n",
        "dns.servers",
        "must list strings, not an integer",
    ),
    ErrorCase(
        "dns_servers_hostname",
        D + '[dns]\nservers = ["resolver.example.org"]\n',
        "dns.servers",
        "'resolver.example.org' is not an IP address with an optional port",
    ),
    ErrorCase(
        "dns_servers_port_zero",
        D + '[dns]\nservers = ["127.0.0.1:0"]\n',
        "dns.servers",
        "'127.0.0.1:0' is not an IP address with an optional port",
    ),
    ErrorCase(
        "dns_servers_port_too_big",
        D + '[dns]\nservers = ["127.0.0.1:65536"]\n',
        "dns.servers",
        "'127.0.0.1:65536' is not an IP address with an optional port",
    ),
    ErrorCase(
        "dns_servers_port_empty",
        D + '[dns]\nservers = ["127.0.0.1:"]\n',
        "dns.servers",
        "'127.0.0.1:' is not an IP address with an optional port",
    ),
    ErrorCase(
        "dns_servers_port_name",
        D + '[dns]\nservers = ["127.0.0.1:domain"]\n',
        "dns.servers",
        "'127.0.0.1:domain' is not an IP address with an optional port",
    ),
    ErrorCase(
        "dns_servers_bracket_no_colon",
        D + '[dns]\nservers = ["[::1]5353"]\n',
        "dns.servers",
        "'[::1]5353' is not an address[:port]",
    ),
    ErrorCase(
        "dns_servers_unclosed_bracket",
        D + '[dns]\nservers = ["[::1"]\n',
        "dns.servers",
        None,
    ),
    ErrorCase(
        "dns_servers_port_with_underscore",
        D + '[dns]\nservers = ["127.0.0.1:5_3"]\n',
        "dns.servers",
        "'127.0.0.1:5_3' is not an IP address with an optional port",
    ),
    ErrorCase(
        "dns_servers_port_with_space",
        D + '[dns]\nservers = ["127.0.0.1: 53"]\n',
        "dns.servers",
        "'127.0.0.1: 53' is not an IP address with an optional port",
    ),
    ErrorCase(
        "certificate_is_a_folder",
        '[domains."example.org"]\ncertificate = "certs"\nkey = "certs/k.key"\n',
        'domains."example.org".certificate',
        "'{folder}/certs' is a folder, not a file",
        files=("certs/k.key",),
    ),
    ErrorCase(
        "state_dir_date",
        "state_dir = 2026-01-01\n" + D,
        "state_dir",
        "must be a string, not a date or time",
    ),
    ErrorCase(
        "dns_servers_bad_ipv6",
        D + '[dns]\nservers = ["[::g]:53"]\n',
        "dns.servers",
        "'[::g]:53' is not an IP address with an optional port",
    ),
    ErrorCase(
        "dns_servers_second_entry_bad",
        D + '[dns]\nservers = ["127.0.0.1", "256.0.0.1"]\n',
        "dns.servers",
        "'256.0.0.1' is not an IP address with an optional port",
    ),
    # Policy.
    ErrorCase(
        "require_tls_string",
        D + '[policy]\nrequire_tls = "yes"\n',
        "policy.require_tls",
        "must be a boolean, not a string",
    ),
    ErrorCase(
        "require_tls_integer",
        D + "[policy]\nrequire_tls = 0\n",
        "policy.require_tls",
        "must be a boolean, not an integer",
    ),
    ErrorCase(
        "policy_domain_require_tls_string",
        D + '[policy.domains."legacy.example"]\nrequire_tls = "false"\n',
        'policy.domains."legacy.example".require_tls',
        "must be a boolean, not a string",
    ),
    ErrorCase(
        "policy_domain_twice",
        D + '[policy.domains."xn--bcher-kva.example"]\nrequire_dane = true\n'
        '[policy.domains."B\u00fccher.Example."]\nrequire_tls = false\n',
        'policy.domains."B\u00fccher.Example."',
        'names the same domain (xn--bcher-kva.example) as policy.domains."xn--bcher-kva.example";'
        " keep one of them",
    ),
    ErrorCase(
        "policy_pattern_twice",
        D + '[policy.domains."*.example.org"]\nrequire_tls = false\n'
        '[policy.domains."*.EXAMPLE.org"]\nrequire_tls = false\n',
        'policy.domains."*.EXAMPLE.org"',
        'names the same domain (*.example.org) as policy.domains."*.example.org"; keep one of them',
    ),
    ErrorCase(
        "policy_domain_with_localpart",
        D + '[policy.domains."admin@legacy.example"]\nrequire_tls = false\n',
        'policy.domains."admin@legacy.example"',
        "'admin@legacy.example' is not a bare domain",
    ),
    # The file as a whole.
    ErrorCase("not_utf8", b'[domains."caf\xe9.example"]\n', "", "is not UTF-8 text"),
]


class ConfigErrorTests(unittest.TestCase):
    """
    Each configuration in L{ERROR_CASES} is refused with a one-line
    L{ConfigError} naming the file, the key and the problem.  (One
    C{test_<name>} method is made per case.)
    """

    def assertRefused(self, path, key, problem):
        """
        Assert that loading C{path} fails with exactly C{key} and
        C{problem} (any, if L{None}), and a one-line message that gives
        both.
        """
        error = self.assertRaises(ConfigError, load_config, path)
        if problem is None:
            problem = error.problem
        self.assertEqual((error.path, error.key, error.problem), (path, key, problem))
        expected = f"{path}: {key}: {problem}" if key else f"{path}: {problem}"
        self.assertEqual(str(error), expected)
        self.assertNotIn("\n", str(error))
        return error

    def test_cases_named_uniquely(self):
        names = [case.name for case in ERROR_CASES]
        self.assertEqual(len(names), len(set(names)))

    def test_message_format(self):
        """
        The message is C{FILE: KEY: PROBLEM}, or C{FILE: PROBLEM} for the
        file as a whole.
        """
        self.assertEqual(str(ConfigError("g.toml", "s2s.listen", "bad")), "g.toml: s2s.listen: bad")
        self.assertEqual(str(ConfigError("g.toml", "", "bad")), "g.toml: bad")

    def test_missing_file(self):
        path = os.path.abspath(self.mktemp())
        self.assertRefused(path, "", "cannot read: No such file or directory")

    def test_folder(self):
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        self.assertRefused(path, "", "cannot read: Is a directory")

    def test_invalid_toml(self):
        """
        A syntax error is reported with the parser's own location.
        """
        for text in ['[domains."example.org"\n', D + "[s2s]\nlisten = \n", "a = 1\na = 2\n"]:
            try:
                tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                detail = str(e)
            else:
                self.fail(f"{text!r} parsed")
            _, path = write_config(self, text)
            self.assertRefused(path, "", f"is not valid TOML: {detail}")

    def test_unknown_key_after_valid_sections(self):
        """
        An unknown key is reported even when everything else is valid
        and set.
        """
        folder, path = write_config(
            self,
            FULL_CONFIG + "\n[extra]\n",
            files=("tls/example.org.pem", "tls/example.org.key"),
        )
        self.assertRefused(path, "extra", "unknown key")

    def test_parse_config_path(self):
        """
        L{parse_config} reports against the name it is given.
        """
        error = self.assertRaises(ConfigError, parse_config, "[domains]\n", "<test>", "/")
        self.assertEqual(str(error), "<test>: domains: at least one local domain is required")

    def test_non_finite_timeouts(self):
        """
        A timeout must be a finite number: C{nan} and C{inf} are TOML
        floats, but no use as a timeout.
        """
        for key in ("dns.timeout", "timeouts.connect", "timeouts.authentication"):
            for value in ("nan", "inf", "+inf"):
                _, path = write_config(self, _toml_for(key, value))
                error = self.assertRaises(ConfigError, load_config, path)
                self.assertEqual((error.path, error.key), (path, key))
                self.assertIn(value.lstrip("+"), error.problem)


def _error_test(case):
    def test(self):
        folder, path = write_config(self, case.text, files=case.files)
        problem = case.problem
        if problem is not None:
            problem = problem.format(folder=folder)
        self.assertRefused(path, case.key, problem)

    test.__doc__ = f"Refused: {case.key or 'the file'}: {case.problem or 'any problem'}"
    return test


for _case in ERROR_CASES:
    setattr(ConfigErrorTests, f"test_{_case.name}", _error_test(_case))


# ---------------------------------------------------------------------------
# The twistd command line


class TapOptionsTests(unittest.TestCase):
    """
    C{twistd xmpp-gateway --config FILE} loads the file before anything
    starts, and stops with one line on a bad one.
    """

    def setUp(self):
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def assertExits(self, arguments, message):
        options = tap.Options()
        exit = self.assertRaises(SystemExit, options.parseOptions, arguments)
        self.assertEqual(exit.code, 1)
        self.assertEqual(self.stderr.getvalue(), f"xmpp-gateway: {message}\n")

    def test_malformed(self):
        _, path = write_config(self, D + '[s2s]\nlisen = ["tcp:5269"]\n')
        self.assertExits(
            ["--config", path], f"configuration error: {path}: s2s.lisen: unknown key"
        )

    def test_invalid_toml(self):
        _, path = write_config(self, "[s2s\n")
        options = tap.Options()
        self.assertRaises(SystemExit, options.parseOptions, ["-c", path])
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertTrue(
            lines[0].startswith(f"xmpp-gateway: configuration error: {path}: is not valid TOML: "),
            lines[0],
        )

    def test_missing(self):
        path = os.path.abspath(self.mktemp())
        self.assertExits(
            ["--config", path],
            f"configuration error: {path}: cannot read: No such file or directory",
        )

    def test_valid(self):
        folder, path = write_config(self, MINIMAL)
        options = tap.Options()
        options.parseOptions(["--config", path])
        self.assertEqual(options.gateway_config, load_config(path))
        self.assertEqual(self.stderr.getvalue(), "")

    def test_default(self):
        """
        Without C{--config} the embedded default is used.
        """
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(options.gateway_config, default_config())
        self.assertEqual(self.stderr.getvalue(), "")



class EncodingTests(unittest.TestCase):
    def test_byte_order_mark(self):
        """
        A UTF-8 file that starts with a byte order mark (as some editors
        write) loads.
        """
        _, path = write_config(self, b"\xef\xbb\xbf" + MINIMAL.encode())
        self.assertEqual(load_config(path).domain_names, frozenset(["example.org"]))


class TrustPolicyTests(unittest.TestCase):
    """
    The trust policy keys: verifiers, decisive, pins, better than nothing,
    CN-ID, timeouts, and domain patterns.
    """

    KNOWN = frozenset(["pkix", "dialback", "pinned", "dane"])

    def parse(self, policy):
        return parse_config(MINIMAL + policy, "p.toml", "/nonexistent", known_verifiers=self.KNOWN)

    def refused(self, policy, key, problem):
        error = self.assertRaises(ConfigError, self.parse, policy)
        self.assertEqual((error.key, error.problem), (key, problem))
        self.assertEqual(str(error), f"p.toml: {key}: {problem}")

    def test_defaults(self):
        policy = self.parse("").policy.default
        self.assertEqual(policy.verifiers, ("pkix", "dialback"))
        self.assertEqual(
            (policy.require_tls, policy.allow_unauthenticated, policy.allow_cn_id,
             policy.decisive, policy.pins, policy.verifier_timeout),
            (True, False, False, (), (), 10.0),
        )
        self.assertIsNone(self.parse("").policy.trust_store)

    def test_full(self):
        pin = "AB:" + "cd" * 30 + "ef"
        config = self.parse(
            "[policy]\nverifiers = ['dane', 'pkix']\ndecisive = ['dane']\n"
            "allow_cn_id = true\nverifier_timeout = 2.5\n"
            f"pins = ['spki-sha256:{pin}']\n"
        )
        policy = config.policy.default
        self.assertEqual(policy.verifiers, ("dane", "pkix"))
        self.assertEqual(policy.decisive, ("dane",))
        self.assertTrue(policy.allow_cn_id)
        self.assertEqual(policy.verifier_timeout, 2.5)
        self.assertEqual(policy.pins, (("spki-sha256", "ab" + "cd" * 30 + "ef"),))

    def test_patterns(self):
        """
        An exact domain beats a pattern; the longest pattern wins; a pattern
        covers subdomains at any depth but not the domain itself.
        """
        config = self.parse(
            "[policy.domains.'*.example.org']\nverifiers = ['pkix']\n"
            "[policy.domains.'*.deep.example.org']\nverifiers = ['dane']\n"
            "[policy.domains.'exact.example.org']\nverifiers = ['dialback']\n"
        )
        policy = config.policy
        cases = {
            "a.example.org": ("pkix",),
            "a.b.example.org": ("pkix",),
            "x.deep.example.org": ("dane",),
            "exact.example.org": ("dialback",),
            "example.org": ("pkix", "dialback"),
            "notexample.org": ("pkix", "dialback"),
        }
        for domain, verifiers in cases.items():
            self.assertEqual(policy.for_domain(domain).verifiers, verifiers, domain)

    def test_allow_networks(self):
        import ipaddress

        config = parse_config(
            MINIMAL + "[dns]\nallow_networks = ['10.20.0.0/16', 'fd00::1/8']\n", "p.toml", "/x"
        )
        self.assertEqual(
            config.dns.allow_networks,
            (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("fd00::/8")),
        )
        self.assertEqual(parse_config(MINIMAL, "p.toml", "/x").dns.allow_networks, ())

    def test_require_certificate_outbound(self):
        self.assertFalse(self.parse("").policy.default.require_certificate_outbound)
        config = self.parse(
            "[policy]\nrequire_certificate_outbound = true\n"
            "[policy.domains.'legacy.example']\nrequire_certificate_outbound = false\n"
        )
        self.assertTrue(config.policy.default.require_certificate_outbound)
        self.assertFalse(config.policy.for_domain("legacy.example").require_certificate_outbound)
        self.refused(
            "[policy]\nrequire_certificate_outbound = 1\n",
            "policy.require_certificate_outbound",
            "must be a boolean, not an integer",
        )

    def test_spellings_of_one_domain(self):
        """
        Regression: a policy written for one spelling of a domain holds for
        every other (U-label or A-label, any case, a final dot, fullwidth
        dots), so a peer can't escape pins, C{require_dane}, C{decisive} or
        C{on_certificate_change = "refuse"} by claiming the other spelling.
        The same holds under a C{*.} pattern.
        """
        pin = "sha256:" + "ab" * 32
        strict = (
            "verifiers = ['dane', 'pkix']\nrequire_dane = true\ndecisive = ['dane']\n"
            f"pins = ['{pin}']\non_certificate_change = 'refuse'\n"
        )
        spellings = [
            "b\u00fccher.example",
            "B\u00dcCHER.Example.",
            "bu\u0308cher.example",
            "xn--bcher-kva.example",
            "XN--BCHER-KVA.EXAMPLE",
            "b\u00fccher\uff0eexample",
            "b\u00fccher\u3002example\u3002",
        ]
        for written in ("b\u00fccher.example", "xn--bcher-kva.example", "B\u00fccher.Example."):
            config = self.parse(f"[policy.domains.'{written}']\n{strict}")
            ((pattern, _),) = config.policy.domains
            self.assertEqual(pattern, "xn--bcher-kva.example", written)
            for claimed in spellings:
                policy = config.policy.for_domain(claimed)
                self.assertEqual(
                    (policy.require_dane, policy.decisive, policy.on_certificate_change,
                     len(policy.pins)),
                    (True, ("dane",), "refuse", 1),
                    (written, claimed),
                )
        config = self.parse(f"[policy.domains.'*.B\u00fccher.example']\n{strict}")
        self.assertEqual(config.policy.domains[0][0], "*.xn--bcher-kva.example")
        for claimed in ("xmpp.b\u00fccher.example", "XMPP.xn--bcher-kva.example."):
            self.assertTrue(config.policy.for_domain(claimed).require_dane, claimed)
        # IDNA2008: straße.de and strasse.de are two domains, as in DNS.
        config = self.parse(f"[policy.domains.'stra\u00dfe.de']\n{strict}")
        self.assertTrue(config.policy.for_domain("xn--strae-oqa.de").require_dane)
        self.assertFalse(config.policy.for_domain("strasse.de").require_dane)

    def test_local_domains_canonical(self):
        """
        Local domains may be written in any spelling; the gateway knows each
        by its canonical form.
        """
        config = parse_config(
            '[domains."B\u00fccher.Example."]\n[domains."EXAMPLE.org"]\n', "p.toml", "/nonexistent"
        )
        self.assertEqual(config.domain_names, {"xn--bcher-kva.example", "example.org"})

    def test_override_inherits(self):
        config = self.parse(
            "[policy]\nallow_cn_id = true\nverifiers = ['pkix']\n"
            "[policy.domains.'x.example']\nrequire_tls = true\n"
        )
        override = config.policy.for_domain("x.example")
        self.assertEqual((override.allow_cn_id, override.verifiers), (True, ("pkix",)))

    def test_trust_store(self):
        folder, path = write_config(
            self, MINIMAL + "[policy]\ntrust_store = 'ca.pem'\n", files=("ca.pem",)
        )
        config = load_config(path)
        self.assertEqual(config.policy.trust_store, os.path.join(folder, "ca.pem"))

    def test_refusals(self):
        cases = [
            ("[policy]\nverifiers = ['pkix', 'magic']\n", "policy.verifiers",
             "unknown verifier 'magic' (known: dane, dialback, pinned, pkix)"),
            ("[policy]\nverifiers = ['pkix', 'pkix']\n", "policy.verifiers", "names a verifier twice"),
            ("[policy]\nverifiers = [1]\n", "policy.verifiers", "must list verifier names, not an integer"),
            ("[policy]\nverifiers = []\n", "policy.verifiers",
             "is empty, so no peer could authenticate (or set allow_unauthenticated)"),
            ("[policy]\ndecisive = ['dane']\n", "policy.decisive",
             "'dane' is not in this policy's verifiers"),
            ("[policy]\npins = ['md5:00']\n", "policy.pins",
             "'md5:00' is not a pin: write sha256:<64 hex digits> (the certificate) "
             "or spki-sha256:<64 hex digits> (its public key)"),
            ("[policy]\npins = ['sha256:" + "g" * 64 + "']\n", "policy.pins", None),
            ("[policy]\nallow_unauthenticated = true\nrequire_tls = false\n",
             "policy.allow_unauthenticated",
             "needs require_tls = true: an unauthenticated peer is only better than nothing over TLS"),
            ("[policy]\nverifier_timeout = 0\n", "policy.verifier_timeout", "must be greater than 0, not 0"),
            ("[policy]\nallow_cn_id = 'yes'\n", "policy.allow_cn_id", "must be a boolean, not a string"),
            ("[policy.domains.'*.exa mple.org']\n", 'policy.domains."*.exa mple.org"',
             "'exa mple.org' is not a valid domain: Codepoint U+0020 at position 4 of 'exa mple'"
             " not allowed"),
            ("[policy.domains.'x.example']\nverifiers = ['nope']\n",
             'policy.domains."x.example".verifiers',
             "unknown verifier 'nope' (known: dane, dialback, pinned, pkix)"),
            ("[policy]\nrequire_dane = true\n", "policy.require_dane",
             'needs "dane" in this policy\'s verifiers'),
            ("[policy]\ntrust_store = 'missing.pem'\n", "policy.trust_store",
             "file '/nonexistent/missing.pem' does not exist"),
        ]
        for policy, key, problem in cases:
            error = self.assertRaises(ConfigError, self.parse, policy)
            self.assertEqual(error.key, key, policy)
            if problem is not None:
                self.assertEqual(error.problem, problem, policy)

    def test_installed_verifiers_by_default(self):
        """
        Without an explicit list, the names are those of the installed
        verifier plugins.
        """
        error = self.assertRaises(
            ConfigError, parse_config, MINIMAL + "[policy]\nverifiers = ['magic']\n", "p.toml", "/x"
        )
        self.assertIn("unknown verifier 'magic' (known: dane, dialback, pinned, pkix, posh)", str(error))


class AdminAndPOSHConfigTests(unittest.TestCase):
    def parse(self, text):
        return parse_config(MINIMAL + text, "c.toml", "/base", known_verifiers=frozenset(["pkix"]))

    def test_defaults(self):
        config = self.parse("")
        self.assertEqual(config.admin.listen, ("tcp:5280:interface=127.0.0.1",))
        self.assertIsNone(config.admin.token_file)
        self.assertEqual(config.posh.listen, ())
        self.assertEqual((config.posh.timeout, config.posh.max_size, config.posh.expires),
                         (10.0, 65536, 86400))
        self.assertEqual(config.policy.default.on_certificate_change, "warn")

    def test_values(self):
        config = self.parse(
            "[admin]\nlisten = []\ntoken_file = 'secret/token'\n"
            "[posh]\nlisten = 'tcp:8443:interface=127.0.0.1'\ntimeout = 2\nmax_size = 1024\n"
            "[policy.domains.'x.example']\non_certificate_change = 'refuse'\n"
        )
        self.assertEqual(config.admin.listen, ())
        self.assertEqual(config.admin.token_file, "/base/secret/token")
        self.assertEqual(config.posh.listen, ("tcp:8443:interface=127.0.0.1",))
        self.assertEqual(config.policy.for_domain("x.example").on_certificate_change, "refuse")

    def test_refusals(self):
        for text, key, problem in [
            ("[admin]\nlisten = 'nonsense:1'\n", "admin.listen", None),
            ("[admin]\nport = 1\n", "admin.port", "unknown key"),
            ("[dns]\nallow_networks = ['10.0.0.0/33']\n", "dns.allow_networks",
             "'10.0.0.0/33' is not a network (write 10.0.0.0/8, fd00::/8, ...)"),
            ("[dns]\nallow_networks = '10.0.0.0/8'\n", "dns.allow_networks", None),
            ("[posh]\nmax_size = 0\n", "posh.max_size", "must be greater than 0, not 0"),
            ("[posh]\nexpires = 1.5\n", "posh.expires", "must be an integer, not a number"),
            ("[policy]\non_certificate_change = 'ignore'\n", "policy.on_certificate_change",
             "must be \"warn\" or \"refuse\", not 'ignore'"),
        ]:
            error = self.assertRaises(ConfigError, self.parse, text)
            self.assertEqual(error.key, key, text)
            if problem:
                self.assertEqual(error.problem, problem, text)


class DiscoveryTests(unittest.TestCase):
    def test_parsing_discovers_no_plugins(self):
        """
        Parsing reads the text and nothing else: the verifier plugins are
        found once, at start-up (gateway.app.tap), which passes their names;
        by default a policy may name the gateway's own verifiers.
        """
        from gateway.app.config import builtin_verifiers
        from gateway.verifiers import registry

        def discovering(*args):
            raise AssertionError("plugins looked for while parsing")

        self.patch(registry, "getPlugins", discovering)
        config = parse_config(
            MINIMAL + '[policy]\nverifiers = ["dane", "pkix", "posh", "pinned", "dialback"]\n',
            "d.toml", "/nonexistent",
        )
        self.assertEqual(config.policy.default.verifiers, ("dane", "pkix", "posh", "pinned", "dialback"))
        self.assertEqual(builtin_verifiers(), {"dane", "dialback", "pinned", "pkix", "posh"})
        with self.assertRaises(ConfigError):
            parse_config(MINIMAL + '[policy]\nverifiers = ["known-peers"]\n', "d.toml", "/nonexistent")
        config = parse_config(
            MINIMAL + '[policy]\nverifiers = ["known-peers"]\n', "d.toml", "/nonexistent",
            known_verifiers=frozenset({"known-peers"}),
        )
        self.assertEqual(config.policy.default.verifiers, ("known-peers",))
