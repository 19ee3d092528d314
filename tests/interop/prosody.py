"""
Debian's Prosody (0.12), run by the tests with a generated configuration.

Quirks, from running it here:
  - only ever start it as C{prosody --config FILE}: any other argument
    starts a server with C{/etc/prosody/prosody.cfg.lua} on 0.0.0.0;
  - as root it needs C{run_as_root = true};
  - its resolver is libunbound (C{lua-unbound}), pointed at the tests' DNS
    server with C{forward = "127.0.0.1@PORT"}; libunbound answers
    NXDOMAIN for C{.test} names unless told C{local-zone: "test."
    transparent};
  - with Nagle on, each inbound handshake waits on a delayed ACK; off here.
"""

import os
import subprocess

from tests.interop.peers import require_program, stop_process, wait_for_port


def _lua(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(_lua(v) for v in value) + " }"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'["{k}"] = {_lua(v)}' for k, v in value.items()) + " }"
    raise TypeError(value)


class ProsodyServer:
    """
    One Prosody, serving one component domain over s2s.

    @param folder: where its configuration, data and log go.
    @param address: the loopback address it listens on.
    @param component_domain: the XEP-0114 component host it serves; the
        component's stanzas go out over s2s from this domain.
    @param certificate_file, key_file: the component domain's certificate.
    @param ca_file: the CA it trusts.
    @param dns_port: the tests' DNS server on 127.0.0.1.
    @param secure_auth: C{s2s_secure_auth}: refuse peers whose certificate
        doesn't verify.
    @param extra: more top-level options, overriding the ones above.
    @param log_level: the least severe log level written to C{prosody.log}.
    """

    def __init__(self, folder, address, s2s_port, component_port, component_domain,
                 component_secret, certificate_file, key_file, ca_file, dns_port,
                 secure_auth=True, extra=None, log_level="debug"):
        self.folder = folder
        self.address = address
        self.s2s_port = s2s_port
        self.component_port = component_port
        self.component_domain = component_domain
        self.component_secret = component_secret
        self.certificate_file = certificate_file
        self.key_file = key_file
        self.ca_file = ca_file
        self.dns_port = dns_port
        self.secure_auth = secure_auth
        self.extra = extra or {}
        self.log_level = log_level
        self.process = None
        self.log_file = os.path.join(folder, "prosody.log")

    def configuration(self):
        ssl = {"certificate": self.certificate_file, "key": self.key_file, "cafile": self.ca_file}
        options = {
            "daemonize": False,
            "pidfile": os.path.join(self.folder, "prosody.pid"),
            "data_path": os.path.join(self.folder, "data"),
            "run_as_root": True,
            "interfaces": [self.address],
            "c2s_ports": [],
            "s2s_interfaces": [self.address],
            "s2s_ports": [self.s2s_port],
            "component_interfaces": [self.address],
            "component_ports": [self.component_port],
            "s2s_require_encryption": True,
            "s2s_secure_auth": self.secure_auth,
            "ssl": ssl,
            "modules_enabled": ["tls", "saslauth", "dialback", "disco"],
            "network_settings": {"nagle": False},
            "unbound": {
                "resolvconf": False,
                "hoststxt": False,
                "forward": f"127.0.0.1@{self.dns_port}",
                "options": {"local-zone:": "test. transparent"},
            },
            **self.extra,
        }
        lines = [f"{name} = {_lua(value)}" for name, value in options.items()]
        lines.append(
            f'log = {{ {{ levels = {{ min = {_lua(self.log_level)} }}, to = "file", filename = '
            f"{_lua(self.log_file)} }} }}"
        )
        # Prosody wants at least one host of its own; the tests federate as
        # the component.
        lines.append(f"VirtualHost {_lua('host.' + self.component_domain)}")
        lines.append(f"    ssl = {_lua(ssl)}")
        lines.append(f"Component {_lua(self.component_domain)}")
        lines.append(f"    component_secret = {_lua(self.component_secret)}")
        lines.append(f"    ssl = {_lua(ssl)}")
        return "\n".join(lines) + "\n"

    async def start(self):
        prosody = require_program("prosody", "prosody")
        os.makedirs(os.path.join(self.folder, "data"), exist_ok=True)
        path = os.path.join(self.folder, "prosody.cfg.lua")
        with open(path, "w") as f:
            f.write(self.configuration())
        self.process = subprocess.Popen(
            [prosody, "--config", path],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=open(os.path.join(self.folder, "prosody.stdout"), "w"),
            stderr=subprocess.STDOUT,
        )
        await wait_for_port(self.address, self.component_port, 30, self.process, self.log_tail)

    def log_tail(self, lines=40):
        text = []
        for name in ("prosody.stdout", "prosody.log"):
            try:
                with open(os.path.join(self.folder, name), errors="replace") as f:
                    text.append("".join(f.readlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(text)

    def log_text(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        return stop_process(self.process)
