"""
The gateway as an operator meets it: the twistd plugin, a real twistd
process on a fresh state folder, and what the state folder holds.
"""

import os
import signal
import stat
import subprocess
import sys
import time

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial import unittest

from gateway.app.config import parse_config
from gateway.app.state import prepare_state

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twistd(*arguments, cwd):
    environment = dict(os.environ, PYTHONPATH=HERE)
    return subprocess.Popen(
        [*TWISTD, *arguments],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class PluginTests(unittest.TestCase):
    def test_plugin_found(self):
        from twisted import plugins

        names = [maker.tapname for maker in getPlugins(IServiceMaker, plugins)]
        self.assertIn("xmpp-gateway", names)

    def test_help_documents_options(self):
        process = twistd("xmpp-gateway", "--help", cwd=HERE)
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 0, output)
        self.assertIn("--config=", output)
        self.assertIn("embedded default configuration", " ".join(output.split()))


class TwistdTests(unittest.TestCase):
    """
    A real twistd process, started as an operator would.
    """

    def folder(self):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        return folder

    def test_first_start(self):
        """
        On first start, the gateway names its state folder, makes a
        self-signed certificate and a component secret there and logs their
        paths but never the secret; SIGTERM stops it cleanly.
        """
        folder = self.folder()
        with open(os.path.join(folder, "gateway.toml"), "w") as f:
            f.write(
                'state_dir = "state"\n[s2s]\nlisten = "tcp:0:interface=127.0.0.1"\n'
                '[components]\nlisten = "tcp:0:interface=127.0.0.1"\n[admin]\nlisten = "tcp:0:interface=127.0.0.1"\n[domains."first.test"]\n'
            )
        process = twistd(
            "--nodaemon", "--pidfile=", "xmpp-gateway", "--config", "gateway.toml", cwd=folder
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        secret_file = os.path.join(folder, "state", "components", "first.test.secret")
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "listening for components on 127.0.0.1:" in line:
                break
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        output = "".join(lines) + rest
        # twistd ends by the signal it was stopped with, after a clean shutdown.
        self.assertIn(process.returncode, (0, -signal.SIGTERM), output)
        self.assertIn("Server Shut Down.", output)
        state = os.path.join(folder, "state")
        self.assertIn(f"state folder {state}", output)
        self.assertIn("Made a self-signed certificate for first.test", output)
        self.assertIn(f"Generated the component secret for first.test in {secret_file}", output)
        with open(secret_file) as f:
            secret = f.read().strip()
        self.assertNotIn(secret, output)
        with open(os.path.join(state, "dialback.secret")) as f:
            self.assertNotIn(f.read().strip(), output)
        self.assertNotIn("Traceback", output)

    def test_bad_configuration(self):
        """
        A malformed configuration stops twistd with one line naming the
        file, the key and the problem, and no traceback.
        """
        folder = self.folder()
        path = os.path.join(folder, "gateway.toml")
        with open(path, "w") as f:
            f.write('[domains."x.test"]\n[s2s]\nqueue_limit = "many"\n')
        process = twistd("--nodaemon", "--pidfile=", "xmpp-gateway", "--config", path, cwd=folder)
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1)
        self.assertEqual(
            output.strip().splitlines(),
            [
                f"xmpp-gateway: configuration error: {path}: s2s.queue_limit: "
                "must be an integer, not a string"
            ],
        )


    def test_log_level(self):
        """
        C{[log] level = "warn"} keeps the gateway's info messages out of
        the log from the first one; twistd's own lines still appear.
        """
        import socket

        folder = self.folder()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        with open(os.path.join(folder, "gateway.toml"), "w") as f:
            f.write(
                'state_dir = "state"\n[log]\nlevel = "warn"\n'
                '[s2s]\nlisten = "tcp:0:interface=127.0.0.1"\n'
                f'[components]\nlisten = "tcp:{port}:interface=127.0.0.1"\n'
                '[admin]\nlisten = []\n[domains."first.test"]\n'
            )
        process = twistd(
            "--nodaemon", "--pidfile=", "xmpp-gateway", "--config", "gateway.toml", cwd=folder
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        self.assertIn(process.returncode, (0, -signal.SIGTERM), output)
        self.assertIn("Server Shut Down.", output)
        # What the same start logs at info (see test_first_start) is not
        # here; its warning is.
        info = [line for line in output.splitlines() if "[gateway." in line and "#info]" in line]
        self.assertEqual(info, [])
        self.assertNotIn("listening for components", output)
        self.assertNotIn("Generated the component secret", output)
        self.assertIn("[gateway.app.state#warn] Made a self-signed certificate for first.test", output)
        self.assertTrue(os.path.exists(os.path.join(folder, "state", "components", "first.test.secret")))

    def test_port_in_use(self):
        """
        A listener that can't bind stops the gateway with one line naming
        the listener, and no traceback.
        """
        import socket

        folder = self.folder()
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with open(os.path.join(folder, "gateway.toml"), "w") as f:
            f.write(
                f'[s2s]\nlisten = "tcp:{port}:interface=127.0.0.1"\n'
                '[components]\nlisten = "tcp:0:interface=127.0.0.1"\n[admin]\nlisten = []\n[domains."x.test"]\n'
            )
        process = twistd("--nodaemon", "--pidfile=", "xmpp-gateway", "--config", "gateway.toml",
                         cwd=folder)
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1, output)
        self.assertIn(
            f"xmpp-gateway: cannot listen for s2s (STARTTLS) on tcp:{port}:interface=127.0.0.1: "
            "[Errno 98] Address already in use",
            output,
        )
        self.assertNotIn("Traceback", output)


class StateTests(unittest.TestCase):
    def config(self, extra=""):
        folder = os.path.abspath(self.mktemp())
        return parse_config(
            f'state_dir = "state"\n[domains."s.test"]\n{extra}', "t.toml", folder
        )

    def test_files_private_and_kept(self):
        """
        Secrets and keys are made with mode 0600 and kept across restarts.
        """
        config = self.config()
        first = prepare_state(config)
        identity = first.identity("s.test")
        for path in (
            identity.key_file,
            identity.certificate_file,
            os.path.join(config.state_dir, "dialback.secret"),
            os.path.join(config.state_dir, "components", "s.test.secret"),
        ):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)
        self.assertEqual(stat.S_IMODE(os.stat(config.state_dir).st_mode), 0o700)
        second = prepare_state(config)
        self.assertEqual(second, first)
        self.assertEqual(len(first.dialback_secret), 64)

    def test_configured_secret_and_certificate_used(self):
        from tests.pki import CertificateAuthority

        folder = os.path.abspath(self.mktemp())
        certificate, key = CertificateAuthority().write_identity(folder, "s.test")
        config = self.config(
            f'component_secret = "configured-secret"\ncertificate = "{certificate}"\nkey = "{key}"\n'
        )
        state = prepare_state(config)
        identity = state.identity("s.test")
        self.assertEqual(identity.component_secret, "configured-secret")
        self.assertEqual((identity.certificate_file, identity.key_file), (certificate, key))
        self.assertFalse(os.path.exists(os.path.join(config.state_dir, "certificates")))

    def test_secrets_not_in_repr(self):
        state = prepare_state(self.config())
        self.assertNotIn(state.dialback_secret, repr(state))
        self.assertNotIn(state.identities[0].component_secret, repr(state))
