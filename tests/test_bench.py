"""
The side-by-side benchmark (bench/versus_servers.py) runs to the end on a
tiny load against both servers and prints its table.  This checks that the
harness works (the same TLS, SASL EXTERNAL both ways, dialback, the memory
phase), not how fast anything is: the figures are for docs/performance.md.
"""

import os
import re
import subprocess
import sys

from twisted.internet import threads
from twisted.trial import unittest

from tests.interop.peers import require_program

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(name, *arguments, timeout):
    """
    Run C{bench/<name>} with C{arguments} (in a thread); the Deferred fires
    with the finished process, its output as text.
    """
    return threads.deferToThread(
        subprocess.run,
        [sys.executable, os.path.join(REPO, "bench", name), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


class VersusProsodyTests(unittest.TestCase):
    timeout = 240

    def run_bench(self, *arguments):
        return run_script("versus_servers.py", *arguments, timeout=220)

    async def test_small_run(self):
        require_program("prosody", "prosody")
        done = await self.run_bench(
            # Enough messages for the servers' CPU to span several accounting
            # ticks, so that the per-CPU figures exist.
            # Handshakes too: three dialback handshakes (about 3 ms of CPU
            # each) sometimes fell within one 10 ms tick and measured 0.
            "--repeats", "1", "--messages", "4000", "--handshakes", "12", "--streams", "10"
        )
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, output[-3000:])
        table = output[output.index("medians of 1 repeat(s)"):]
        for figure in (
            "inbound, 1 stream: messages/s",
            "inbound, 4 streams: messages per CPU-s",
            "outbound, 1 stream: messages per CPU-s",
            "outbound, 4 streams: messages/s",
            "handshakes, SASL EXTERNAL: per second",
            "handshakes, dialback: CPU ms each",
        ):
            row = re.search(re.escape(figure) + r"\s+(\S+)\s+(\S+)\s+(\S+)", table)
            self.assertIsNotNone(row, f"{figure!r} missing from\n{table}")
            gateway, prosody, ratio = row.groups()
            self.assertNotIn("-", (gateway, prosody), f"{figure}: {row.group(0)}")
            self.assertRegex(ratio, r"^\d+\.\d\dx$")
        # Ten streams are too few for a steady figure: only that there is one.
        memory = re.search(r"memory: KiB per idle stream\s+(\S+)\s+(\S+)", table)
        self.assertIsNotNone(memory, table)
        for value in memory.groups():
            float(value.replace(",", ""))
        # Every phase line names the TLS negotiated; the load generator
        # offered the groups of Prosody's OpenSSL, so both servers
        # negotiated the same TLS 1.3 (the script stops if they do not).
        phases = re.findall(r"^   (gateway|Prosody) +(\w+).*; (TLSv[\w.]+ \S+ \S+)$", output, re.M)
        self.assertEqual(
            sorted((server, what) for server, what, _ in phases),
            sorted(
                [(server, what) for server in ("gateway", "Prosody")
                 for what in ["inbound"] * 2 + ["outbound"] * 2 + ["handshakes"] * 2 + ["memory"]]
                + [("gateway", "handshakes"), ("gateway", "memory")]
            ),
            output[-3000:],
        )
        classic = [tls for _, _, tls in phases if "MLKEM" not in tls]
        self.assertEqual(set(classic), {"TLSv1.3 TLS_AES_256_GCM_SHA384 x25519"}, output[-3000:])
        self.assertEqual(len(classic), 14)
        # The hybrid phases: the gateway alone, with the post-quantum group.
        for figure in ("hybrid key exchange, handshakes: per second",
                       "hybrid key exchange, memory: KiB per idle stream"):
            row = re.search(re.escape(figure) + r"\s+(\S+)\s+(\S+)\s+(\S+)", table)
            self.assertIsNotNone(row, table)
            float(row.group(1).replace(",", ""))
            self.assertEqual(row.group(2, 3), ("-", "-"))
        self.assertEqual(output.count("TLSv1.3 TLS_AES_256_GCM_SHA384 X25519MLKEM768"), 2)
        # The dialback callbacks Prosody made were answered and valid.
        callbacks = re.search(r"handshakes, dialback: callbacks made\s+(\S+)\s+(\S+)", table)
        self.assertEqual(callbacks.groups(), ("0.00", "12.0"))

    async def test_bad_arguments(self):
        done = await self.run_bench("--servers", "ejabberd")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--servers takes gateway and/or prosody", done.stderr)


class InboundPathTests(unittest.TestCase):
    """
    bench/inbound_path.py runs every kind of stanza through the real inbound
    path and prints a figure for each (it fails when a stanza is lost).
    """

    async def test_small_run(self):
        done = await run_script(
            "inbound_path.py", "--messages", "300", "--repeats", "2", timeout=120
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        figures = re.findall(r"^  (.+?)\s+CPU per 10,000 stanzas: best ([\d.]+) s", done.stdout, re.M)
        self.assertEqual([kind for kind, _ in figures], ["ascii", "emoji nickname", "rewritten domain"])
        for _, best in figures:
            self.assertGreater(float(best), 0)


class AttackRunTests(unittest.TestCase):
    """
    bench/attack.py runs the attack to the end and prints its figures; the
    gateway's memory stays bounded meanwhile (a loose bound here: the
    figures are for docs/security.md).
    """

    timeout = 180

    async def test_small_run(self):
        done = await run_script("attack.py", "--rounds", "5", "--messages", "20", timeout=170)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        # The attack reached the gateway (how much of it was read in the
        # time depends on s2s.read_rate, which the run prints).
        bounced = re.search(r"bounces sent by the gateway\s+(\d+)", done.stdout)
        self.assertGreaterEqual(int(bounced.group(1)), 1, done.stdout)
        self.assertRegex(done.stdout, r"s2s.read_rate of the gateway\s+524288")
        before, after = map(float, re.search(
            r"peak RSS before / after\s+([\d.]+) / ([\d.]+) MiB", done.stdout).groups())
        self.assertLess(after - before, 40, done.stdout)
        self.assertRegex(done.stdout, r"legitimate latency, attack: median / p90\s+[\d.]+ / [\d.]+ ms")
