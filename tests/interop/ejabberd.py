"""
Debian's ejabberd (23.01), run by the tests as a child process with a
generated configuration, bound to one loopback address.

Quirks, from running it here (Debian 12, Erlang/OTP 25, as root):

  - C{/usr/sbin/ejabberdctl} is not used.  As root it runs erl through
    C{su ejabberd} (C{INSTALLUSER=ejabberd} is set in the script, not
    read from the environment), and the ejabberd user can't read a test's
    folder (seen: "File operation error: eacces. Target: .../inetrc");
    it sources C{/etc/ejabberd/ejabberdctl.cfg} (a link to
    C{/etc/default/ejabberd}) unless given C{--ctl-config}; it sets
    C{ERL_INETRC} to C{$CONFIG_DIR/inetrc} whatever the environment says;
    and it always names the node, which starts epmd, listening on all
    interfaces (port 4369) unless C{ERL_EPMD_ADDRESS} is set.  Instead
    this module runs the command line that C{ejabberdctl foreground}
    builds, directly::

        erl -noinput +K true +P 250000 -mnesia dir '"SPOOL"' \\
            -eval 'inet_db:set_recurse(false)' -s ejabberd

    with the environment it exports: C{EJABBERD_CONFIG_PATH},
    C{EJABBERD_LOG_PATH} (its folder is where C{ejabberd.log},
    C{error.log} and C{crash.log} go), C{EJABBERD_PID_PATH}, C{ERL_LIBS}
    (C{/usr/lib/x86_64-linux-gnu}, where Debian puts
    C{ejabberd-23.01/ebin}; the other applications are under
    C{/usr/lib/erlang/lib}), C{ERL_INETRC}, C{ERL_CRASH_DUMP}, and
    C{HOME} = the test's folder (for C{.erlang.cookie}).  ejabberd does not
    mind running as root.  The environment is built from scratch, so an
    C{ERL_FLAGS} / C{ERL_AFLAGS} of the caller can't add C{-name}.
  - Without C{-name}/C{-sname} the node is C{nonode@nohost} and Erlang
    distribution is off: no epmd is started, nothing listens but the
    listeners of the configuration, and Mnesia keeps its schema in the
    test's spool folder.  That is the default here
    (C{distribution=False}).  With C{distribution=True} the node gets a
    unique name (C{ejabberd-<random>@localhost}), listens for
    distribution on a free port of 127.0.0.1 (C{-kernel
    inet_dist_use_interface}; seen: only 127.0.0.1:PORT), and uses no
    epmd (C{-erl_epmd_port PORT -start_epmd false}, OTP 23.1+, what
    ejabberdctl does for C{ERL_DIST_PORT}), with a random cookie (also in
    C{.erlang.cookie} in the folder); L{EjabberdServer.ctl_command} gives
    the command line of an ejabberdctl command against it.  Either way
    no epmd is ever started (checked: none runs during or after), so
    L{EjabberdServer.stop} has none to stop.  C{ERL_EPMD_ADDRESS=127.0.0.1}
    is set all the same.
  - DNS, SRV step: ejabberd looks up C{_xmpps-server._tcp.DOMAIN}
    (XEP-0368) and C{_xmpp-server._tcp.DOMAIN} with Erlang's own resolver
    (C{inet_res:getbyname}); ejabberd has no option naming a DNS server,
    but the resolver reads the file named by C{ERL_INETRC}:
    C{{nameserver, {127,0,0,1}, PORT}} takes a port, and
    C{{resolv_conf, ""}} keeps it from also reading C{/etc/resolv.conf}
    (whose name server is outside loopback: it must never be asked).
  - DNS, address step: the SRV target (or, without SRV, the domain
    itself) is resolved by p1_xmpp 1.6.1 with C{net:getaddrinfo/2}, the C
    library's C{getaddrinfo}: it ignores C{ERL_INETRC} and reads
    C{/etc/hosts} and C{/etc/resolv.conf}.  So the address records of the
    tests' DNS server are never asked for (seen: the SRV query arrives,
    then "DNS lookup failed: enoname" with no A query).  Two ways that
    work: an SRV target that is an address literal (an SRV record with
    target C{127.0.0.1}: C{getaddrinfo} parses it without DNS), or a
    name given in C{hosts}.  For the latter, and so that
    C{getaddrinfo} never asks the machine's name server, ejabberd runs in
    a private mount namespace (C{unshare --mount --propagation private},
    root only; the PID stays erl's, since unshare and sh C{exec}) where
    C{/etc/hosts} is bind-mounted from the test folder (the machine's
    entries plus C{hosts}; L{EjabberdServer.set_host} rewrites it in
    place, and C{getaddrinfo} rereads it on every lookup) and
    C{/etc/resolv.conf} from a file naming 127.255.255.254, where nothing
    listens: unknown names fail at once.  C{isolate=False} turns that off.
  - Erlang/OTP 25's resolver drops a reply whose RD bit differs from the
    query's (C{{error, {unknown, Msg}}}, seen by ejabberd as a failed
    lookup), and Twisted's DNS server (the tests' C{LoopbackDNSServer})
    answers with RD clear whatever the query said.  C{-eval
    'inet_db:set_recurse(false)'} before C{-s ejabberd} makes the queries
    go out with RD clear too (an inetrc has no such option: C{{recurse,
    false}} there is a "syntax error").
  - C{s2s_use_starttls} defaults to C{false} in 23.01; set to
    C{required} here (seen: C{<starttls><required/></starttls>} offered).
    C{ca_file} is the CA ejabberd verifies peers with; C{certfiles} takes
    the certificate (with its chain) and key files.  C{acme} is turned off
    (C{auto: false}) so nothing tries to reach an ACME server.
  - SASL EXTERNAL: ejabberd checks the key purpose of the certificate the
    initiating server presents as TLS client.  A certificate with only
    the serverAuth EKU fails ("Failed inbound s2s EXTERNAL authentication
    ...: unsupported certificate purpose"), and ejabberd falls back to
    dialback; with serverAuth and clientAuth EKUs (C{CertificateAuthority.
    issue(..., eku=(SERVER_AUTH, CLIENT_AUTH))}) EXTERNAL succeeds (seen
    between two of these servers).
  - Outgoing s2s connections are bound to the server's own address
    (C{outgoing_s2s_ipv4_address}; seen: they come from C{address}).
    C{outgoing_s2s_families: [ipv4]} is set too, but p1_xmpp 1.6.1 doesn't
    consult it: it connects to whatever C{getaddrinfo} returns.  A failed
    outgoing connection is not retried for C{s2s_max_retry_delay} (300 s
    by default; 5 s here): stanzas for that domain bounce meanwhile with
    C{remote-server-not-found}.
  - The configuration is written as JSON, which ejabberd's YAML parser
    reads (YAML 1.2 is a superset of JSON), so no YAML library is needed.
  - Startup takes about 1.1-1.6 s on this machine (2 cores), two at once
    too, until both listeners are logged and accept connections (ejabberd
    itself logs "started ... in 0.7-1.0s"); a bad option or a port in use
    makes it exit with status 1 in about 1 s, and L{EjabberdServer.start}
    raises with the log's last lines.  SIGTERM stops it (Erlang runs
    C{init:stop()}) in about 1.1 s, exit status 0.
"""

import json
import os
import secrets
import socket

from twisted.internet import defer, error, protocol, task

ERL = "/usr/bin/erl"
ERL_LIBS = "/usr/lib/x86_64-linux-gnu"
EJABBERD_EBIN = os.path.join(ERL_LIBS, "ejabberd-23.01", "ebin")
UNSHARE = "/usr/bin/unshare"
# glibc's resolver inside the namespace: a loopback address where nothing
# listens, so names not in its /etc/hosts fail at once, off the machine never.
RESOLV_CONF = "nameserver 127.255.255.254\noptions timeout:1 attempts:1\n"


def require_ejabberd():
    """
    The path of C{erl}, once checked that ejabberd's Erlang application is
    there; skip the test when it is missing, except under CI (C{CI=true}),
    where a missing peer is a failure.
    """
    ebin = _ejabberd_ebin()
    if not os.path.exists(ERL) or ebin is None:
        message = (
            "ejabberd is not installed (Debian package ejabberd; tools/install-peers "
            "installs the interoperability peers)"
        )
        if os.environ.get("CI") == "true":
            raise AssertionError(message)
        from twisted.trial.unittest import SkipTest

        raise SkipTest(message)
    return ERL


def _ejabberd_ebin():
    if os.path.exists(os.path.join(EJABBERD_EBIN, "ejabberd.app")):
        return EJABBERD_EBIN
    try:
        names = sorted(os.listdir(ERL_LIBS))
    except OSError:
        return None
    for name in reversed(names):
        ebin = os.path.join(ERL_LIBS, name, "ebin")
        if name.startswith("ejabberd-") and os.path.exists(os.path.join(ebin, "ejabberd.app")):
            return ebin
    return None


def _free_port(address):
    s = socket.socket()
    try:
        s.bind((address, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _erlang_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _erlang_address(address):
    return "{" + ",".join(str(int(part)) for part in address.split(".")) + "}"


class _Output(protocol.ProcessProtocol):
    """
    Writes the child's stdout and stderr to a file; fires C{ended} with the
    exit status when it has exited.
    """

    def __init__(self, path):
        self.file = open(path, "ab")
        self.ended = defer.Deferred()
        self.status = None

    def outReceived(self, data):
        self.file.write(data)
        self.file.flush()

    errReceived = outReceived

    def processEnded(self, reason):
        self.file.close()
        value = reason.value
        self.status = getattr(value, "exitCode", None)
        if self.status is None:
            self.status = -(getattr(value, "signal", None) or 0)
        self.ended.callback(self.status)


class EjabberdServer:
    """
    One ejabberd serving C{domain}, with a XEP-0114 component for
    C{component_domain}, federating over s2s on C{address} only.

    @param folder: where its configuration, Mnesia spool, logs, pid file,
        inetrc and Erlang cookie go (created when missing).
    @param address: the loopback address of its listeners and of its
        outgoing s2s connections.
    @param s2s_port: its C{ejabberd_s2s_in} port (STARTTLS required).
    @param component_port: its C{ejabberd_service} (XEP-0114) port.
    @param domain: its one virtual host.
    @param component_domain, component_secret: the component that may
        attach.
    @param certificate_file, key_file: PEM files ejabberd presents for its
        domains (C{certfiles}); the certificate file may hold the chain.
    @param ca_file: the CA file it verifies peers' certificates with.
    @param dns_server: C{(host, port)} of the DNS server ejabberd asks for
        SRV records, or L{None} for none.  Address records are not asked
        for there: publish SRV targets as address literals, or give the
        names in C{hosts} (see the module docstring).
    @param extra_options: top-level options that replace the generated
        ones (the value L{None} removes an option), e.g.
        C{{"s2s_max_retry_delay": 60, "loglevel": "debug"}}.
    @param hosts: C{{name: address or [addresses]}} for the C{/etc/hosts}
        ejabberd sees (its address lookups of SRV targets and domains go
        there, not to C{dns_server}); needs C{isolate}.
    @param isolate: run it in a private mount namespace (root only) with its
        own C{/etc/hosts} and C{/etc/resolv.conf} (see the module
        docstring), so that no address lookup leaves loopback.
    @param distribution: run as a named Erlang node (see the module
        docstring); off by default.
    @param startup_timeout: seconds L{start} waits for the ports.

    After L{start}: C{pid} (erl's), C{running}, C{started_seconds}, and
    with C{distribution}, C{node} and C{dist_port}.  Files: C{config_path},
    C{log_path} (C{ejabberd.log}), C{inetrc_path}, C{hosts_path},
    C{console_path} (what erl printed), C{spool_dir}, C{logs_dir}.
    """

    def __init__(self, folder, address="127.0.0.7", s2s_port=5269, component_port=5347,
                 domain="ejabberd.test", component_domain="svc.ejabberd.test",
                 component_secret="secret", certificate_file=None, key_file=None,
                 ca_file=None, dns_server=None, extra_options=None, hosts=None,
                 isolate=True, distribution=False, startup_timeout=60.0):
        if not address.startswith("127."):
            raise ValueError(f"{address} is not a loopback address")
        self.folder = os.path.abspath(folder)
        self.address = address
        self.s2s_port = s2s_port
        self.component_port = component_port
        self.domain = domain
        self.component_domain = component_domain
        self.component_secret = component_secret
        self.certificate_file = certificate_file
        self.key_file = key_file
        self.ca_file = ca_file
        self.dns_server = dns_server
        self.extra_options = dict(extra_options or {})
        self.hosts = {name: [a] if isinstance(a, str) else list(a)
                      for name, a in (hosts or {}).items()}
        self.isolate = isolate
        if self.hosts and not isolate:
            raise ValueError("hosts needs isolate=True")
        self.distribution = distribution
        self.startup_timeout = startup_timeout
        self.node = None
        self.dist_port = None
        self.process = None
        self.started_seconds = None
        self._output = None
        self._reactor = None
        self._cookie = None
        self.spool_dir = os.path.join(self.folder, "spool")
        self.logs_dir = os.path.join(self.folder, "logs")
        self.config_path = os.path.join(self.folder, "ejabberd.yml")
        self.inetrc_path = os.path.join(self.folder, "inetrc")
        self.hosts_path = os.path.join(self.folder, "hosts")
        self.resolv_path = os.path.join(self.folder, "resolv.conf")
        self.pid_path = os.path.join(self.folder, "ejabberd.pid")
        self.log_path = os.path.join(self.logs_dir, "ejabberd.log")
        self.console_path = os.path.join(self.folder, "console.log")

    # Configuration

    def options(self):
        """
        The top-level options of the generated C{ejabberd.yml}.
        """
        tls = ["no_sslv3", "no_tlsv1", "no_tlsv1_1", "cipher_server_preference",
               "no_compression"]
        options = {
            "hosts": [self.domain],
            "loglevel": "info",
            "log_rotate_count": 0,
            "hide_sensitive_log_data": False,
            "certfiles": [f for f in (self.certificate_file, self.key_file) if f],
            "ca_file": self.ca_file,
            "s2s_use_starttls": "required",
            "s2s_protocol_options": tls,
            "s2s_ciphers": "HIGH:!aNULL:!eNULL:!3DES:@STRENGTH",
            "s2s_access": "all",
            "s2s_dns_timeout": 5,
            "s2s_dns_retries": 1,
            "s2s_max_retry_delay": 5,
            "outgoing_s2s_families": ["ipv4"],
            "outgoing_s2s_ipv4_address": self.address,
            "outgoing_s2s_timeout": 10,
            "acme": {"auto": False},
            "auth_method": ["internal"],
            "listen": [
                {
                    "port": self.s2s_port,
                    "ip": self.address,
                    "module": "ejabberd_s2s_in",
                    "max_stanza_size": 524288,
                },
                {
                    "port": self.component_port,
                    "ip": self.address,
                    "module": "ejabberd_service",
                    "hosts": {self.component_domain: {"password": self.component_secret}},
                },
            ],
            "acl": {"local": {"user_regexp": ""}},
            "access_rules": {"local": {"allow": "local"}},
            "modules": {
                "mod_s2s_dialback": {},
                "mod_disco": {},
                "mod_ping": {},
            },
        }
        if not options["certfiles"]:
            del options["certfiles"]
        if self.ca_file is None:
            del options["ca_file"]
        for name, value in self.extra_options.items():
            if value is None:
                options.pop(name, None)
            else:
                options[name] = value
        return options

    def configuration(self):
        """
        The text of C{ejabberd.yml} (JSON, which is YAML).
        """
        return json.dumps(self.options(), indent=2) + "\n"

    def inetrc(self):
        """
        The text of the Erlang resolver's configuration (C{ERL_INETRC}).
        """
        lines = ['{resolv_conf, ""}.']
        if self.dns_server is not None:
            host, port = self.dns_server
            lines.append(f"{{nameserver, {_erlang_address(host)}, {int(port)}}}.")
            lines.append("{lookup, [file, dns]}.")
        else:
            lines.append("{lookup, [file]}.")
        return "\n".join(lines) + "\n"

    def hosts_file(self):
        """
        The text of the C{/etc/hosts} ejabberd sees: the machine's, then
        C{hosts}.
        """
        try:
            with open("/etc/hosts") as f:
                text = f.read()
        except OSError:
            text = "127.0.0.1 localhost\n"
        if not text.endswith("\n"):
            text += "\n"
        for name, addresses in self.hosts.items():
            for address in addresses:
                text += f"{address} {name}\n"
        return text

    def set_host(self, name, address):
        """
        Make C{name} resolve to C{address} (a string, a list of them, or
        L{None} to remove it) in ejabberd's C{/etc/hosts}, also while it
        runs.
        """
        if not self.isolate:
            raise ValueError("hosts needs isolate=True")
        if address is None:
            self.hosts.pop(name, None)
        else:
            self.hosts[name] = [address] if isinstance(address, str) else list(address)
        if os.path.exists(self.hosts_path):
            # Rewrite in place: the bind mount holds this inode.
            with open(self.hosts_path, "r+") as f:
                f.write(self.hosts_file())
                f.truncate()

    def environment(self):
        """
        The environment of the C{erl} process (from scratch).
        """
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.folder,
            "LANG": "C.UTF-8",
            "EJABBERD_CONFIG_PATH": self.config_path,
            "EJABBERD_LOG_PATH": self.log_path,
            "EJABBERD_PID_PATH": self.pid_path,
            "CONTRIB_MODULES_PATH": os.path.join(self.folder, "modules"),
            "ERL_LIBS": ERL_LIBS,
            "ERL_INETRC": self.inetrc_path,
            "ERL_CRASH_DUMP": os.path.join(self.logs_dir, "erl_crash.dump"),
            "ERL_CRASH_DUMP_BYTES": "0",
            "ERL_MAX_PORTS": "32000",
            "ERL_MAX_ETS_TABLES": "1400",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def command(self):
        """
        The C{erl} command line (what C{ejabberdctl foreground} runs).
        """
        argv = [ERL, "-noinput", "+K", "true", "+P", "250000"]
        if self.distribution:
            argv += [
                "-sname", self.node,
                "-setcookie", self._cookie,
                "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
                "-erl_epmd_port", str(self.dist_port),
                "-start_epmd", "false",
            ]
        argv += [
            "-mnesia", "dir", _erlang_string(self.spool_dir),
            "-eval", "inet_db:set_recurse(false)",
            "-s", "ejabberd",
        ]
        if self.isolate:
            argv = [
                UNSHARE, "--mount", "--propagation", "private", "/bin/sh", "-c",
                'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf'
                ' && shift 2 && exec "$@"',
                "sh", self.hosts_path, self.resolv_path, *argv,
            ]
        return argv

    def ctl_command(self, *arguments):
        """
        The command line and environment, C{(argv, env)}, of an
        C{ejabberdctl ARGUMENTS...} run against this node (only with
        C{distribution=True}), e.g. C{ctl_command("outgoing_s2s_number")}.
        This is the Erlang command line that C{ejabberdctl} builds with
        C{ERL_DIST_PORT}, run directly (as root, C{ejabberdctl} itself
        runs it as the ejabberd user, who can't read the test's folder): a
        hidden node that doesn't listen, reaching this one on its
        distribution port.  Exit status 0 on success.
        """
        if not self.distribution or self.node is None:
            raise RuntimeError("ejabberdctl needs distribution=True and a started server")
        argv = [
            ERL, "-sname", f"ctl-{secrets.token_hex(4)}@localhost", "-setcookie", self._cookie,
            "-hidden", "-noinput", "-erl_epmd_port", str(self.dist_port),
            "-start_epmd", "false", "-dist_listen", "false",
            "-s", "ejabberd_ctl", "-extra", self.node, *arguments,
        ]
        return argv, self.environment()

    def _write_files(self):
        for path in (self.folder, self.spool_dir, self.logs_dir):
            os.makedirs(path, exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write(self.configuration())
        with open(self.inetrc_path, "w") as f:
            f.write(self.inetrc())
        with open(self.hosts_path, "w") as f:
            f.write(self.hosts_file())
        with open(self.resolv_path, "w") as f:
            f.write(RESOLV_CONF)
        cookie_path = os.path.join(self.folder, ".erlang.cookie")
        if os.path.exists(cookie_path):
            with open(cookie_path) as f:
                self._cookie = f.read().strip()
        else:
            self._cookie = secrets.token_hex(16)
            fd = os.open(cookie_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(self._cookie)

    # Running

    async def start(self, reactor=None):
        """
        Write the configuration and start ejabberd; fire once its s2s and
        component ports accept connections.  On failure (it exits, or
        C{startup_timeout} passes) stop it and raise L{RuntimeError} with
        the end of its log.
        """
        if reactor is None:
            from twisted.internet import reactor
        if self.process is not None:
            raise RuntimeError("already started")
        require_ejabberd()
        self._reactor = reactor
        if self.distribution:
            self.node = f"ejabberd-{secrets.token_hex(4)}@localhost"
            self.dist_port = _free_port("127.0.0.1")
        self._write_files()
        self._output = _Output(self.console_path)
        began = reactor.seconds()
        argv = self.command()
        self.process = reactor.spawnProcess(
            self._output, argv[0], argv, env=self.environment(), path=self.spool_dir,
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        try:
            await self._wait_listening(reactor, began + self.startup_timeout)
        except BaseException:
            await self.stop()
            raise
        self.started_seconds = reactor.seconds() - began

    def _logs_listeners(self):
        level = self.options().get("loglevel", "info")
        return level in ("info", "debug") or (isinstance(level, int) and level >= 4)

    async def _wait_listening(self, reactor, deadline):
        """
        Wait until each listener is logged as started (when the log level
        shows it: so a port that something else holds doesn't pass) and
        accepts a TCP connection.
        """
        pending = [(self.s2s_port, "ejabberd_s2s_in"), (self.component_port, "ejabberd_service")]
        while pending:
            port, module = pending[0]
            if self._output.ended.called:
                raise RuntimeError(
                    f"ejabberd exited with status {self._output.status} before listening on "
                    f"{self.address}:{port}\n{self.log_tail()}"
                )
            if reactor.seconds() > deadline:
                raise RuntimeError(
                    f"ejabberd does not listen on {self.address}:{port} after "
                    f"{self.startup_timeout}s\n{self.log_tail()}"
                )
            logged = not self._logs_listeners() or (
                f"Start accepting TCP connections at {self.address}:{port} for {module}"
                in self._read(self.log_path)
            )
            if logged and await self._accepts(reactor, port):
                pending.pop(0)
            else:
                await task.deferLater(reactor, 0.1, lambda: None)

    async def _accepts(self, reactor, port):
        from twisted.internet.endpoints import TCP4ClientEndpoint

        endpoint = TCP4ClientEndpoint(reactor, self.address, port, timeout=1)
        try:
            connection = await endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
        except (error.ConnectError, error.TimeoutError, OSError):
            return False
        connection.transport.abortConnection()
        return True

    @property
    def pid(self):
        return None if self.process is None else self.process.pid

    @property
    def running(self):
        return self._output is not None and not self._output.ended.called

    async def stop(self, timeout=15.0):
        """
        Stop it by its PID: SIGTERM, then SIGKILL after C{timeout} seconds.
        Fires with its exit status (negative: the signal that ended it).
        """
        if self._output is None:
            return None
        reactor = self._reactor
        ended = self._output.ended
        if not ended.called:
            try:
                self.process.signalProcess("TERM")
            except error.ProcessExitedAlready:
                pass
            deadline = reactor.seconds() + timeout
            while not ended.called and reactor.seconds() < deadline:
                await task.deferLater(reactor, 0.1, lambda: None)
            if not ended.called:
                try:
                    self.process.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass
                kill_deadline = reactor.seconds() + 10
                while not ended.called and reactor.seconds() < kill_deadline:
                    await task.deferLater(reactor, 0.1, lambda: None)
        return self._output.status

    # Diagnostics

    def _read(self, path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_text(self):
        """
        Its log (C{ejabberd.log}), then C{error.log}, C{crash.log} and what
        the Erlang VM printed, each under a header when not empty.
        """
        parts = []
        for title, path in (
            ("ejabberd.log", self.log_path),
            ("error.log", os.path.join(self.logs_dir, "error.log")),
            ("crash.log", os.path.join(self.logs_dir, "crash.log")),
            ("console", self.console_path),
        ):
            text = self._read(path)
            if text:
                parts.append(f"==> {title} <==\n{text}")
        return "\n".join(parts)

    def log_tail(self, lines=40):
        """
        The last C{lines} lines of its log and of C{error.log}, and the last
        lines the Erlang VM printed (errors before ejabberd's logger starts
        are only there).
        """
        parts = []
        for title, path, count in (
            ("ejabberd.log", self.log_path, lines),
            ("error.log", os.path.join(self.logs_dir, "error.log"), lines),
            ("console", self.console_path, 15),
        ):
            text = self._read(path)
            if text:
                parts.append(f"==> {title} <==\n" + "".join(text.splitlines(True)[-count:]))
        return "\n".join(parts)


__all__ = ["EjabberdServer", "require_ejabberd"]
