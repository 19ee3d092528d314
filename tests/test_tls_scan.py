"""
The TLS profile as a scanner sees it: SSLyze (C{python -m sslyze}) run
against a real gateway's s2s port through XMPP STARTTLS, with its verdicts
checked against RFC 7590 / RFC 9325: TLS 1.2 and 1.3 only, ECDHE with AEAD
suites only under TLS 1.2, no compression, secure renegotiation
advertised and client-initiated renegotiation refused.

SSLyze runs in a child process, killed if it takes longer than
L{SCAN_TIMEOUT}, so that a scan can never hang the suite.  Without SSLyze
installed (the C{test} extra has it) the test is skipped, except under
C{CI=true}, where it fails.
"""

import importlib.util
import json
import os
import sys

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from tests.support import World

#: Seconds the whole scan may take.
SCAN_TIMEOUT = 150.0

#: The scan commands: every protocol version, compression, renegotiation.
SCAN_COMMANDS = (
    "--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3",
    "--compression", "--reneg",
)

#: The SSLyze result fields for each protocol version.
VERSIONS = {
    "SSL 2.0": "ssl_2_0_cipher_suites",
    "SSL 3.0": "ssl_3_0_cipher_suites",
    "TLS 1.0": "tls_1_0_cipher_suites",
    "TLS 1.1": "tls_1_1_cipher_suites",
    "TLS 1.2": "tls_1_2_cipher_suites",
    "TLS 1.3": "tls_1_3_cipher_suites",
}


#: The Python with SSLyze: a virtualenv of its own (C{make test} makes it,
#: as .venv-scan), since SSLyze pins an older cryptography than the
#: gateway runs with; or this interpreter, if it has SSLyze.
SCANNER = os.environ.get("GATEWAY_SSLYZE_PYTHON") or sys.executable


def sslyze_missing():
    """
    Why SSLyze can't be used here, or L{None}.
    """
    if SCANNER != sys.executable:
        if not os.path.exists(SCANNER):
            return f"{SCANNER} does not exist (make test builds it)"
        return None
    if importlib.util.find_spec("sslyze") is None:
        return (
            f"sslyze is not installed for {sys.executable}; set GATEWAY_SSLYZE_PYTHON "
            "to a Python that has it (make test does)"
        )
    return None


class _Collector(protocol.ProcessProtocol):
    def __init__(self, done):
        self.done = done
        self.output = []

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.done.callback((reason.value.exitCode, b"".join(self.output)))


def run_bounded(arguments, timeout):
    """
    Run the scanner's Python with C{arguments}; kill it after C{timeout}
    seconds.

    @return: a Deferred firing with C{(exit code, output)}, or failing with
        L{defer.TimeoutError}.
    """
    done = defer.Deferred()
    collector = _Collector(done)
    process = reactor.spawnProcess(
        collector, SCANNER, [SCANNER, *arguments], env=os.environ.copy()
    )
    killer = reactor.callLater(timeout, process.signalProcess, "KILL")

    def finished(result):
        if killer.active():
            killer.cancel()
            return result
        raise defer.TimeoutError(f"sslyze took longer than {timeout}s: {result[1][-2000:]!r}")

    return done.addCallback(finished)


class TLSScanTests(unittest.TestCase):
    timeout = SCAN_TIMEOUT + 60

    def setUp(self):
        missing = sslyze_missing()
        if missing is not None:
            if os.environ.get("CI") == "true":
                self.fail(f"{missing}; CI must scan the TLS profile")
            raise unittest.SkipTest(missing)

    async def scan(self):
        world = World(self)
        gateway = await world.gateway("a.test")
        report = os.path.abspath(self.mktemp())
        code, output = await run_bounded(
            [
                "-m", "sslyze",
                "--starttls", "xmpp_server", "--xmpp_to", "a.test", "--sni", "a.test",
                "--mozilla_config", "disable", "--quiet", "--json_out", report,
                *SCAN_COMMANDS,
                f"127.0.0.1:{gateway.s2s_port}",
            ],
            SCAN_TIMEOUT,
        )
        self.assertEqual(code, 0, output.decode("utf-8", "replace")[-4000:])
        with open(report) as f:
            document = json.load(f)
        (server,) = document["server_scan_results"]
        self.assertEqual(server["scan_status"], "COMPLETED", server)
        results = server["scan_result"]
        for name in ("tls_compression", "session_renegotiation", *VERSIONS.values()):
            self.assertEqual(results[name]["status"], "COMPLETED", results[name])
        return results

    def test_profile(self):
        return defer.Deferred.fromCoroutine(self._test_profile())

    async def _test_profile(self):
        results = await self.scan()
        accepted = {
            version: [s["cipher_suite"]["name"] for s in results[field]["result"]["accepted_cipher_suites"]]
            for version, field in VERSIONS.items()
        }
        # Only TLS 1.2 and 1.3.
        self.assertEqual(
            {version for version, suites in accepted.items() if suites}, {"TLS 1.2", "TLS 1.3"},
            accepted,
        )
        # TLS 1.2: ECDHE key exchange, AEAD ciphers (AES-GCM, ChaCha20-Poly1305).
        for suite in accepted["TLS 1.2"]:
            self.assertTrue(suite.startswith("TLS_ECDHE_"), suite)
            self.assertTrue("_GCM_" in suite or "_CHACHA20_POLY1305_" in suite, suite)
        # No compression (CRIME).
        self.assertFalse(results["tls_compression"]["result"]["supports_compression"])
        # Renegotiation: the secure kind is advertised (RFC 5746), and a
        # client can't start one (no renegotiation DoS).
        renegotiation = results["session_renegotiation"]["result"]
        self.assertTrue(renegotiation["supports_secure_renegotiation"], renegotiation)
        self.assertFalse(renegotiation["is_vulnerable_to_client_renegotiation_dos"], renegotiation)
